"""Run-length decomposition of a labels image and the shape sums built on it.

Every per-object quantity that does not need the pixels one by one (area,
moments, image-edge contact, row extremes for the convex hull) is computed from
the horizontal runs of equal label, which are found in a few vectorised passes
over the image. This is what lets :func:`~napari_microseg.core.measure.objects.
measure_objects` handle 10,000 objects on a 4096 x 4096 image in well under a
second, where a per-object ``regionprops`` loop takes many seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LabelsError

#: Largest label id used directly as a ``bincount`` index; larger ids are relabelled.
_MAX_DIRECT_LABEL = 50_000_000


@dataclass
class Runs:
    """Horizontal runs of equal non-zero label, grouped by label.

    Attributes
    ----------
    labels : ndarray of int64
        Sorted unique non-zero label ids, one per object.
    group : ndarray of intp
        Index into :attr:`labels` of each run.
    row, c0, c1 : ndarray of int64
        Row and first/last column (inclusive) of each run; runs are sorted by
        object, then row, then column.
    start : ndarray of int64
        Flat (row-major) index of each run's first pixel.
    first : ndarray of intp
        Index of each object's first run (``len(labels)`` entries).
    shape : tuple of int
        Shape of the labels image.
    """

    labels: np.ndarray
    group: np.ndarray
    row: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    start: np.ndarray
    first: np.ndarray
    shape: tuple[int, int]

    @property
    def length(self) -> np.ndarray:
        """Number of pixels in each run."""
        return self.c1 - self.c0 + 1


def check_labels(labels) -> np.ndarray:
    """Return ``labels`` as a 2-D integer array, or raise :class:`LabelsError`."""
    a = np.asarray(labels)
    if a.ndim != 2:
        raise LabelsError(f"A labels image must be 2-D, got shape {a.shape}.")
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(np.mod(a, 1) == 0):
            a = a.astype(np.int64)
        else:
            raise LabelsError(f"A labels image must hold integers, got {a.dtype}.")
    if a.size and np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
        raise LabelsError("A labels image must not hold negative ids.")
    if a.size and int(a.max()) > _MAX_DIRECT_LABEL:
        raise LabelsError(
            f"Label ids up to {int(a.max())} are too large; relabel them sequentially first "
            "(skimage.segmentation.relabel_sequential)."
        )
    if a.dtype == np.uint64:  # np.bincount refuses uint64; ids were checked to fit
        a = a.astype(np.int64)
    return a


#: Pixels scanned at a time by :func:`find_runs`.
RUN_BLOCK_PX = 1 << 22


def _object_runs(rows: np.ndarray, offset: int):
    """Flat start, end (inclusive) and label of the non-zero runs of a block of rows."""
    w = rows.shape[1]
    flat = np.ascontiguousarray(rows).ravel()
    n = flat.size
    is_start = np.empty(n, bool)
    is_start[0] = True
    np.not_equal(flat[1:], flat[:-1], out=is_start[1:])
    is_start[::w] = True  # a run never crosses a row boundary
    starts = np.flatnonzero(is_start)
    del is_start
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = n - 1
    lab = flat[starts]
    keep = lab != 0
    return starts[keep] + offset, ends[keep] + offset, lab[keep].astype(np.int64)


def find_runs(labels: np.ndarray, *, checked: bool = False, block_px: int | None = None) -> Runs:
    """Decompose a 2-D labels image into horizontal runs grouped by label.

    Parameters
    ----------
    labels : ndarray
        2-D integer labels, 0 = background.
    checked : bool
        Skip :func:`check_labels` (the caller already ran it).
    block_px : int, optional
        Pixels scanned at a time (default :data:`RUN_BLOCK_PX`); the result
        does not depend on it.

    Returns
    -------
    Runs
    """
    block_px = RUN_BLOCK_PX if block_px is None else int(block_px)
    a = np.asarray(labels) if checked else check_labels(labels)
    h, w = a.shape
    if a.size == 0:
        e = np.zeros(0, np.int64)
        return Runs(e, e.astype(np.intp), e, e, e, e, e.astype(np.intp), (h, w))
    # a block of rows at a time: the temporaries are block-sized, and background
    # runs are dropped before they add up over the whole image
    block = max(1, block_px // max(w, 1))
    parts = [_object_runs(a[r : r + block], r * w) for r in range(0, h, block)]
    starts = np.concatenate([p[0] for p in parts])
    ends = np.concatenate([p[1] for p in parts])
    lab = np.concatenate([p[2] for p in parts])
    del parts
    order = np.argsort(lab, kind="stable")
    starts, ends, lab = starts[order], ends[order], lab[order]
    if lab.size:
        is_first = np.empty(lab.size, bool)
        is_first[0] = True
        np.not_equal(lab[1:], lab[:-1], out=is_first[1:])
        first = np.flatnonzero(is_first)
    else:
        first = np.zeros(0, np.intp)
    group = np.cumsum(np.r_[False, lab[1:] != lab[:-1]]) if lab.size else np.zeros(0, np.intp)
    row = starts // w
    return Runs(
        labels=lab[first],
        group=group.astype(np.intp),
        row=row,
        c0=starts - row * w,
        c1=ends - row * w,
        start=starts,
        first=first.astype(np.intp),
        shape=(h, w),
    )


def run_moments(runs: Runs, origin=(0, 0)) -> dict[str, np.ndarray]:
    """Pixel count, centroid and second central moments of each object.

    Coordinates are pixel centres (row ``y``, column ``x``). Moments are
    accumulated relative to each object's first pixel so they stay exact.
    ``origin`` (row, column) is added to the centroids, for runs of a crop of a
    larger image (integers first, so the centroids equal the whole image's
    bit for bit).

    Returns
    -------
    dict
        ``area`` (pixels), ``cy``, ``cx`` (centroid, px), ``mu_yy``, ``mu_xx``,
        ``mu_xy`` (central moments divided by the pixel count, px²).
    """
    g, first = runs.group, runs.first
    y = (runs.row - runs.row[first][g]).astype(np.float64)
    ref_x = runs.c0[first][g]
    x0 = (runs.c0 - ref_x).astype(np.float64)
    x1 = (runs.c1 - ref_x).astype(np.float64)
    n = x1 - x0 + 1
    sx = n * (x0 + x1) / 2.0
    sxx = _range_sq_sum(x0, x1)
    m = len(runs.labels)

    def acc(v):
        return np.bincount(g, weights=v, minlength=m)

    area = acc(n)
    s_x, s_y = acc(sx), acc(n * y)
    s_xx, s_yy, s_xy = acc(sxx), acc(n * y * y), acc(y * sx)
    mx, my = s_x / area, s_y / area
    return {
        "area": area,
        "cy": my + (runs.row[first] + int(origin[0])),
        "cx": mx + (runs.c0[first] + int(origin[1])),
        "mu_yy": np.maximum(s_yy / area - my * my, 0.0),
        "mu_xx": np.maximum(s_xx / area - mx * mx, 0.0),
        "mu_xy": s_xy / area - mx * my,
    }


def _range_sq_sum(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Σ k² for k = x0..x1 for integer-valued float arrays of any sign."""

    def s(k):  # Σ_{j=0}^{k} j² for k >= 0, with s(-1) = 0
        return k * (k + 1) * (2 * k + 1) / 6.0

    both_pos = x0 >= 0
    out = np.where(both_pos, s(x1) - s(x0 - 1), 0.0)
    # x0 < 0 <= x1: Σ over negatives + Σ over non-negatives
    mixed = (x0 < 0) & (x1 >= 0)
    out = np.where(mixed, s(-x0) + s(x1), out)
    # x1 < 0: Σ_{k=-x1}^{-x0} k²
    allneg = x1 < 0
    out = np.where(allneg, s(-x0) - s(-x1 - 1), out)
    return out


def touches_image_edge(runs: Runs, origin=(0, 0), image_shape=None) -> np.ndarray:
    """Whether each object has a pixel in the first/last row or column.

    For runs of a crop at ``origin`` (row, column) of an image of
    ``image_shape``, the border is the whole image's, not the crop's.
    """
    h, w = runs.shape if image_shape is None else image_shape[:2]
    oy, ox = int(origin[0]), int(origin[1])
    row = runs.row + oy
    hit = (row == 0) | (row == h - 1) | (runs.c0 + ox == 0) | (runs.c1 + ox == w - 1)
    return np.bincount(runs.group, weights=hit, minlength=len(runs.labels)) > 0


def crofton_perimeter(labels: np.ndarray, runs: Runs, spacing=(1.0, 1.0)) -> np.ndarray:
    """Crofton perimeter of each object from boundary crossings in 4 directions.

    Counts, for each object, the label changes met along rows, columns and both
    diagonals (the image border counts as background) and applies the
    Cauchy-Crofton formula, which is unbiased for randomly oriented shapes and
    within about 1 % of 2πr for digital discs of radius >= 5 px (a boundary-pixel
    chain length, as in ``regionprops``, is several % off either way).

    Parameters
    ----------
    labels : ndarray
        The 2-D labels image the runs were taken from.
    runs : Runs
        Its runs.
    spacing : tuple of float
        Pixel size ``(y, x)``; the result is in the same unit.

    Returns
    -------
    ndarray
        Perimeter of each object of ``runs.labels``.
    """
    a = np.asarray(labels)
    m = len(runs.labels)
    if m == 0:
        return np.zeros(0)
    size = int(runs.labels[-1]) + 1

    def count(p, q):
        diff = p != q
        return np.bincount(p[diff], minlength=size) + np.bincount(q[diff], minlength=size)

    def border(*strips):
        return sum(np.bincount(s.ravel(), minlength=size) for s in strips)

    # horizontal: every run has two ends
    n_h = 2 * np.bincount(runs.group, minlength=m).astype(np.float64)
    n_v = count(a[1:], a[:-1]) + border(a[0], a[-1])
    n_d1 = count(a[1:, 1:], a[:-1, :-1])
    n_d2 = count(a[1:, :-1], a[:-1, 1:])
    # pixels whose diagonal neighbour lies outside the image
    top_left = border(a[0], a[1:, 0])
    bottom_right = border(a[-1], a[:-1, -1])
    top_right = border(a[0], a[1:, -1])
    bottom_left = border(a[-1], a[:-1, 0])
    n_d1 = n_d1 + top_left + bottom_right
    n_d2 = n_d2 + top_right + bottom_left
    idx = runs.labels
    sy, sx = float(spacing[0]), float(spacing[1])
    diag = float(np.hypot(sy, sx))
    # Cauchy-Crofton with 4 directions: P = π/4 · ½ · Σ_dir n_dir · d_dir, where
    # d_dir is the distance between the parallel sampling lines of that direction.
    # For anisotropic pixels the diagonal directions are not at 45°; the
    # weighting below is the standard one and exact for square pixels.
    return (np.pi / 8.0) * (n_h * sy + n_v[idx] * sx + (n_d1[idx] + n_d2[idx]) * (sy * sx / diag))
