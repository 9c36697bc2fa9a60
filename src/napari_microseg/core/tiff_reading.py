"""TIFF micrographs through tifffile, lazily (zarr) when they are huge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from .errors import CorruptFileError, InvalidImageError
from .micrograph import Micrograph
from .tiff_calibration import tiff_calibration


def read_tiff(path: Path, *, lazy: bool | None = None) -> Micrograph:
    """Read the first series of a TIFF with its calibration candidates.

    Parameters
    ----------
    path : Path
        TIFF file.
    lazy : bool, optional
        Return a read-only zarr array instead of loading the pixels. Default:
        lazy when the image has more than ``reading.LAZY_PIXELS`` pixels.
    """
    from .reading import LAZY_PIXELS

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise CorruptFileError(f"Cannot read {path.name}: the TIFF holds no image.")
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            cands, info = tiff_calibration(tif)
            n_pixels = int(np.prod(shape[:2])) if len(shape) >= 2 else 0
            if lazy is None:
                lazy = n_pixels > LAZY_PIXELS
            if not lazy:
                data = series.asarray()
    except (CorruptFileError, InvalidImageError):
        raise
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, KeyError, IndexError) as e:
        raise CorruptFileError(f"Cannot read {path.name}: file is damaged or truncated ({e}).") from e
    if lazy:
        data = _open_lazy(path)
    info["format"] = "TIFF"
    info["warnings"] = []
    if lazy:
        info["warnings"].append(
            f"{path.name} is {shape[0]} x {shape[1]} px: opened lazily, pixels are read on demand."
        )
    info["_calibration_candidates"] = cands
    if dtype == np.bool_:
        data = np.asarray(data, dtype=np.uint8)
    return Micrograph(data=data, metadata=info)


def _open_lazy(path: Path):
    import zarr

    try:
        store = tifffile.imread(path, aszarr=True)
        return zarr.open(store, mode="r")
    except Exception as e:  # zarr/tifffile raise many types on bad files
        raise CorruptFileError(f"Cannot open {path.name} lazily: {e}") from e
