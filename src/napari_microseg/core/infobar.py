"""The SEM information bar (data bar) at the bottom of Thermo/FEI and Zeiss images.

The bar holds text (HV, magnification, scale bar) on a flat background. It is
never cropped from the raw data: it becomes an *exclusion* in the micrograph's
analysis mask, so densities and detections ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InfoBar:
    """Rows ``start_row`` to the bottom of the image are an information bar.

    Parameters
    ----------
    start_row : int
        First row of the bar.
    source : str
        ``"metadata"`` (e.g. FEI ``[Image] ResolutionY``) or ``"image"``.
    """

    start_row: int
    source: str

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Analysis mask of ``shape``: ``True`` above the bar, ``False`` on it."""
        m = np.ones(shape[:2], dtype=bool)
        m[self.start_row :] = False
        return m

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"start_row": int(self.start_row), "source": self.source}


def modal_fraction(rows: np.ndarray) -> np.ndarray:
    """For each row, the fraction of its pixels equal to the row's commonest value."""
    out = np.empty(rows.shape[0])
    for i, row in enumerate(rows):
        _, counts = np.unique(row, return_counts=True)
        out[i] = counts.max() / row.size
    return out


def detect_info_bar(
    image: np.ndarray,
    *,
    scan_rows: int | None = None,
    flat_fraction: float = 0.4,
    textured_fraction: float = 0.3,
    min_height: float = 0.02,
    max_height: float = 0.3,
) -> InfoBar | None:
    """Find an SEM information bar at the bottom of ``image``.

    Parameters
    ----------
    image : ndarray
        2-D grey or ``(Y, X, C)`` colour image, any dtype.
    scan_rows : int, optional
        Number of scanned rows from the instrument metadata (FEI
        ``[Image] ResolutionY``). When smaller than the image height, the rows
        below it are the bar.
    flat_fraction : float
        A bar row has at least this fraction of pixels at its commonest value
        (flat background behind text).
    textured_fraction : float
        The micrograph row just above the bar must be below this fraction.
    min_height, max_height : float
        Allowed bar height as a fraction of the image height.

    Returns
    -------
    InfoBar or None
        ``None`` when no bar is found.
    """
    ny = image.shape[0]
    if scan_rows is not None and 0 < scan_rows < ny:
        return InfoBar(int(scan_rows), "metadata")
    grey = np.asarray(image)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=-1)
    lo, hi = max(1, int(round(min_height * ny))), int(round(max_height * ny))
    if hi <= lo or ny < 32:
        return None
    # Look at the bottom max_height of the image plus one row above it.
    band = grey[ny - hi - 1 :]
    frac = modal_fraction(band)[::-1]  # bottom row first
    height = 0
    while height < len(frac) and frac[height] >= flat_fraction:
        height += 1
    if height < lo or height > hi:
        return None
    above = frac[height : height + 3]
    if above.size == 0 or above.max() >= textured_fraction:
        return None
    return InfoBar(ny - height, "image")
