"""Per-object measurements of a labels image, in physical units.

:func:`measure_objects` returns one row per instance with its class, size and
shape descriptors. Lengths are in nm (areas in nm²) when the pixel size is
known, otherwise in px (px²); the unit is part of every column name
(``area_nm2`` / ``area_px2``) and is also in ``table.attrs["unit"]``.

Columns
-------
label, class_id, class_name
    Instance id, its class id (0 = unclassified) and class name.
area_{u}2
    Pixel count times the pixel area.
equivalent_diameter_{u}
    Diameter of the disc of equal area, ``2 sqrt(area / π)``.
major_axis_{u}, minor_axis_{u}
    Axes of the ellipse with the same second moments (``4 sqrt(eigenvalue)``, as
    ``regionprops``; a disc of radius r gives 2r).
feret_min_{u}, feret_max_{u}
    Min/max caliper width, pixels as filled squares (see :mod:`.hull`).
aspect_ratio
    ``major / minor`` (NaN when the minor axis is 0, i.e. a one-pixel-wide line).
orientation_deg
    Angle of the major axis from the image's +x axis, counter-clockwise as seen
    on screen (y up), in [0, 180) (ImageJ convention).
perimeter_{u}
    Crofton perimeter (4 directions), see :func:`.runs.crofton_perimeter`.
heywood_circularity
    Perimeter divided by the circumference of the disc of equal area: 1 for a
    disc, larger otherwise. Below about 5 px radius the digital perimeter is
    biased low, so tiny objects can read below 1 (a single pixel gives 0.76).
solidity
    Pixel count over pixel centres inside the convex hull (1 = convex).
intensity_mean, intensity_min, intensity_max
    Of the intensity image under the object (only when one is given).
centroid_y_px, centroid_x_px
    Centroid in pixel coordinates (row, column), always present.
centroid_y_nm, centroid_x_nm
    Centroid in nm from the image origin (only when calibrated).
touches_image_edge, touches_excluded, touches_edge
    Has a pixel on the image border; has a pixel in, or 4-adjacent to, an
    excluded (not analysed) pixel; either of the two.
centroid_in_analysed
    The pixel nearest the centroid is analysed (always true without a mask).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..calibration import PixelSize
from ..classes import ClassTable
from ..errors import InvalidImageError
from .hull import convex_hulls, feret_diameters, hull_pixel_count
from .runs import Runs, check_labels, crofton_perimeter, find_runs, run_moments, touches_image_edge

#: Name given to objects without a class.
UNCLASSIFIED = "unclassified"


def length_unit(pixel_size: PixelSize | None) -> str:
    """``"nm"`` for a calibrated pixel size, otherwise ``"px"``."""
    return pixel_size.unit if pixel_size is not None else "px"


def centroid_pixel(c: np.ndarray) -> np.ndarray:
    """Index of the pixel containing coordinate ``c`` (pixel i spans [i - ½, i + ½))."""
    return np.floor(np.asarray(c, dtype=np.float64) + 0.5).astype(np.int64)


def spacing_of(pixel_size: PixelSize | None) -> tuple[float, float]:
    """Pixel size ``(y, x)`` in nm, or ``(1, 1)`` when uncalibrated."""
    if pixel_size is None or not pixel_size.calibrated:
        return (1.0, 1.0)
    return (float(pixel_size.y_nm), float(pixel_size.x_nm))


#: Object pixels gathered at a time for intensity statistics (bounds the index arrays).
INTENSITY_CHUNK_PX = 1 << 22


def _intensity_stats(intensity: np.ndarray, runs: Runs, chunk_px: int = INTENSITY_CHUNK_PX):
    """Mean, min and max of ``intensity`` over each object, from its runs.

    Objects are taken in consecutive groups of about ``chunk_px`` pixels, so the
    temporary index arrays stay bounded whatever the image and object count;
    each object's sums are formed exactly as in one pass (same values, same order).
    """
    flat = np.ascontiguousarray(intensity).ravel()
    m = len(runs.labels)
    mean, vmin, vmax = np.zeros(m), np.zeros(m), np.zeros(m)
    if m == 0:
        return mean, vmin, vmax
    length = runs.length
    # first run of each object and of the end; pixels before each object's first run
    bounds = np.append(runs.first, length.size)
    run_px = np.zeros(length.size + 1, np.int64)
    np.cumsum(length, out=run_px[1:])
    obj_px = run_px[bounds]
    o0 = 0
    while o0 < m:
        # at least one object per chunk; otherwise as many as fit in chunk_px pixels
        o1 = int(np.searchsorted(obj_px, obj_px[o0] + chunk_px, side="right")) - 1
        o1 = min(max(o1, o0 + 1), m)
        r0, r1 = int(bounds[o0]), int(bounds[o1])
        ln = length[r0:r1]
        offset = run_px[r0:r1] - run_px[r0]
        idx = np.repeat(runs.start[r0:r1] - offset, ln) + np.arange(int(ln.sum()))
        vals = flat[idx]
        del idx
        obj_start = (run_px[bounds[o0:o1]] - run_px[r0]).astype(np.intp)
        count = np.add.reduceat(ln, (bounds[o0:o1] - r0).astype(np.intp))
        mean[o0:o1] = np.add.reduceat(vals, obj_start, dtype=np.float64) / count
        vmin[o0:o1] = np.minimum.reduceat(vals, obj_start)
        vmax[o0:o1] = np.maximum.reduceat(vals, obj_start)
        o0 = o1
    return mean, vmin, vmax


def _touches_excluded(labels: np.ndarray, analysis_mask: np.ndarray, ids: np.ndarray):
    """Whether each object has a pixel in or 4-adjacent to an excluded pixel."""
    ex = ~analysis_mask
    near = ex.copy()
    near[1:] |= ex[:-1]
    near[:-1] |= ex[1:]
    near[:, 1:] |= ex[:, :-1]
    near[:, :-1] |= ex[:, 1:]
    hit = np.unique(labels[near])
    return np.isin(ids, hit)


def _classes_for(ids, instance_classes, classes):
    names = classes.names() if classes is not None else {}
    if instance_classes:
        keys = np.fromiter((int(k) for k in instance_classes), np.int64, len(instance_classes))
        vals = np.fromiter((int(v) for v in instance_classes.values()), np.int64, keys.size)
        order = np.argsort(keys)
        keys, vals = keys[order], vals[order]
        pos = np.clip(np.searchsorted(keys, ids), 0, max(keys.size - 1, 0))
        cid = np.where(keys[pos] == ids, vals[pos], 0) if keys.size else np.zeros_like(ids)
    else:
        cid = np.zeros_like(ids)
    uniq, inv = np.unique(cid, return_inverse=True)
    text = [UNCLASSIFIED if c == 0 else names.get(int(c), f"class {int(c)}") for c in uniq]
    cname = np.asarray(text, dtype=object)[inv] if uniq.size else np.zeros(0, dtype=object)
    return cid, cname


def measure_objects(
    labels,
    pixel_size: PixelSize | None = None,
    *,
    intensity=None,
    instance_classes: Mapping[int, int] | None = None,
    classes: ClassTable | None = None,
    analysis_mask=None,
    origin=(0, 0),
    image_shape=None,
) -> pd.DataFrame:
    """Measure every instance of a 2-D labels image.

    Parameters
    ----------
    labels : array-like
        2-D integer labels, 0 = background.
    pixel_size : PixelSize, optional
        Physical pixel size; uncalibrated (px) when omitted.
    intensity : array-like, optional
        2-D image of the same shape for intensity statistics.
    instance_classes : mapping, optional
        ``{instance_id: class_id}``; instances not in it are class 0.
    classes : ClassTable, optional
        Class names; defaults to :data:`~napari_microseg.core.classes.DEFAULT_CLASSES`
        when ``instance_classes`` is given.
    analysis_mask : array-like of bool, optional
        ``True`` where pixels are analysed (e.g. excluding an SEM info bar).
    origin : (int, int)
        Row and column of ``labels[0, 0]`` in a larger image of which ``labels``
        (and ``intensity``, ``analysis_mask``) are a crop: centroids are given in
        the larger image's coordinates.
    image_shape : (int, int), optional
        Shape of that larger image (default ``labels.shape``): edge flags refer
        to its border. See :mod:`.blockwise`.

    Returns
    -------
    pandas.DataFrame
        One row per instance, sorted by label; columns as in the module
        docstring. ``attrs`` holds ``unit``, ``pixel_size`` (dict),
        ``image_shape``, ``analysed_area_px`` and ``has_intensity``.
    """
    lab = check_labels(labels)
    ps = pixel_size if pixel_size is not None else PixelSize.uncalibrated()
    u = ps.unit
    sy, sx = spacing_of(ps)
    mask = None
    if analysis_mask is not None:
        mask = np.asarray(analysis_mask, dtype=bool)
        if mask.shape != lab.shape:
            raise InvalidImageError(
                f"The analysis mask's shape {mask.shape} differs from the labels' {lab.shape}."
            )
    runs = find_runs(lab, checked=True)
    ids = runs.labels
    mo = run_moments(runs, origin)
    full_shape = tuple(int(n) for n in (image_shape or lab.shape)[:2])
    area_px = mo["area"]
    area = area_px * sy * sx
    # second moments in physical units
    a, c, b = mo["mu_xx"] * sx * sx, mo["mu_yy"] * sy * sy, mo["mu_xy"] * sx * sy
    half_tr, root = (a + c) / 2.0, np.sqrt(((a - c) / 2.0) ** 2 + b * b)
    major = 4.0 * np.sqrt(half_tr + root)
    minor = 4.0 * np.sqrt(np.maximum(half_tr - root, 0.0))
    theta_img = 0.5 * np.arctan2(2.0 * b, a - c)  # from +x toward +y (down)
    orientation = np.mod(-np.degrees(theta_img), 180.0)
    orientation[np.isclose(orientation, 180.0) | (root <= 1e-12 * half_tr)] = (
        0.0  # round: undefined
    )
    vy, vx, hstart, hcount = convex_hulls(runs)
    vy, vx = vy + int(origin[0]), vx + int(origin[1])  # image coordinates: same rounding
    fmin, fmax = feret_diameters(vy, vx, hstart, hcount, (sy, sx))
    solidity = area_px / hull_pixel_count(vy, vx, hstart, hcount)
    perimeter = crofton_perimeter(lab, runs, (sy, sx))
    eqd = 2.0 * np.sqrt(area / np.pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(minor > 0, major / np.where(minor > 0, minor, 1.0), np.nan)
        heywood = perimeter / (np.pi * eqd)
    cid, cname = _classes_for(
        ids, instance_classes, classes if classes is not None else ClassTable()
    )
    cols: dict[str, np.ndarray] = {
        "label": ids.astype(np.int64),
        "class_id": cid.astype(np.int64),
        "class_name": cname,
        f"area_{u}2": area,
        f"equivalent_diameter_{u}": eqd,
        f"major_axis_{u}": major,
        f"minor_axis_{u}": minor,
        f"feret_min_{u}": fmin,
        f"feret_max_{u}": fmax,
        "aspect_ratio": aspect,
        "orientation_deg": orientation,
        f"perimeter_{u}": perimeter,
        "heywood_circularity": heywood,
        "solidity": solidity,
    }
    if intensity is not None:
        img = np.asarray(intensity)
        if img.shape != lab.shape:
            raise InvalidImageError(
                f"The intensity image's shape {img.shape} differs from the labels' {lab.shape}; "
                "give a single-channel image of the same size."
            )
        cols["intensity_mean"], cols["intensity_min"], cols["intensity_max"] = _intensity_stats(
            img, runs
        )
    cols["centroid_y_px"] = mo["cy"]
    cols["centroid_x_px"] = mo["cx"]
    if ps.calibrated:
        cols["centroid_y_nm"] = mo["cy"] * sy
        cols["centroid_x_nm"] = mo["cx"] * sx
    edge = touches_image_edge(runs, origin, full_shape)
    if mask is not None:
        excl = _touches_excluded(lab, mask, ids)
        h, w = full_shape
        oy, ox = int(origin[0]), int(origin[1])
        ry = np.clip(np.clip(centroid_pixel(mo["cy"]), 0, h - 1) - oy, 0, lab.shape[0] - 1)
        rx = np.clip(np.clip(centroid_pixel(mo["cx"]), 0, w - 1) - ox, 0, lab.shape[1] - 1)
        inside = mask[ry, rx] if ids.size else np.zeros(0, bool)
    else:
        excl = np.zeros(ids.size, bool)
        inside = np.ones(ids.size, bool)
    cols["touches_image_edge"] = edge
    cols["touches_excluded"] = excl
    cols["touches_edge"] = edge | excl
    cols["centroid_in_analysed"] = inside
    table = pd.DataFrame(cols)
    table.attrs.update(
        unit=u,
        pixel_size=ps.to_dict(),
        image_shape=[int(n) for n in full_shape],
        analysed_area_px=int(mask.sum()) if mask is not None else int(lab.size),
        has_intensity=intensity is not None,
    )
    return table
