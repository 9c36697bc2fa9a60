"""TIFF micrographs through tifffile, lazily (zarr) when they are huge."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import tifffile

from .errors import CorruptFileError, InvalidImageError
from .micrograph import Micrograph, check_declared_size, fits_in_memory
from .tiff_calibration import tiff_calibration


def read_tiff(path: Path, *, lazy_pixels: int, lazy: bool | None = None) -> Micrograph:
    """Read the first series of a TIFF with its calibration candidates.

    Parameters
    ----------
    path : Path
        TIFF file.
    lazy : bool, optional
        Return a read-only zarr array instead of loading the pixels. Default:
        lazy when the image has more than ``lazy_pixels`` pixels or would take
        more than a quarter of the available memory.
    lazy_pixels : int
        See ``lazy`` (the reader passes ``reading.LAZY_PIXELS``).

    Raises
    ------
    InvalidImageError
        When the header declares more pixels than can be analysed
        (:func:`~napari_microseg.core.micrograph.check_declared_size`), before
        any pixel is read.
    CorruptFileError
        When tifffile cannot decode the file.

    Notes
    -----
    tifffile's own log messages about the file are not printed; the first one
    becomes a warning of the micrograph (one line).
    """
    with _tifffile_notes() as notes:
        mg = _read(path, lazy, lazy_pixels)
    if notes:
        more = f" (and {len(notes) - 1} more)" if len(notes) > 1 else ""
        mg.warnings.append(f"{path.name}: tifffile: {notes[0]}{more}")
    return mg


@contextlib.contextmanager
def _tifffile_notes():
    """Collect (instead of printing) what tifffile logs while the block runs."""
    notes: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        notes.append(" ".join(record.getMessage().split()))
        return False

    logger = logging.getLogger("tifffile")
    logger.addFilter(keep)
    try:
        yield notes
    finally:
        logger.removeFilter(keep)


def _read(path: Path, lazy: bool | None, lazy_pixels: int) -> Micrograph:
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise CorruptFileError(f"Cannot read {path.name}: the TIFF holds no image.")
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            n_pixels = int(np.prod(shape[:2])) if len(shape) >= 2 else 0
            if lazy is None:
                lazy = n_pixels > lazy_pixels or not fits_in_memory(shape, dtype)
            check_declared_size(path.name, shape, dtype, eager=not lazy)
            cands, info = tiff_calibration(tif)
            page_note = _mixed_pages_warning(tif, path.name, shape)
            if not lazy:
                data = series.asarray()
    except (CorruptFileError, InvalidImageError):
        raise
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, KeyError, IndexError) as e:
        raise CorruptFileError(f"Cannot read {path.name}: file is damaged or truncated ({e}).") from e
    if lazy:
        data = _open_lazy(path)
    info["format"] = "TIFF"
    info["warnings"] = list(info.get("warnings", []))  # calibration values ignored, if any
    if page_note:
        info["warnings"].append(page_note)
    if lazy:
        info["warnings"].append(
            f"{path.name} is {shape[0]} x {shape[1]} px: opened lazily, pixels are read on demand."
        )
    info["_calibration_candidates"] = cands
    if dtype == np.bool_:
        data = np.asarray(data, dtype=np.uint8)
    return Micrograph(data=data, metadata=info)


#: Pages looked at for :func:`_mixed_pages_warning` (a long stack is not walked to the end).
MAX_PAGES_CHECKED = 1000


def _mixed_pages_warning(tif: tifffile.TiffFile, name: str, shape) -> str | None:
    """One line when the TIFF holds pages of different sizes and only page 0 is read.

    Reduced-resolution pages (previews, pyramid levels) are not counted.
    """
    pages = tif.pages
    n = len(pages)
    if n < 2:
        return None
    sizes = []
    for i in range(min(n, MAX_PAGES_CHECKED)):
        page = pages[i]
        if getattr(page, "is_reduced", False):
            continue
        sizes.append(tuple(int(v) for v in page.shape[:2]))
    if len(set(sizes)) < 2 or tuple(shape) != tuple(pages.first.shape):
        return None  # one size (a stack is refused elsewhere), or series[0] is not page 0
    listed = ", ".join(f"{h} x {w}" for h, w in sizes[:5]) + (", ..." if len(sizes) > 5 else "")
    return (f"{name} holds {n} pages of different sizes ({listed} px); only page 0 "
            f"({sizes[0][0]} x {sizes[0][1]} px) is used.")


def _open_lazy(path: Path):
    import zarr

    try:
        store = tifffile.imread(path, aszarr=True)
        return zarr.open(store, mode="r")
    except Exception as e:  # zarr/tifffile raise many types on bad files
        raise CorruptFileError(f"Cannot open {path.name} lazily: {e}") from e
