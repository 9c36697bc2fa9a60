""""Segment everything": prompt a grid of points, keep good, distinct masks.

The same recipe as SAM's automatic mask generator, written against the
backend-agnostic :class:`~.session.PromptSession` so it works with SAM2, the
offline promptable model, or a classical backend, tile by tile on large
images. Candidates are returned as an instance labels image for the user to
accept or reject in bulk.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import relabel_sequential


def point_grid(shape: tuple[int, int], spacing: float) -> np.ndarray:
    """``(n, 2)`` row/col points on a square grid ``spacing`` px apart, offset by half."""
    h, w = shape
    rows = np.arange(spacing / 2, h, spacing)
    cols = np.arange(spacing / 2, w, spacing)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


def _iou_with(mask: np.ndarray, bbox, kept: list) -> float:
    """Largest IoU of ``mask`` with any kept candidate whose box overlaps."""
    r0, c0, r1, c1 = bbox
    best = 0.0
    for m, (a0, b0, a1, b1) in kept:
        if a0 > r1 or a1 < r0 or b0 > c1 or b1 < c0:
            continue
        y0, x0, y1, x1 = min(r0, a0), min(c0, b0), max(r1, a1) + 1, max(c1, b1) + 1
        p, q = mask[y0:y1, x0:x1], m[y0:y1, x0:x1]
        inter = np.count_nonzero(p & q)
        if inter:
            best = max(best, inter / np.count_nonzero(p | q))
    return best


def segment_everything(
    session,
    *,
    spacing: float = 32.0,
    min_area_px: int = 10,
    max_area_fraction: float = 0.25,
    min_score: float = 0.5,
    max_overlap: float = 0.5,
    progress=None,
    cancel=None,
) -> np.ndarray:
    """Candidate instances from a grid of single positive clicks.

    Parameters
    ----------
    session : PromptSession
        With its image set.
    spacing : float
        Grid spacing in px (smaller finds smaller objects, costs more clicks).
    min_area_px : int
        Drop candidates smaller than this (convert from nm² with the pixel size).
    max_area_fraction : float
        Drop candidates larger than this fraction of the image (background).
    min_score : float
        Drop candidates the backend scores lower.
    max_overlap : float
        A candidate overlapping an already kept one by more than this IoU is
        a duplicate (kept ones are ranked by score, then area).
    progress, cancel : callable, optional
        Progress fraction callback; ``cancel()`` returning True stops early
        and returns what was found so far.

    Returns
    -------
    ndarray of int32
        Candidate instances ``1..n`` (0 = background), non-overlapping.
    """
    shape = session.image_shape
    pts = point_grid(shape, spacing)
    found = []
    for i, p in enumerate(pts):
        if cancel is not None and cancel():
            break
        session.reset()
        pred = session.predict([p], [1], use_previous=False)
        area = int(np.count_nonzero(pred.mask))
        if min_area_px <= area <= max_area_fraction * pred.mask.size and pred.score >= min_score:
            rows, cols = np.nonzero(pred.mask)
            found.append((float(pred.score), area, pred.mask, (rows.min(), cols.min(), rows.max(), cols.max())))
        if progress is not None:
            progress((i + 1) / len(pts))
    session.reset()
    found.sort(key=lambda f: (-f[0], -f[1]))
    kept: list = []
    for _, _, mask, bbox in found:
        if _iou_with(mask, bbox, kept) <= max_overlap:
            kept.append((mask, bbox))
    out = np.zeros(shape, dtype=np.int32)
    for n, (mask, _) in enumerate(kept, start=1):
        out[mask & (out == 0)] = n
    # Candidates hidden entirely under better ones leave gaps: renumber 1..n.
    return relabel_sequential(out)[0].astype(np.int32)
