"""Exact planar shapes for synthetic defects: rasterisation, areas, clipping.

Coordinates are in pixels of the image, in the pixel-index frame used by
scikit-image and napari: pixel ``(r, c)`` has its centre at ``y = r, x = c``
and covers ``[r - 0.5, r + 0.5) x [c - 0.5, c + 0.5)``. The image frame of a
``(H, W)`` image is therefore ``[-0.5, H - 0.5] x [-0.5, W - 0.5]``.

Angles are measured from the +x axis (along columns) towards the *top* of the
displayed image, i.e. counter-clockwise as seen on screen (rows grow
downwards). This is the convention of ``orientation_deg`` in the truth
records, folded to ``(-90, 90]``.

A pixel belongs to a shape when its centre lies inside the shape; this makes
the pixel count an unbiased estimate of the analytic area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: cos of the angle between <111> and [001]: a <111> loop seen along [001] is an
#: ellipse with minor/major = 1/sqrt(3) ~= cos(54.74 deg) ~= 0.577.
COS_111_001 = 1.0 / math.sqrt(3.0)

#: Vertices used for polygon approximations (area error ~ 4e-7 relative).
OUTLINE_VERTICES = 4096


def fold_angle_deg(angle_rad: float) -> float:
    """Fold an axis direction (radians) to degrees in ``(-90, 90]``."""
    d = math.degrees(angle_rad) % 180.0
    return d - 180.0 if d > 90.0 else d


@dataclass(frozen=True)
class Ellipse:
    """An ellipse in pixel coordinates.

    Parameters
    ----------
    cy, cx : float
        Centre (row, column coordinates).
    a, b : float
        Semi-major and semi-minor axes in pixels (``a >= b > 0``).
    angle : float
        Direction of the major axis in radians, counter-clockwise on screen
        from +x.
    """

    cy: float
    cx: float
    a: float
    b: float
    angle: float = 0.0

    @property
    def extent(self) -> float:
        """Radius of the smallest centred circle holding the shape."""
        return self.a

    @property
    def area(self) -> float:
        """Analytic area in px²."""
        return math.pi * self.a * self.b

    def half_widths(self) -> tuple[float, float]:
        """Half extents ``(hy, hx)`` of the axis-aligned bounding box."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return (math.hypot(self.a * s, self.b * c), math.hypot(self.a * c, self.b * s))

    def local(self, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates ``(u, v)`` along the major and minor axes."""
        X, Y = xx - self.cx, -(yy - self.cy)
        c, s = math.cos(self.angle), math.sin(self.angle)
        return X * c + Y * s, -X * s + Y * c

    def inside(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Whether points ``(yy, xx)`` lie inside (boundary included)."""
        u, v = self.local(yy, xx)
        return (u / self.a) ** 2 + (v / self.b) ** 2 <= 1.0

    def signed_distance(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Approximate signed distance to the outline in px (negative inside).

        First-order estimate ``(rho - 1) / |grad rho|``; exact on the outline
        and for circles.
        """
        u, v = self.local(yy, xx)
        ua, vb = u / self.a, v / self.b
        rho = np.sqrt(ua * ua + vb * vb)
        grad = np.sqrt((ua / self.a) ** 2 + (vb / self.b) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(rho > 1e-9, (rho - 1.0) * rho / np.maximum(grad, 1e-12), -self.b)
        return d

    def outline(self, n: int = OUTLINE_VERTICES) -> np.ndarray:
        """``(n, 2)`` polygon of ``(y, x)`` vertices, counter-clockwise on screen."""
        t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
        u, v = self.a * np.cos(t), self.b * np.sin(t)
        c, s = math.cos(self.angle), math.sin(self.angle)
        X, Y = u * c - v * s, u * s + v * c
        return np.column_stack([self.cy - Y, self.cx + X])

    def moments(self) -> tuple[float, float, float, float, float]:
        """``(cy, cx, semi_major, semi_minor, angle)`` of the shape itself."""
        return self.cy, self.cx, self.a, self.b, self.angle


@dataclass(frozen=True)
class StarShape:
    """A star-shaped blob ``r(t) = r0 (1 + sum_k amp_k cos(k t + phase_k))``.

    Used for irregular round corrosion pits. ``t`` is the polar angle,
    counter-clockwise on screen from +x about ``(cy, cx)``.

    Parameters
    ----------
    cy, cx : float
        Polar origin (row, column coordinates); not the area centroid.
    r0 : float
        Mean radius in pixels.
    harmonics : tuple of (int, float, float)
        ``(k, amp_k, phase_k)`` with distinct ``k >= 2`` and ``sum |amp_k| < 1``.
    """

    cy: float
    cx: float
    r0: float
    harmonics: tuple = ()

    def radius(self, t: np.ndarray) -> np.ndarray:
        """Outline radius at polar angle ``t``."""
        r = np.ones_like(t, dtype=float)
        for k, amp, ph in self.harmonics:
            r = r + amp * np.cos(k * t + ph)
        return self.r0 * r

    @property
    def extent(self) -> float:
        """Upper bound of the outline radius."""
        return self.r0 * (1.0 + sum(abs(a) for _, a, _ in self.harmonics))

    @property
    def area(self) -> float:
        """Analytic area ``pi r0² (1 + sum amp_k² / 2)`` in px²."""
        return math.pi * self.r0**2 * (1.0 + 0.5 * sum(a * a for _, a, _ in self.harmonics))

    def half_widths(self) -> tuple[float, float]:
        """Half extents ``(hy, hx)`` of a box about the origin holding the shape."""
        return (self.extent, self.extent)

    def _polar(self, yy, xx):
        X, Y = xx - self.cx, -(yy - self.cy)
        return np.hypot(X, Y), np.arctan2(Y, X)

    def inside(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Whether points ``(yy, xx)`` lie inside (boundary included)."""
        rho, t = self._polar(yy, xx)
        return rho <= self.radius(t)

    def signed_distance(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Radial signed distance to the outline in px (negative inside)."""
        rho, t = self._polar(yy, xx)
        return rho - self.radius(t)

    def outline(self, n: int = OUTLINE_VERTICES) -> np.ndarray:
        """``(n, 2)`` polygon of ``(y, x)`` vertices, counter-clockwise on screen."""
        t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
        r = self.radius(t)
        return np.column_stack([self.cy - r * np.sin(t), self.cx + r * np.cos(t)])

    def moments(self) -> tuple[float, float, float, float, float]:
        """Area centroid and moment-equivalent ellipse ``(cy, cx, a, b, angle)``.

        The semi-axes are those of the ellipse with the same second moments
        (as scikit-image's ``axis_major_length / 2``).
        """
        return polygon_moments(self.outline())


class PolygonShape:
    """A simple (non-self-intersecting) polygon in pixel coordinates.

    Used for irregular corroded areas and attacked grain-boundary stretches.
    Its area, centroid and moments are those of the polygon itself (exact),
    and a pixel belongs to it when its centre lies inside (the same rule as
    the other shapes).

    Parameters
    ----------
    vertices : ndarray, shape (n, 2)
        ``(y, x)`` vertices in either orientation (not repeated at the end).
    """

    def __init__(self, vertices: np.ndarray):
        self.vertices = np.asarray(vertices, dtype=float).reshape(-1, 2)
        if len(self.vertices) < 3:
            raise ValueError("a polygon needs at least 3 vertices")
        self._moments = polygon_moments(self.vertices)
        self.cy, self.cx = self._moments[0], self._moments[1]

    def __repr__(self) -> str:
        return f"PolygonShape({len(self.vertices)} vertices, centre ({self.cy:.2f}, {self.cx:.2f}))"

    @property
    def extent(self) -> float:
        """Largest distance from the centroid to a vertex."""
        return float(np.hypot(*(self.vertices - [self.cy, self.cx]).T).max())

    @property
    def area(self) -> float:
        """Shoelace area in px²."""
        return polygon_area(self.vertices)

    def half_widths(self) -> tuple[float, float]:
        """Half extents ``(hy, hx)`` of a box about the centroid holding the shape."""
        d = np.abs(self.vertices - [self.cy, self.cx]).max(axis=0)
        return float(d[0]), float(d[1])

    def _points(self, yy, xx) -> tuple[np.ndarray, tuple]:
        yy, xx = np.broadcast_arrays(np.asarray(yy, float), np.asarray(xx, float))
        return np.column_stack([xx.ravel(), yy.ravel()]), yy.shape

    def inside(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Whether points ``(yy, xx)`` lie inside."""
        from skimage.measure import points_in_poly

        pts, shape = self._points(yy, xx)
        return points_in_poly(pts, self.vertices[:, ::-1]).reshape(shape)

    def signed_distance(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        """Distance to the outline in px (negative inside), within 0.13 px.

        The outline is sampled every 0.25 px and the nearest sample taken.
        """
        from scipy.spatial import cKDTree

        pts, shape = self._points(yy, xx)
        a = self.vertices[:, ::-1]
        ab = np.roll(a, -1, axis=0) - a
        n = np.maximum(np.ceil(np.hypot(*ab.T) / 0.25).astype(int), 1)
        t = np.concatenate([np.arange(k) / k for k in n])
        dense = np.repeat(a, n, axis=0) + t[:, None] * np.repeat(ab, n, axis=0)
        d = cKDTree(dense).query(pts)[0].reshape(shape)
        return np.where(self.inside(yy, xx), -d, d)

    def outline(self, n: int | None = None) -> np.ndarray:
        """The ``(n, 2)`` ``(y, x)`` vertices (``n`` is ignored: the polygon is exact)."""
        return self.vertices

    def moments(self) -> tuple[float, float, float, float, float]:
        """Centroid and moment-equivalent ellipse ``(cy, cx, a, b, angle)``."""
        return self._moments


def polygon_area(poly: np.ndarray) -> float:
    """Unsigned shoelace area of a ``(n, 2)`` polygon."""
    if len(poly) < 3:
        return 0.0
    y, x = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_moments(poly: np.ndarray) -> tuple[float, float, float, float, float]:
    """Centroid and moment-equivalent ellipse ``(cy, cx, a, b, angle)`` of a polygon."""
    y, x = poly[:, 0], poly[:, 1]
    y1, x1 = np.roll(y, -1), np.roll(x, -1)
    cross = x * y1 - x1 * y
    A = 0.5 * cross.sum()
    cx = ((x + x1) * cross).sum() / (6 * A)
    cy = ((y + y1) * cross).sum() / (6 * A)
    sxx = ((x * x + x * x1 + x1 * x1) * cross).sum() / (12 * A) - cx * cx
    syy = ((y * y + y * y1 + y1 * y1) * cross).sum() / (12 * A) - cy * cy
    sxy = ((x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cross).sum() / (24 * A) - cx * cy
    # Screen frame (Y up): cov(X, Y) = -cov(x, y).
    cov = np.array([[sxx, -sxy], [-sxy, syy]])
    w, vec = np.linalg.eigh(cov)
    major = vec[:, 1]
    angle = math.atan2(major[1], major[0])
    return float(cy), float(cx), 2 * math.sqrt(max(w[1], 0)), 2 * math.sqrt(max(w[0], 0)), angle


def clip_polygon(poly: np.ndarray, y0: float, y1: float, x0: float, x1: float) -> np.ndarray:
    """Clip a polygon of ``(y, x)`` vertices to a box (Sutherland-Hodgman)."""
    out = np.asarray(poly, dtype=float)
    for axis, bound, keep_low in ((0, y0, False), (0, y1, True), (1, x0, False), (1, x1, True)):
        if len(out) == 0:
            break
        nxt = np.roll(out, -1, axis=0)
        c, cn = out[:, axis], nxt[:, axis]
        ins = c <= bound if keep_low else c >= bound
        ins_n = cn <= bound if keep_low else cn >= bound
        cross = ins != ins_n
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(cross, (bound - c) / (cn - c), 0.0)
        inter = out + t[:, None] * (nxt - out)
        cand = np.stack([out, inter], axis=1).reshape(-1, 2)
        keep = np.stack([ins, cross], axis=1).reshape(-1)
        out = cand[keep]
    return out


def clipped_area(shape, height: int, width: int) -> tuple[float, bool]:
    """Area (px²) of ``shape`` inside the image frame, and whether it is clipped.

    Unclipped shapes return their analytic area. Clipped ones use a dense
    polygon clipped to the frame, rescaled by analytic / polygon full area.
    """
    hy, hx = shape.half_widths()
    inside = (
        shape.cy - hy >= -0.5
        and shape.cy + hy <= height - 0.5
        and shape.cx - hx >= -0.5
        and shape.cx + hx <= width - 0.5
    )
    if inside:
        return shape.area, False
    poly = shape.outline()
    full = polygon_area(poly)
    part = polygon_area(clip_polygon(poly, -0.5, height - 0.5, -0.5, width - 0.5))
    if part >= full * (1 - 1e-12):
        return shape.area, False
    return shape.area * part / full, True


def rasterize(shape, height: int, width: int, pad: float = 0.0):
    """Pixels of ``shape`` (centre-inside rule) within the image.

    Parameters
    ----------
    shape : Ellipse, StarShape or PolygonShape
    height, width : int
        Image size.
    pad : float
        Extra pixels around the bounding box in the returned window, for
        rendering contrast that extends beyond the outline.

    Returns
    -------
    window : tuple of slice
        ``(rows, cols)`` window inside the image.
    yy, xx : ndarray
        Pixel coordinates of the window (broadcastable column/row vectors).
    mask : ndarray of bool
        Inside-test of the window's pixel centres, or ``None`` if the window
        is empty.
    """
    hy, hx = shape.half_widths()
    r0 = max(int(math.floor(shape.cy - hy - pad)), 0)
    r1 = min(int(math.ceil(shape.cy + hy + pad)) + 1, height)
    c0 = max(int(math.floor(shape.cx - hx - pad)), 0)
    c1 = min(int(math.ceil(shape.cx + hx + pad)) + 1, width)
    window = (slice(r0, max(r1, r0)), slice(c0, max(c1, c0)))
    yy = np.arange(r0, max(r1, r0), dtype=float)[:, None]
    xx = np.arange(c0, max(c1, c0), dtype=float)[None, :]
    if r1 <= r0 or c1 <= c0:
        return window, yy, xx, None
    return window, yy, xx, shape.inside(yy, xx)
