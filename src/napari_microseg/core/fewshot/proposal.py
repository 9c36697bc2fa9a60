"""Candidate instances at the exemplars' scale, tile by tile.

Pass 1 predicts the pixel classifier's object probability of every tile
(stored as uint8 at feature resolution: one byte per feature pixel, so a
10k x 10k mosaic needs 100 MB). Pass 2 finds candidate centres as peaks of
the scale-normalised Laplacian of Gaussian (the filter bank's, at the
exemplars' scales; dark or bright like the exemplars) stronger than a
fraction of the exemplars' own response, and draws one mask per centre: the
connected region darker (brighter) than halfway between the centre and a
ring around it (:func:`flood_masks`). A candidate belongs to the tile holding
its centre and is drawn on the tile plus a halo, so objects cut by a tile
border are whole. Committed pixels are never part of a candidate. Pass 2 also
measures every object (candidates and the reference objects: exemplars,
accepted and rejected ones) for the scorer (:mod:`.scoring`), including the
mean pixel probability.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import regionprops_table
from skimage.segmentation import expand_labels
from skimage.transform import resize

from ..prompting.normalize import apply_normalization
from .pixels import predict_probability
from .tiles import TRAIN_TILE, TiledImage, subsample

#: Object features measured for the scorer, in column order.
OBJECT_FEATURES = ("log_area", "eccentricity", "solidity", "contrast", "inner_std", "mean_prob")
#: An object found over committed pixels by more than this fraction of its area is
#: the fringe of a committed object, not a candidate.
MAX_COMMITTED_OVERLAP = 0.2


def halo(scale) -> int:
    """Context (px) read around a tile in pass 2: more than the largest object."""
    return int(np.ceil(2.5 * scale.r_max)) + 8


def probability_map(tiled: TiledImage, model, boxes=None, progress=None, cancel=None):
    """Pass 1: uint8 probability (x255) at feature resolution for ``boxes`` (default all tiles).

    Returns None when cancelled.
    """
    f = tiled.scale.factor
    h, w = tiled.shape
    prob = np.zeros((-(-h // f), -(-w // f)), np.uint8)
    boxes = tiled.tiles if boxes is None else boxes
    for i, box in enumerate(boxes):
        if cancel is not None and cancel():
            return None
        p = predict_probability(model, tiled.features(box))
        r0, c0 = box[0] // f, box[1] // f
        prob[r0: r0 + p.shape[0], c0: c0 + p.shape[1]] = np.round(p * 255).astype(np.uint8)
        if progress is not None:
            progress((i + 1) / len(boxes))
    return prob


def _window(tiled: TiledImage, box, pad: int):
    """Full-resolution window around ``box`` (aligned to the feature factor)."""
    f = tiled.scale.factor
    h, w = tiled.shape
    r0 = max(0, (box[0] - pad) // f * f)
    c0 = max(0, (box[1] - pad) // f * f)
    return r0, c0, min(h, box[2] + pad), min(w, box[3] + pad)


def full_resolution(prob: np.ndarray, f: int, win) -> np.ndarray:
    """Float32 probability in [0, 1] on the full-resolution window ``win``."""
    r0, c0, r1, c1 = win
    sub = prob[r0 // f: -(-r1 // f), c0 // f: -(-c1 // f)].astype(np.float32) / 255.0
    if f > 1:
        sub = resize(sub, (sub.shape[0] * f, sub.shape[1] * f), order=1, mode="edge",
                     anti_aliasing=False, preserve_range=True).astype(np.float32)
    return sub[: r1 - r0, : c1 - c0]


def blob_response(feats: np.ndarray, scale, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """``(response, radius)`` at feature resolution: the strongest scale-normalised LoG.

    ``sign`` is +1 for objects darker than their surroundings, -1 for brighter
    ones; ``radius`` is the blob radius (full-resolution px) of the best scale.
    """
    idx = [3 + 6 * k for k in range(len(scale.sigmas))]
    stack = sign * feats[..., idx]
    best = np.argmax(stack, axis=-1)
    radii = np.sqrt(2.0) * np.asarray(scale.sigmas) * scale.factor
    return np.take_along_axis(stack, best[..., None], -1)[..., 0], radii[best]


def exemplar_response(tiled: TiledImage, pos: np.ndarray):
    """``(contrast_sum, n_pixels, dark_peaks, bright_peaks)`` of the exemplars in ``pos``.

    ``contrast_sum`` sums the exemplar pixels' local contrast (negative for dark
    objects); ``dark_peaks`` / ``bright_peaks`` hold each exemplar's strongest
    blob response for dark and for bright objects.
    """
    f = tiled.scale.factor
    rows, cols = np.nonzero(pos)
    total, count, dark, bright = 0.0, 0, [], []
    for box in tiled.tiles_touching(rows, cols, size=TRAIN_TILE):
        feats = tiled.features(box)
        lab = subsample(np.asarray(pos[box[0]:box[2], box[1]:box[3]]), f, feats.shape[:2])
        ids = np.unique(lab)
        ids = ids[ids > 0]
        if not len(ids):
            continue
        total += float(feats[..., 0][lab > 0].sum())
        count += int(np.count_nonzero(lab))
        for sign, bucket in ((1.0, dark), (-1.0, bright)):
            resp, _ = blob_response(feats, tiled.scale, sign)
            bucket.extend(np.asarray(ndi.maximum(resp, lab, ids)).tolist())
    return total, count, dark, bright


def flood_masks(norm: np.ndarray, centres, radii, sign: float, blocked: np.ndarray,
                min_area: float, max_area: float) -> np.ndarray:
    """Labels of one object per centre: the connected region darker (``sign`` > 0) than
    halfway between the centre and a ring at 1.5-2.2 radii, within 2 radii.

    Centres are taken in order; an object less than half free (taken by an
    earlier one) or mostly on ``blocked`` pixels is skipped.
    """
    h, w = norm.shape
    g = ndi.gaussian_filter(norm, 1.0) * (-sign)
    out = np.zeros((h, w), np.int32)
    n = 0
    for (y, x), rr in zip(np.asarray(centres, int), radii, strict=True):
        rr = max(1.5, float(rr))
        big = int(np.ceil(2.3 * rr)) + 2
        y0, y1, x0, x1 = max(0, y - big), min(h, y + big + 1), max(0, x - big), min(w, x + big + 1)
        win = g[y0:y1, x0:x1]
        yy, xx = np.ogrid[y0 - y:y1 - y, x0 - x:x1 - x]
        d = np.hypot(yy, xx)
        ring = win[(d >= 1.5 * rr) & (d <= 2.2 * rr)]
        core = win[d <= max(1.0, 0.5 * rr)]
        if not ring.size or not core.size:
            continue
        level = 0.5 * (core.mean() + np.median(ring))
        if core.mean() <= np.median(ring):
            continue
        lab, _ = ndi.label((win > level) & (d <= 2.0 * rr))
        c = lab[y - y0, x - x0]
        if c == 0:
            continue
        m = ndi.binary_fill_holes(lab == c)
        area = int(m.sum())
        if not min_area <= area <= max_area:
            continue
        if np.count_nonzero(m & blocked[y0:y1, x0:x1]) > MAX_COMMITTED_OVERLAP * area:
            continue
        free = m & (out[y0:y1, x0:x1] == 0) & ~blocked[y0:y1, x0:x1]
        if free.sum() < 0.5 * area:
            continue
        n += 1
        out[y0:y1, x0:x1][free] = n
    return out


def object_features(lab: np.ndarray, norm: np.ndarray, prob: np.ndarray, scale) -> tuple:
    """``(ids, features (n, len(OBJECT_FEATURES)))`` of the objects of ``lab``."""
    if not lab.any():
        return np.zeros(0, int), np.zeros((0, len(OBJECT_FEATURES)))
    t = regionprops_table(lab, properties=("label", "area", "eccentricity", "solidity"))
    ids = np.asarray(t["label"])
    grown = expand_labels(lab, max(2.0, 0.5 * scale.radius))
    ring = np.where(lab == 0, grown, 0)
    inner = np.asarray(ndi.mean(norm, lab, ids))
    n_ring = np.bincount(ring.ravel(), minlength=int(ids.max()) + 1)[ids]
    outer = np.asarray(ndi.sum(norm, ring, ids)) / np.maximum(n_ring, 1)
    outer = np.where(n_ring > 0, outer, inner)
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN (a degenerate object) -> 0 below
        std = np.asarray(ndi.standard_deviation(norm, lab, ids))
        mp = np.asarray(ndi.mean(prob, lab, ids))
    feats = np.column_stack([np.log(np.asarray(t["area"], float)), t["eccentricity"],
                             t["solidity"], outer - inner, std, mp])
    return ids, np.nan_to_num(feats.astype(float))


def candidates_in_tiles(tiled: TiledImage, prob, committed, references=(), *,
                        min_area: float, max_area: float, sign: float = 1.0,
                        peak_threshold: float = 0.0, progress=None, cancel=None,
                        find: bool = True):
    """Pass 2: candidate labels (full image, int32) and features of candidates and references.

    Parameters
    ----------
    prob : ndarray of uint8
        :func:`probability_map`.
    committed : ndarray of bool
        Pixels no candidate may take (only read when ``find``).
    references : sequence of ndarray of int
        Full-image labels (exemplars, rejections, ...) to measure too.
    min_area, max_area : float
        Candidates outside this area range (px) are dropped.
    sign : float
        +1 when the exemplars are darker than their surroundings, -1 when brighter.
    peak_threshold : float
        Smallest blob response (:func:`blob_response`) of a candidate's centre.
    find : bool
        Look for candidates (False: measure the references only).

    Returns
    -------
    (labels, features, ref_features) or None when cancelled
        ``features[i]`` belongs to candidate ``i + 1``; ``ref_features[k]`` is
        ``(ids, features)`` of ``references[k]``.
    """
    scale = tiled.scale
    f = scale.factor
    out = np.zeros(tiled.shape, np.int32)
    feats: list[np.ndarray] = []
    refs = [([], []) for _ in references]
    pad = halo(scale)
    boxes = tiled.tiles
    for i, box in enumerate(boxes):
        if cancel is not None and cancel():
            return None
        win = _window(tiled, box, pad)
        sl = (slice(win[0], win[2]), slice(win[1], win[3]))
        p = full_resolution(prob, f, win)
        norm = apply_normalization(np.asarray(tiled.image[sl]), *tiled.value_range)
        if find:
            blocked = np.asarray(committed[sl], bool)
            resp, rad = blob_response(tiled.features(box), scale, sign)
            md = max(1, int(round(0.6 * scale.r_min / f)))
            pk = peak_local_max(resp, min_distance=md, threshold_abs=peak_threshold,
                                exclude_border=False)
            pk = pk[np.argsort(-resp[pk[:, 0], pk[:, 1]], kind="stable")]
            centres = pk * f + f // 2 + np.array([box[0] - win[0], box[1] - win[1]])
            centres = np.minimum(centres, np.array(norm.shape) - 1)
            lab = flood_masks(norm, centres, rad[pk[:, 0], pk[:, 1]], sign, blocked,
                              min_area, max_area)
            lab = np.where(out[sl] == 0, lab, 0)
            ids, fv = object_features(lab, norm, p, scale)
            if len(ids):
                n0 = len(feats)
                new = np.zeros(int(lab.max()) + 1, np.int32)
                new[ids] = np.arange(n0 + 1, n0 + 1 + len(ids))
                free = out[sl] == 0
                out[sl][free] = new[lab[free]]
                feats.extend(fv)
        for k, ref in enumerate(references):
            rlab = np.asarray(ref[sl])
            own = _owned(rlab, box, win)
            if own.any():
                ids, fv = object_features(own, norm, p, scale)
                refs[k][0].extend(ids.tolist())
                refs[k][1].extend(fv)
        if progress is not None:
            progress((i + 1) / len(boxes))
    out, feats = _drop_hidden(out, feats)
    ref_out = [(np.asarray(a, int), np.asarray(b, float).reshape(-1, len(OBJECT_FEATURES)))
               for a, b in refs]
    return out, feats, ref_out


def measure_labels(tiled: TiledImage, prob, labels: np.ndarray):
    """``(labels, features)`` of the objects of ``labels``, measured tile by tile.

    The objects are renumbered ``1..n`` in id order (ids without a pixel are
    dropped) and ``features[i]`` belongs to object ``i + 1``: how candidates
    whose masks were redrawn (:mod:`.masks`) are measured for the scorer.
    """
    measured = candidates_in_tiles(tiled, prob, None, [labels], min_area=0, max_area=0,
                                   find=False)
    ids, fv = measured[2][0]
    feats = np.zeros((int(labels.max(initial=0)), len(OBJECT_FEATURES)))
    feats[ids - 1] = fv  # every object with a pixel is measured (its centroid lies in a tile)
    return _drop_hidden(labels, feats)


def _owned(rlab: np.ndarray, box, win) -> np.ndarray:
    """Objects of a reference labels window whose centroid lies in ``box``."""
    ids = np.unique(rlab)
    ids = ids[ids > 0]
    if not len(ids):
        return np.zeros(rlab.shape, np.int32)
    cen = np.asarray(ndi.center_of_mass(np.ones(rlab.shape), rlab, ids)).reshape(-1, 2)
    rows, cols = cen[:, 0] + win[0], cen[:, 1] + win[1]
    inside = (rows >= box[0]) & (rows < box[2]) & (cols >= box[1]) & (cols < box[3])
    keep = np.isin(rlab, ids[inside])
    return np.where(keep, rlab, 0).astype(np.int32)


def _drop_hidden(out: np.ndarray, feats: list):
    """Renumber ``1..n`` after candidates hidden by earlier tiles' ones; keep features aligned."""
    n = len(feats)
    feats = np.asarray(feats, float).reshape(-1, len(OBJECT_FEATURES))
    if n == 0:
        return out, feats
    present = np.bincount(out.ravel(), minlength=n + 1)[1:] > 0
    if present.all():
        return out, feats
    new = np.zeros(n + 1, np.int32)
    new[1:][present] = np.arange(1, int(present.sum()) + 1)
    return new[out], feats[present]
