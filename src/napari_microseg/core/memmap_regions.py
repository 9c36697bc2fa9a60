"""Regions of a big uncompressed TIFF read without holding the image in memory.

Slicing a lazily opened TIFF stored as one strip decodes the whole image on every
read (zarr sees one chunk). :class:`MemmapRegions` maps the file only while a
region is copied out, so resident memory stays at the region's size. Blockwise
prediction (:mod:`napari_microseg.core.models.blockwise`) and blockwise measuring
(:mod:`napari_microseg.core.measure.blockwise`) read their regions through it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class MemmapRegions:
    """Regions of an uncompressed, contiguous TIFF image read through a short-lived memmap.

    A long-lived map would keep every page it has read resident; this one is
    opened per region.

    Parameters
    ----------
    path : str or Path
    offset : int
        Byte offset of the pixels in the file.
    shape : tuple of int
    dtype : numpy dtype (with the file's byte order)
    """

    def __init__(self, path, offset: int, shape, dtype):
        self.path, self.offset = str(path), int(offset)
        self.shape, self.dtype = tuple(int(v) for v in shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        m = np.memmap(self.path, self.dtype, "r", self.offset, self.shape)
        try:
            return np.array(m[key], dtype=self.dtype.newbyteorder("="))
        finally:
            del m

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole image (``np.asarray`` of a small one)."""
        a = self[...]
        return a if dtype is None else a.astype(dtype)

    @classmethod
    def open(cls, path, data):
        """A reader of ``path`` when ``data`` is its lazily opened, contiguous first page; else ``data``.

        An in-memory array, a file that is not a TIFF, a compressed or tiled page,
        or any doubt keeps ``data`` as it is.
        """
        import tifffile

        if isinstance(data, np.ndarray) or Path(path).suffix.lower() not in (".tif", ".tiff"):
            return data
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                if (not page.is_contiguous or len(page.dataoffsets) != 1
                        or tuple(page.shape) != tuple(data.shape)
                        or np.dtype(page.dtype) != np.dtype(data.dtype)):
                    return data
                return cls(path, page.dataoffsets[0], page.shape, tif.byteorder + page.dtype.str[1:])
        except Exception:  # any doubt: keep the lazily opened array
            return data
