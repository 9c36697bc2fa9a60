"""The pixel classifier of "find similar": object vs background from a few exemplars.

Positives are the exemplars' pixels (and accepted candidates'); negatives are
a ring around every committed object, rejected candidates, negative clicks or
painted background, and a sparse random draw of the rest of the image (which
also holds unlabelled true objects: that draw is down-weighted). The model is
scikit-learn's histogram gradient boosting on :mod:`.features`, trained in a
second or two on a CPU.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from threadpoolctl import threadpool_limits

from ..errors import MicrosegError
from .tiles import TRAIN_TILE, TiledImage, subsample

#: Most positive pixels drawn; as many negatives are drawn.
MAX_PER_GROUP = 20_000
#: At least this many negative pixels.
MIN_NEGATIVES = 4_000
#: Relative weight of the negative groups: decided (rejected, clicked), the ring around
#: committed objects, and the random background (which holds unlabelled objects too).
GROUP_WEIGHTS = {"neg": 3.0, "ring": 1.0, "random": 0.5}
#: OpenMP threads of the gradient boosting (1: on a shared, loaded CPU more threads
#: spin against each other and run several times slower).
THREADS = 1


def ring_width(scale) -> tuple[float, float]:
    """Inner and outer distance (px) of the negative ring around committed objects."""
    inner = max(2.0, 0.35 * scale.radius)
    return inner, inner + max(3.0, 1.0 * scale.radius)


def _tile_groups(tiled: TiledImage, box, positive, committed, negative):
    """Feature-resolution masks of each training group in one tile."""
    f = tiled.scale.factor
    r0, c0, r1, c1 = box
    inner, outer = ring_width(tiled.scale)
    pad = int(np.ceil(outer)) + 1
    h, w = tiled.shape
    wr0, wc0, wr1, wc1 = max(0, r0 - pad), max(0, c0 - pad), min(h, r1 + pad), min(w, c1 + pad)
    com = np.asarray(committed[wr0:wr1, wc0:wc1], bool)
    if com.any():
        dist = ndi.distance_transform_edt(~com)
        ring = (dist >= inner) & (dist <= outer)
        near = dist < inner
    else:
        ring = np.zeros(com.shape, bool)
        near = ring
    inner_slice = (slice(r0 - wr0, r1 - wr0), slice(c0 - wc0, c1 - wc0))
    ring, near = ring[inner_slice], near[inner_slice]
    pos = np.asarray(positive[r0:r1, c0:c1], bool)
    neg = np.asarray(negative[r0:r1, c0:c1], bool) & ~pos
    shape = (-(-(r1 - r0) // f), -(-(c1 - c0) // f))
    groups = {
        "pos": pos,
        "neg": neg,
        "ring": ring & ~neg & ~pos,
        "random": ~(near | ring | neg | pos | np.asarray(committed[r0:r1, c0:c1], bool)),
    }
    return {k: subsample(v, f, shape) for k, v in groups.items()}


def training_set(tiled: TiledImage, positive, committed, negative, rng, progress=None,
                 check: bool = True):
    """``(X, y, weights)`` for the pixel classifier.

    Parameters
    ----------
    tiled : TiledImage
    positive, committed, negative : ndarray of bool
        Full-image masks: object pixels to learn, everything committed (never
        a negative target), and decided background.
    rng : numpy.random.Generator
    """
    rows, cols = np.nonzero(positive | negative)
    boxes = tiled.tiles_touching(rows, cols, size=TRAIN_TILE)
    pools: dict[str, list] = {"pos": [], "neg": [], "ring": [], "random": []}
    for i, box in enumerate(boxes):
        feats = tiled.features(box)
        groups = _tile_groups(tiled, box, positive, committed, negative)
        for k, m in groups.items():
            if m.any():
                pools[k].append(feats[m])
        if progress is not None:
            progress((i + 1) / len(boxes))
    xs = {k: np.concatenate(v) if v else np.zeros((0, tiled_features_length(tiled)), np.float32)
          for k, v in pools.items()}
    x, y, w = _weighted_draw(xs, rng)
    return balance(x, y, w, rng) if check else (x, y, w)


def _weighted_draw(xs: dict, rng):
    """Positives, and negatives drawn from each group in proportion to weight x size (capped).

    Scikit-learn's binning is slow with sample weights, so group weights are
    realised by how many pixels each group contributes; ``w`` is all ones.
    """
    pos = xs["pos"]
    if len(pos) > MAX_PER_GROUP:
        pos = pos[rng.choice(len(pos), MAX_PER_GROUP, replace=False)]
    target = max(len(pos), MIN_NEGATIVES)
    share = {k: GROUP_WEIGHTS[k] * min(len(xs[k]), MAX_PER_GROUP) for k in GROUP_WEIGHTS}
    total = sum(share.values())
    negs = []
    for k, v in share.items():
        if v == 0:
            continue
        n = int(round(target * v / total))
        src = xs[k]
        negs.append(src[rng.choice(len(src), n, replace=n > len(src))])
    neg = np.concatenate(negs) if negs else np.zeros((0, pos.shape[1]), np.float32)
    x = np.concatenate([pos, neg])
    y = np.r_[np.ones(len(pos), np.int8), np.zeros(len(neg), np.int8)]
    return x, y, np.ones(len(y), np.float32)


def tiled_features_length(tiled: TiledImage) -> int:
    """Features per pixel of ``tiled``."""
    from .features import n_features

    return n_features(tiled.scale)


def balance(x, y, w, rng=None):
    """Check both classes are present; resample the positives to as many as the negatives."""
    if not (y == 1).any():
        raise MicrosegError("No exemplar pixel to learn from.")
    if not (y == 0).any():
        raise MicrosegError("No background to learn from: the exemplars cover the whole image.")
    rng = np.random.default_rng(0) if rng is None else rng
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    take = np.r_[pos[rng.choice(len(pos), len(neg), replace=len(neg) > len(pos))], neg]
    return x[take], y[take], w[take]


def train_pixel_model(x, y, w, seed: int = 0):
    """A fitted :class:`~sklearn.ensemble.HistGradientBoostingClassifier`."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=40, learning_rate=0.2, max_depth=3, min_samples_leaf=200,
        l2_regularization=1.0, early_stopping=False, random_state=seed,
    )
    with threadpool_limits(THREADS):
        model.fit(x, y)
    return model


def predict_probability(model, feats: np.ndarray) -> np.ndarray:
    """Object probability ``(h, w)`` float32 from a feature tile ``(h, w, F)``."""
    h, w, nf = feats.shape
    with threadpool_limits(THREADS):
        p = model.predict_proba(feats.reshape(-1, nf))[:, 1]
    return p.reshape(h, w).astype(np.float32)
