"""Phase (area) fractions of a semantic labelling, by pixel count and by point count.

For each class, :func:`phase_fractions` gives

* the **pixel fraction** -- pixels of the class over analysed pixels -- with a
  t interval over sub-fields: the image is cut into ``subfields × subfields``
  tiles and the spread of the tiles' fractions gives the interval
  (:func:`~.intervals.between_field_ci`, tiles weighted by analysed pixels);
* the **systematic point count** of ASTM E562: a square grid of points every
  ``grid_spacing_px`` pixels, centred in the image; ``P_p`` is the share of
  analysed grid points that fall on the class. As E562 prescribes, the tiles
  act as the fields: ``P_p`` is the mean of the tiles' point fractions, ``s``
  their standard deviation, the 95 % interval ``P_p ± t s/√n`` and the
  relative accuracy ``%RA = 100 · t s/√n / P_p``. Users can set the grid and
  tiles to match their manual procedure and compare the numbers.

:func:`pooled_phase_fractions` pools several images (fields): the pixel
fraction weighted by analysed area with a between-field t interval, and the
E562 point count over the images as fields.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import MicrosegError
from .intervals import between_field_ci, check_conf

PIXEL_INTERVAL = "t interval over sub-fields (tiles weighted by analysed pixels)"
POINT_INTERVAL = "ASTM E562: mean of the fields' point fractions ± t s/√n"


def _class_names(classes, present) -> dict[int, str]:
    if classes is None:
        return {int(c): f"class {int(c)}" for c in present}
    if isinstance(classes, Mapping):
        return {int(k): str(v) for k, v in classes.items()}
    if hasattr(classes, "names"):  # ClassTable
        return {int(k): str(v) for k, v in classes.names().items()}
    return {int(c): f"class {int(c)}" for c in classes}


def _e562(fractions, conf):
    f = np.asarray(fractions, dtype=np.float64)
    f = f[np.isfinite(f)]
    n = f.size
    mean = float(f.mean()) if n else np.nan
    if n < 2:
        return mean, np.nan, np.nan, np.nan, np.nan
    s = float(f.std(ddof=1))
    half = float(stats.t.ppf(0.5 + conf / 2, n - 1) * s / np.sqrt(n))
    return mean, s / np.sqrt(n), mean - half, mean + half, (100 * half / mean if mean > 0 else np.nan)


def phase_fractions(
    semantic_labels,
    classes=None,
    *,
    grid_spacing_px: int | None = None,
    analysis_mask=None,
    conf: float = 0.95,
    subfields: int = 4,
) -> pd.DataFrame:
    """Pixel fraction and ASTM E562 point-count fraction of each class, with intervals.

    Parameters
    ----------
    semantic_labels : array-like of int, 2-D
        One class id per pixel.
    classes : ClassTable, mapping {id: name} or sequence of ids, optional
        Classes to report (default: every id present in the analysed pixels).
    grid_spacing_px : int, optional
        Distance between grid points (default: the shorter side / 20, at least 1).
    analysis_mask : array-like of bool, optional
        Analysed pixels; grid points outside are not counted.
    conf : float
        Confidence level.
    subfields : int
        The image is cut into ``subfields × subfields`` tiles, the fields of
        the intervals (at least 2).

    Returns
    -------
    pandas.DataFrame
        One row per class: ``class_id, class_name, pixels, analysed_pixels,
        pixel_fraction, pixel_ci_low, pixel_ci_high, pixel_interval,
        grid_spacing_px, points, point_hits, point_fraction, point_se,
        point_ci_low, point_ci_high, point_relative_accuracy_pct,
        point_interval, n_subfields``.
    """
    conf = check_conf(conf)
    lab = np.asarray(semantic_labels)
    if lab.ndim != 2 or min(lab.shape) < 2:
        raise MicrosegError(f"Phase fractions need a 2-D class image, got shape {lab.shape}.")
    mask = np.ones(lab.shape, bool) if analysis_mask is None else np.asarray(analysis_mask, bool)
    if mask.shape != lab.shape:
        raise MicrosegError(f"The analysis mask {mask.shape} differs from the labels {lab.shape}.")
    if not mask.any():
        raise MicrosegError("No analysed pixel: the analysis mask is empty.")
    subfields = int(subfields)
    if subfields < 2 or subfields > min(lab.shape):
        raise MicrosegError(f"subfields must be between 2 and {min(lab.shape)}, got {subfields}.")
    h, w = lab.shape
    step = int(grid_spacing_px) if grid_spacing_px else max(1, min(h, w) // 20)
    if step < 1 or step > min(h, w):
        raise MicrosegError(f"The grid spacing must be 1 to {min(h, w)} px, got {grid_spacing_px}.")
    names = _class_names(classes, np.unique(lab[mask]))
    ids = np.array(sorted(names), dtype=np.int64)
    # tile index of every pixel
    ty = np.minimum(np.arange(h) * subfields // h, subfields - 1)
    tx = np.minimum(np.arange(w) * subfields // w, subfields - 1)
    tile = (ty[:, None] * subfields + tx[None, :])
    n_tiles = subfields * subfields
    # class index per pixel (-1: a class not reported)
    lut_idx = np.searchsorted(ids, lab)
    found = (lut_idx < ids.size) & (ids[np.minimum(lut_idx, ids.size - 1)] == lab)
    cidx = np.where(found & mask, lut_idx, -1)
    keyed = tile * ids.size + cidx
    sel = cidx >= 0
    pix = np.bincount(keyed[sel], minlength=n_tiles * ids.size).reshape(n_tiles, ids.size)
    tile_area = np.bincount(tile[mask], minlength=n_tiles).astype(np.float64)
    # grid points, centred
    gy = np.arange((h - 1) % step // 2, h, step)
    gx = np.arange((w - 1) % step // 2, w, step)
    g_tile, g_cls, g_mask = tile[np.ix_(gy, gx)], cidx[np.ix_(gy, gx)], mask[np.ix_(gy, gx)]
    pts_tile = np.bincount(g_tile[g_mask], minlength=n_tiles).astype(np.float64)
    gsel = g_cls >= 0
    hits = np.bincount((g_tile * ids.size + g_cls)[gsel], minlength=n_tiles * ids.size)
    hits = hits.reshape(n_tiles, ids.size)
    rows = []
    analysed = float(mask.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        tile_frac = pix / tile_area[:, None]
        point_frac = hits / pts_tile[:, None]
    use_pts = pts_tile > 0
    for j, cid in enumerate(ids):
        bf = between_field_ci(tile_frac[:, j], tile_area, conf)
        mean, se, lo, hi, ra = _e562(point_frac[use_pts, j], conf)
        rows.append({
            "class_id": int(cid),
            "class_name": names[int(cid)],
            "pixels": int(pix[:, j].sum()),
            "analysed_pixels": int(analysed),
            "pixel_fraction": float(pix[:, j].sum() / analysed),
            "pixel_ci_low": max(bf.lo, 0.0) if np.isfinite(bf.lo) else np.nan,
            "pixel_ci_high": min(bf.hi, 1.0) if np.isfinite(bf.hi) else np.nan,
            "pixel_interval": PIXEL_INTERVAL,
            "grid_spacing_px": step,
            "points": int(pts_tile.sum()),
            "point_hits": int(hits[:, j].sum()),
            "point_fraction": mean,
            "point_se": se,
            "point_ci_low": lo,
            "point_ci_high": hi,
            "point_relative_accuracy_pct": ra,
            "point_interval": POINT_INTERVAL + " (fields: the sub-fields of this image)",
            "n_subfields": int(use_pts.sum()),
        })
    return pd.DataFrame(rows)


def pooled_phase_fractions(frames, conf: float = 0.95) -> pd.DataFrame:
    """Pool :func:`phase_fractions` tables of several images (fields of view).

    Parameters
    ----------
    frames : sequence of DataFrame
        One :func:`phase_fractions` table per image.
    conf : float
        Confidence level.

    Returns
    -------
    pandas.DataFrame
        Per class: ``n_fields``, ``pixel_fraction`` (analysed-area weighted)
        with a between-field t interval, ``point_fraction`` (mean of the fields'
        point fractions) with the E562 interval over the fields, ``point_se``,
        ``point_relative_accuracy_pct`` and the interval names. With one field
        the intervals of that field are kept.
    """
    conf = check_conf(conf)
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        raise MicrosegError("No phase-fraction table to pool.")
    if len(frames) == 1:
        return frames[0].assign(n_fields=1)
    allf = pd.concat([f.assign(_field=i) for i, f in enumerate(frames)], ignore_index=True)
    n_fields = len(frames)
    rows = []
    for (cid, cname), g in allf.groupby(["class_id", "class_name"], sort=True):
        # fields without the class contribute zero
        area = np.array([float(f["analysed_pixels"].iloc[0]) for f in frames])
        pix = np.zeros(n_fields)
        pts = np.zeros(n_fields)
        pix[g["_field"].to_numpy()] = g["pixel_fraction"].to_numpy(np.float64)
        pts[g["_field"].to_numpy()] = g["point_hits"].to_numpy(np.float64) / np.maximum(
            g["points"].to_numpy(np.float64), 1)
        bf = between_field_ci(pix, area, conf)
        mean, se, lo, hi, ra = _e562(pts, conf)
        rows.append({
            "class_id": int(cid), "class_name": cname, "n_fields": n_fields,
            "analysed_pixels": int(area.sum()),
            "pixel_fraction": bf.extra["value"], "pixel_ci_low": bf.lo, "pixel_ci_high": bf.hi,
            "pixel_interval": bf.method,
            "point_fraction": mean, "point_se": se, "point_ci_low": lo, "point_ci_high": hi,
            "point_relative_accuracy_pct": ra, "point_interval": POINT_INTERVAL + " (fields: the images)",
        })
    return pd.DataFrame(rows)
