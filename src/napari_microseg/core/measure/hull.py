"""Convex hulls, solidity and Feret diameters of all objects at once.

The hull of an object is built from the leftmost and rightmost pixel centre of
each of its rows (no other pixel can be a hull vertex). Each of the two chains
is made convex by repeatedly dropping, for all objects together, every point
that lies on the wrong side of the segment joining its neighbours; such a point
is never a hull vertex, and when none is left the chains are the hull.

Conventions
-----------
* **Solidity** is the pixel count divided by the number of pixel centres inside
  or on the convex hull of the pixel centres (by Pick's theorem: hull area +
  boundary lattice points / 2 + 1). It is exactly 1 for any digitally convex
  object.
* **Feret diameters** treat every pixel as a filled rectangle of the pixel size
  (hull of the pixel *corners*): an axis-aligned ``w x h`` pixel rectangle has
  min Feret ``min(w, h)`` and max Feret ``sqrt(w² + h²)`` exactly, a single pixel
  has 1 and sqrt(2).
"""

from __future__ import annotations

import numpy as np

from .runs import Runs

#: Elements per chunk of the padded (objects x vertices x directions) arrays.
_CHUNK_ELEMENTS = 250_000


def _row_extremes(runs: Runs):
    """Per (object, row): the row, min column and max column, sorted by object, row."""
    key_change = np.empty(runs.row.size, bool)
    if runs.row.size == 0:
        e = np.zeros(0, np.int64)
        return e, e, e, e.astype(np.intp)
    key_change[0] = True
    key_change[1:] = (runs.group[1:] != runs.group[:-1]) | (runs.row[1:] != runs.row[:-1])
    first = np.flatnonzero(key_change)
    last = np.r_[first[1:] - 1, runs.row.size - 1]
    # runs are sorted by column within a row, so the first/last run give the extremes
    return runs.row[first], runs.c0[first], runs.c1[last], runs.group[first]


def _convex_chain(y, x, g, side: int):
    """Reduce a per-object chain of points (sorted by object, y) to its convex part.

    ``side=+1`` keeps the left boundary (drops points at or right of their
    neighbours' chord), ``side=-1`` the right boundary.
    """
    y, x, g = y.astype(np.int64), x.astype(np.int64), g
    while True:
        n = y.size
        if n < 3:
            return y, x, g
        inner = np.zeros(n, bool)
        inner[1:-1] = (g[:-2] == g[1:-1]) & (g[2:] == g[1:-1])
        py, px, qy, qx, sy, sx = y[:-2], x[:-2], y[1:-1], x[1:-1], y[2:], x[2:]
        # q is at or right of chord p-s  <=>  (qx-px)(sy-py) >= (sx-px)(qy-py)   (sy > py)
        lhs = (qx - px) * (sy - py)
        rhs = (sx - px) * (qy - py)
        drop = np.zeros(n, bool)
        drop[1:-1] = (lhs >= rhs) if side > 0 else (lhs <= rhs)
        drop &= inner
        if not drop.any():
            return y, x, g
        keep = ~drop
        y, x, g = y[keep], x[keep], g[keep]


def convex_hulls(runs: Runs):
    """Convex hull vertices of every object's pixel centres.

    Returns
    -------
    vy, vx : ndarray of int64
        Hull vertices (row, column), object by object, in order around the
        hull; may repeat a point where the top or bottom row is one pixel.
    start, count : ndarray of intp
        Offset and number of vertices of each object.
    """
    m = len(runs.labels)
    ry, rmin, rmax, rg = _row_extremes(runs)
    ly, lx, lg = _convex_chain(ry, rmin, rg, +1)
    qy, qx, qg = _convex_chain(ry, rmax, rg, -1)
    nl = np.bincount(lg, minlength=m)
    nr = np.bincount(qg, minlength=m)
    count = nl + nr
    start = np.zeros(m, np.intp)
    np.cumsum(count[:-1], out=start[1:])
    vy = np.empty(int(count.sum()), np.int64)
    vx = np.empty_like(vy)
    # left chain top->bottom, then right chain bottom->top
    lstart = np.zeros(m, np.intp)
    np.cumsum(nl[:-1], out=lstart[1:])
    pos_l = start[lg] + (np.arange(lg.size) - lstart[lg])
    vy[pos_l], vx[pos_l] = ly, lx
    rstart = np.zeros(m, np.intp)
    np.cumsum(nr[:-1], out=rstart[1:])
    k = np.arange(qg.size) - rstart[qg]
    pos_r = start[qg] + nl[qg] + (nr[qg] - 1 - k)
    vy[pos_r], vx[pos_r] = qy, qx
    return vy, vx, start, count


def _next_index(start, count):
    """Index of the next vertex around each hull (wrapping within an object)."""
    total = int(count.sum())
    obj = np.repeat(np.arange(count.size), count)
    i = np.arange(total)
    nxt = i + 1
    last = start + count - 1
    nxt[last[count > 0]] = start[count > 0]
    return nxt, obj


def hull_pixel_count(vy, vx, start, count) -> np.ndarray:
    """Number of pixel centres inside or on each hull (Pick's theorem)."""
    nxt, obj = _next_index(start, count)
    m = count.size
    x, y = vx.astype(np.float64), vy.astype(np.float64)
    cross = x * y[nxt] - x[nxt] * y
    area2 = np.abs(np.bincount(obj, weights=cross, minlength=m))
    b = np.gcd(np.abs(vx[nxt] - vx), np.abs(vy[nxt] - vy))
    boundary = np.bincount(obj, weights=b, minlength=m)
    return area2 / 2.0 + boundary / 2.0 + 1.0


def feret_diameters(vy, vx, start, count, spacing=(1.0, 1.0)):
    """Minimum and maximum Feret diameter of each object (pixel-corner convention).

    Parameters
    ----------
    vy, vx, start, count : ndarray
        Hull vertices as returned by :func:`convex_hulls`.
    spacing : tuple of float
        Pixel size ``(y, x)``; results are in the same unit.

    Returns
    -------
    feret_min, feret_max : ndarray
    """
    sy, sx = float(spacing[0]), float(spacing[1])
    m = count.size
    fmin = np.zeros(m)
    fmax = np.zeros(m)
    if m == 0:
        return fmin, fmax
    # bucket objects by vertex count (powers of two) to keep padding small
    bucket = np.ceil(np.log2(np.maximum(count, 1))).astype(int)
    for b in np.unique(bucket):
        objs = np.flatnonzero(bucket == b)
        nmax = int(count[objs].max())
        chunk = max(1, _CHUNK_ELEMENTS // (nmax * (nmax + 2)))
        for c0 in range(0, objs.size, chunk):
            o = objs[c0 : c0 + chunk]
            fmin[o], fmax[o] = _feret_padded(vy, vx, start[o], count[o], nmax, sy, sx)
    return fmin, fmax


def _feret_padded(vy, vx, start, count, nmax, sy, sx):
    k = np.arange(nmax)
    idx = start[:, None] + np.minimum(k[None, :], count[:, None] - 1)  # pad: repeat last
    py = vy[idx] * sy
    px = vx[idx] * sx
    # max Feret: farthest pair of corners = centres' offset grown by one pixel per axis
    dy = np.abs(py[:, :, None] - py[:, None, :]) + sy
    dx = np.abs(px[:, :, None] - px[:, None, :]) + sx
    fmax = np.sqrt((dy * dy + dx * dx).max(axis=(1, 2)))
    # min Feret: over edge normals of the corner hull = hull edges of the centres + axes
    nxt = start[:, None] + (k[None, :] + 1) % count[:, None]
    nxt = np.where(k[None, :] < count[:, None], nxt, idx)  # padding: zero-length edges
    ey = vy[nxt] * sy - py
    ex = vx[nxt] * sx - px
    ln = np.hypot(ey, ex)
    with np.errstate(invalid="ignore", divide="ignore"):
        uy, ux = ex / ln, -ey / ln  # unit normal to each edge
    nobj = start.size
    uy = np.concatenate([uy, np.ones((nobj, 1)), np.zeros((nobj, 1))], axis=1)
    ux = np.concatenate([ux, np.zeros((nobj, 1)), np.ones((nobj, 1))], axis=1)
    proj = py[:, None, :] * uy[:, :, None] + px[:, None, :] * ux[:, :, None]
    width = proj.max(axis=2) - proj.min(axis=2) + sy * np.abs(uy) + sx * np.abs(ux)
    width[~np.isfinite(width)] = np.inf
    return width.min(axis=1), fmax
