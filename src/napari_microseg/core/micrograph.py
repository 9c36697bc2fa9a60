"""The :class:`Micrograph` record: pixels, calibration, metadata, analysed area."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bounds import MAX_PIXELS, memory_budget_bytes
from .calibration import PixelSize
from .errors import InvalidImageError


@dataclass
class Micrograph:
    """A micrograph as read from disk, with everything needed to analyse it.

    Parameters
    ----------
    data : array-like
        The pixels, exactly as stored (dtype kept; no rescale). 2-D for grey,
        ``(Y, X, 3|4)`` for RGB(A). May be a lazy (zarr/dask/memmap) array for
        very large files.
    pixel_size : PixelSize
        Physical pixel size and its provenance.
    metadata : dict
        Instrument metadata: ``accelerating_voltage_kv``, ``magnification``,
        ``detector``, ``instrument``, ``signal`` when known, plus
        ``warnings`` (a list of strings) and the raw format name.
    analysis_mask : ndarray of bool or None
        ``True`` where pixels are analysed. ``None`` means the whole image.
        Pixels of an SEM information bar or NaNs are ``False``.
    path : str or None
        The file the micrograph was read from.
    """

    data: Any
    pixel_size: PixelSize = field(default_factory=PixelSize.uncalibrated)
    metadata: dict = field(default_factory=dict)
    analysis_mask: np.ndarray | None = None
    path: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`data`."""
        return tuple(self.data.shape)

    @property
    def is_rgb(self) -> bool:
        """Whether the last axis holds colour channels."""
        return len(self.shape) == 3 and self.shape[-1] in (3, 4)

    @property
    def warnings(self) -> list[str]:
        """Problems found while reading (contradictory metadata, NaNs, ...)."""
        return self.metadata.setdefault("warnings", [])

    def analysed_area_px(self) -> int:
        """Number of analysed pixels (whole image minus excluded regions)."""
        ny, nx = self.shape[:2]
        if self.analysis_mask is None:
            return int(ny * nx)
        return int(np.count_nonzero(self.analysis_mask))

    def layer_metadata(self) -> dict:
        """Metadata dict for a napari layer (JSON-friendly, plus the mask array)."""
        md = dict(self.metadata)
        md["pixel_size"] = self.pixel_size.to_dict()
        md["unit"] = self.pixel_size.unit
        md["source_path"] = self.path
        if self.analysis_mask is not None:
            md["analysis_mask"] = self.analysis_mask
        return md


def content_hash(data, chunk_rows: int = 1024) -> str:
    """SHA-256 of an image's pixels, shape and dtype, streamed by row blocks.

    Works on lazy arrays without loading them whole. Used as the identity of an
    image in caches and provenance.
    """
    h = hashlib.sha256()
    h.update(repr((tuple(data.shape), str(np.dtype(data.dtype)))).encode())
    for start in range(0, data.shape[0], chunk_rows):
        block = np.ascontiguousarray(np.asarray(data[start : start + chunk_rows]))
        h.update(block.tobytes())
    return h.hexdigest()


def declared_nbytes(shape, dtype) -> int:
    """Bytes an array of ``shape`` and ``dtype`` takes once loaded."""
    return int(np.prod([int(v) for v in shape], dtype=np.float64) * np.dtype(dtype).itemsize)


def fits_in_memory(shape, dtype, fraction: float = 0.25) -> bool:
    """Whether ``shape``/``dtype`` takes at most ``fraction`` of the available memory (True if unknown)."""
    budget = memory_budget_bytes(fraction)
    return budget is None or declared_nbytes(shape, dtype) <= budget


def check_declared_size(name: str, shape, dtype, *, eager: bool) -> None:
    """Refuse an image whose header declares more than can be analysed, before reading a pixel.

    Parameters
    ----------
    name : str
        The file name, for the message.
    shape : tuple of int
        Declared shape, rows and columns first.
    dtype : numpy dtype
        Declared pixel type.
    eager : bool
        Whether the pixels are to be loaded now: they must then take at most a
        quarter of the available memory.

    Raises
    ------
    InvalidImageError
        With one line saying what the header declares and the limit.
    """
    if len(shape) < 2:
        return
    ny, nx = int(shape[0]), int(shape[1])
    if ny * nx > MAX_PIXELS:
        raise InvalidImageError(
            f"{name}: the file declares {ny} x {nx} px ({ny * nx / 1e9:.1f} Gpx), more than the "
            f"{MAX_PIXELS / 1e9:.1f} Gpx napari-microseg opens; the header is damaged or the image "
            "must be cropped first."
        )
    if eager and not fits_in_memory(shape, dtype):
        need, budget = declared_nbytes(shape, dtype), memory_budget_bytes()
        raise InvalidImageError(
            f"{name}: loading {ny} x {nx} px needs {need / 2**30:.1f} GiB, more than a quarter of "
            f"the available memory ({budget / 2**30:.1f} GiB); free memory or open it lazily."
        )
