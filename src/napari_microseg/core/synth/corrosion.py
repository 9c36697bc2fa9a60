"""SEM corrosion of a polished stainless-steel surface: the ``sem-corrosion`` kind.

Three labelled families, drawn on a grain network that belongs to the
specimen (it is part of the object geometry, not a nuisance):

* ``pit``: the irregular round dark hollows of the ``sem-pits`` kind
  (:func:`~.recipes.pit`);
* ``corroded area``: an irregular patch of general corrosion, the outline a
  level line of a random field around an ellipse (lobed, not star-shaped),
  darker than the surface and carrying its own rough texture of micro-pits and
  nodules (render style ``"corroded"``);
* ``boundary attack``: an attacked stretch of a grain boundary (intergranular
  attack), a dark groove of varying width with bright banks along one edge of
  the Voronoi grain network, stopping short of the triple junctions so that
  every stretch is one instance (render style ``"attack"``).

The grains have their own brightness and the boundaries that are not
attacked stay thin faint lines, so a model must tell attacked from intact
boundaries. Corroded areas and boundary stretches are exact polygons
(:class:`~.geometry.PolygonShape`): their truth records (area, centroid,
moment ellipse, clipping) are computed from the polygon, as for the other
shapes. Every object keeps at least the kind's margin from every other one,
so instances never touch.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.spatial import Voronoi, cKDTree

from ..classes import DEFAULT_CLASSES, DefectClass
from .geometry import PolygonShape, StarShape, rasterize
from .nuisances import Noise, Nuisances, smooth_field
from .recipes import Draft, KindSpec, Population, pit

#: Class table of the corrosion kind: the default classes plus two.
CORROSION_CLASSES = (
    *DEFAULT_CLASSES,
    DefectClass(7, "corroded area", "#f032e6"),
    DefectClass(8, "boundary attack", "#bfef45"),
)
#: Mean grain diameter (nm).
GRAIN_SIZE_NM = 2400.0
#: Std of the grains' relative brightness, and depth of an intact boundary line.
GRAIN_CONTRAST, BOUNDARY_CONTRAST = 0.06, 0.16
#: Fraction of the boundaries (long enough) that are attacked.
ATTACKED_FRACTION = 0.35
#: Area fractions the pits and the corroded areas aim at (default density).
PIT_COVERAGE, AREA_COVERAGE = 0.035, 0.07
_EIGHT = np.ones((3, 3), bool)
MIN_AREA_PX = 3


def corroded_area(median_nm=1300.0, sigma=0.4, lo=400.0, hi=4000.0):
    """Sampler of corroded areas: ``geometry = ("patch", radius_nm, aspect, angle, seed)``."""

    def sample(rng, ctx) -> Draft:
        d = float(np.clip(median_nm * math.exp(sigma * rng.standard_normal()), lo,
                          min(hi, ctx.max_diameter_nm)))
        aspect, angle = rng.uniform(1.0, 2.2), rng.uniform(0, math.pi)
        look = dict(style="corroded", amp=-rng.uniform(0.16, 0.3), width_nm=rng.uniform(0.6, 1.2)
                    * ctx.pixel_size_nm, rim=rng.uniform(0.03, 0.08),
                    texture=rng.uniform(0.5, 0.9), texture_px=rng.uniform(0.8, 1.6),
                    seed=int(rng.integers(2**31)))
        return Draft("corroded area", "corroded", ("patch", d / 2, aspect, angle,
                                                     int(rng.integers(2**31))), look)

    return sample


def patch_polygon(radius_px: float, aspect: float, angle: float, seed: int) -> np.ndarray | None:
    """Vertices ``(y, x)`` (about the origin) of an irregular patch, or ``None`` when degenerate.

    The outline is the zero level line of ``1 - rho² + a * noise`` where
    ``rho`` is the elliptical radius (semi-axes ``radius * sqrt(aspect)`` and
    ``radius / sqrt(aspect)``) and ``noise`` a smooth unit field; the line
    around the centre is kept.
    """
    from skimage.measure import find_contours, points_in_poly

    rng = np.random.default_rng(seed)
    step = max(radius_px / 20.0, 0.35)
    n = int(math.ceil(1.7 * radius_px * math.sqrt(aspect) / step))
    g = (np.arange(-n, n + 1) * step)
    yy, xx = g[:, None], g[None, :]
    c, s = math.cos(angle), math.sin(angle)
    u, v = xx * c - yy * s, xx * s + yy * c
    a, b = radius_px * math.sqrt(aspect), radius_px / math.sqrt(aspect)
    field = 1.0 - (u / a) ** 2 - (v / b) ** 2
    field += rng.uniform(0.35, 0.6) * smooth_field(rng, field.shape, 6.0)
    field[[0, -1], :] = field[:, [0, -1]] = -1.0
    best, best_area = None, 0.0
    for cont in find_contours(field, 0.0):
        if len(cont) < 8 or not np.allclose(cont[0], cont[-1]):
            continue
        poly = (cont[:-1] - n) * step
        if not points_in_poly([[0.0, 0.0]], poly[:, ::-1])[0]:
            continue
        area = abs(float(np.dot(poly[:, 1], np.roll(poly[:, 0], -1))
                         - np.dot(poly[:, 0], np.roll(poly[:, 1], -1)))) / 2
        if area > best_area:
            best, best_area = poly, area
    return best


def attack_polygon(p0, p1, half_width: float, rng) -> np.ndarray:
    """Vertices ``(y, x)`` of a groove from ``p0`` to ``p1`` (px) with rounded ends.

    The half-width swells from 1.5 px at the ends to ``half_width`` in the
    middle; the centre line wobbles by up to 0.8 px.
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = float(np.hypot(*(p1 - p0)))
    t = (p1 - p0) / length
    nrm = np.array([-t[1], t[0]])
    k = max(int(length), 4)
    u = np.linspace(0.0, 1.0, k + 1)
    wob = rng.uniform(0, 0.8) * np.sin(math.pi * u) * np.sin(2 * math.pi * rng.uniform(0.5, 2)
                                                                * u + rng.uniform(0, 6.3))
    lo = 1.5
    hw = lo + (max(half_width, lo) - lo) * np.sin(math.pi * u) ** 0.7
    centre = p0 + u[:, None] * (p1 - p0) + wob[:, None] * nrm
    left, right = centre + hw[:, None] * nrm, centre - hw[:, None] * nrm
    arc = np.linspace(0.0, math.pi, 9)[1:-1]
    end = [p1 + lo * (math.cos(a) * nrm + math.sin(a) * t) for a in arc]
    start = [p0 - lo * (math.cos(a) * nrm + math.sin(a) * t) for a in arc]
    return np.vstack([left, end, right[::-1], start])


def grain_network(rng, shape, grain_px: float):
    """``(background contrast, boundary segments)`` of a Voronoi grain network.

    The background holds each grain's brightness and a thin dark line along
    every boundary; the segments are ``(p0, p1)`` pairs ``(y, x)`` in px of the
    finite Voronoi edges.
    """
    h, w = shape
    n = max(int((h + 2 * grain_px) * (w + 2 * grain_px) / (0.8 * grain_px**2)), 4)
    seeds = np.column_stack([rng.uniform(-grain_px, h + grain_px, n),
                             rng.uniform(-grain_px, w + grain_px, n)])
    grey = rng.normal(0, GRAIN_CONTRAST, n).astype(np.float32)
    gy, gx = np.mgrid[0:h, 0:w]
    dist, idx = cKDTree(seeds).query(np.column_stack([gy.ravel(), gx.ravel()]), k=2)
    gap = (0.5 * (dist[:, 1] - dist[:, 0])).reshape(shape).astype(np.float32)
    background = grey[idx[:, 0].reshape(shape)] - BOUNDARY_CONTRAST * np.exp(-0.5 * (gap / 1.0) ** 2)
    vor = Voronoi(seeds)
    segments = [(vor.vertices[i], vor.vertices[j]) for i, j in vor.ridge_vertices if i >= 0 and j >= 0]
    return background.astype(np.float32), segments


class _Occupancy:
    """Accepted objects' pixels grown by the margin; candidates must avoid them."""

    def __init__(self, shape, margin: int):
        self.taken = np.zeros(shape, bool)
        self.margin = int(margin)

    def fits(self, window, mask) -> bool:
        return not np.any(self.taken[window][mask])

    def add(self, window, mask) -> None:
        m, (h, w) = self.margin, self.taken.shape
        r0, c0 = window[0].start, window[1].start
        big = np.pad(mask, m)
        grown = ndimage.binary_dilation(big, np.ones((2 * m + 1,) * 2, bool)) if m else big
        y0, x0 = max(r0 - m, 0), max(c0 - m, 0)
        y1, x1 = min(r0 + mask.shape[0] + m, h), min(c0 + mask.shape[1] + m, w)
        self.taken[y0:y1, x0:x1] |= grown[y0 - (r0 - m): y1 - (r0 - m), x0 - (c0 - m): x1 - (c0 - m)]


def _try_place(occ, shp, shape):
    window, _, _, mask = rasterize(shp, *shape)
    if mask is None or mask.sum() < MIN_AREA_PX or ndimage.label(mask, _EIGHT)[1] != 1:
        return None
    if not occ.fits(window, mask):
        return None
    occ.add(window, mask)
    return window, mask


def _attacks(rng, ctx, shape, segments, occ, limit):
    ps, (h, w) = ctx.pixel_size_nm, shape
    placed = []
    order = rng.permutation(len(segments))
    for k in order:
        if len(placed) >= limit:
            break
        p0, p1 = (np.asarray(p, float) for p in segments[k])
        length = float(np.hypot(*(p1 - p0)))
        mid = (p0 + p1) / 2
        if length < 14 or not (-0.5 <= mid[0] <= h - 0.5 and -0.5 <= mid[1] <= w - 0.5):
            continue
        if rng.random() >= ATTACKED_FRACTION:
            continue
        half = rng.uniform(50.0, 170.0) / 2 / ps
        clear = occ.margin + max(half, 1.5) + 1.0
        if length - 2 * clear < 8:
            continue
        u0 = clear / length + rng.uniform(0, 0.2)
        u1 = 1 - clear / length - rng.uniform(0, 0.2)
        if (u1 - u0) * length < 8:
            continue
        shp = PolygonShape(attack_polygon(p0 + u0 * (p1 - p0), p0 + u1 * (p1 - p0), half, rng))
        look = dict(style="attack", amp=-rng.uniform(0.4, 0.6), width_nm=max(half, 1.5) * ps,
                    rim=rng.uniform(0.1, 0.25))
        got = _try_place(occ, shp, shape)
        if got is not None:
            placed.append((Draft("boundary attack", "groove", ("polygon", len(shp.vertices)), look),
                           shp, *got))
    return placed


def _shape_of(draft: Draft, cy: float, cx: float, ps: float):
    g = draft.geometry
    if g[0] == "star":
        return StarShape(cy, cx, max(g[1] / ps, 1.5), g[2])
    poly = patch_polygon(g[1] / ps, g[2], g[3], g[4])
    return None if poly is None else PolygonShape(poly + [cy, cx])


def _scatter(rng, ctx, shape, occ, sampler, coverage, limit):
    """Rejection-place drafts of ``sampler`` until ``coverage`` or ``limit`` is reached."""
    ps, (h, w) = ctx.pixel_size_nm, shape
    placed, covered, failures = [], 0.0, 0
    while len(placed) < limit and failures < 25:
        if coverage is not None and covered >= coverage * h * w:
            break
        draft = sampler(rng, ctx)
        shp = None
        for _try in range(40):
            shp = _shape_of(draft, rng.uniform(-0.5, h - 0.5), rng.uniform(-0.5, w - 0.5), ps)
            got = None if shp is None else _try_place(occ, shp, shape)
            if got is not None:
                placed.append((draft, shp, *got))
                covered += shp.area
                break
        else:
            failures += 1
    return placed


def layout(rng, ctx, shape, n_objects, spec):
    """Place the corrosion objects: ``(placed, background contrast, n_requested)``.

    ``placed`` holds ``(draft, shape, window, mask)`` as the generator's own
    placement does. With ``n_objects`` the count is split over attacks,
    corroded areas and pits by the populations' weights (fewer when they do
    not fit); without it the families reach their default densities.
    """
    ps = ctx.pixel_size_nm
    background, segments = grain_network(rng, shape, GRAIN_SIZE_NM / ps)
    occ = _Occupancy(shape, int(math.ceil(max(2.0, spec.margin_nm / ps))))
    weights = np.array([p.weight for p in spec.populations], float)
    if n_objects is None:
        limits, cover = (10**6,) * 3, (None, AREA_COVERAGE, PIT_COVERAGE)
    else:
        limits = tuple(int(v) for v in np.floor(n_objects * weights / weights.sum()))
        limits = (limits[0], limits[1], int(n_objects) - limits[0] - limits[1])
        cover = (None, None, None)
    placed = _attacks(rng, ctx, shape, segments, occ, limits[0])
    placed += _scatter(rng, ctx, shape, occ, spec.populations[1].sampler, cover[1], limits[1])
    placed += _scatter(rng, ctx, shape, occ, spec.populations[2].sampler, cover[2], limits[2])
    requested = len(placed) if n_objects is None else int(n_objects)
    return placed, background, requested


CORROSION_SPEC = KindSpec(
    "sem-corrosion",
    "SEM (secondary electrons): pits, corroded areas and grain-boundary attack on a grained surface",
    "sem",
    (Population(0.35, None), Population(0.25, corroded_area()), Population(0.40, pit())),
    coverage=0.1, pixel_size_nm=20.0, background_level=0.5, sign=-1.0,
    noise=Noise(dose=80.0, gaussian=0.04, scan_lines=0.01),
    nuisances=Nuisances(background=0.12, texture=0.09, texture_nm=30.0, grains=0.0,
                        bend_contours=0, dislocations=0, blur_nm=15.0),
    margin_nm=60.0, layout=layout, classes=CORROSION_CLASSES,
)
