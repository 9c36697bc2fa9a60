"""Scores of candidate objects: how much each looks like the exemplars, in [0, 1].

Every object is described by :data:`.proposal.OBJECT_FEATURES` (log area,
eccentricity, solidity, contrast against a ring around it, inner texture and
the pixel classifier's mean probability). Before any review the score is the
similarity to the exemplars' feature distribution (a Gaussian kernel on robust
z-scores, with floors on the spread so one or two exemplars still generalise)
times the mean probability. Once the user has both accepted and rejected
objects (three of each at least), a logistic regression of "accepted or
exemplar" against "rejected" on the shape and intensity features (not the
mean probability, which is biased high on the exemplars the pixel classifier
was trained on) is averaged with it.
"""

from __future__ import annotations

import numpy as np

from .proposal import OBJECT_FEATURES

#: Features compared with the exemplars (all but the mean probability).
SHAPE_COLUMNS = tuple(range(len(OBJECT_FEATURES) - 1))
#: Exponent mapping the round-0 score so that 0.5 is the best-F1 threshold on the
#: tuning images (creme 1-9, Ti frames 2-816; see BENCHMARKS.md "Find similar").
CALIBRATION = 0.6
#: Rejections (and positives) needed before a classifier joins the score.
MIN_DECISIONS = 3

#: Index of the mean probability column.
PROB_COLUMN = len(OBJECT_FEATURES) - 1


def _spread(ref: np.ndarray) -> np.ndarray:
    """Per-feature spread of the exemplars' shape features, with floors."""
    med = np.median(ref, axis=0)
    std = ref.std(axis=0) if len(ref) > 1 else np.zeros(ref.shape[1])
    floors = np.array([0.5, 0.2, 0.08, 0.5 * abs(med[3]) + 0.05, 0.5 * abs(med[4]) + 0.02])
    return np.maximum(2.0 * std, floors)


def similarity(feats: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Gaussian-kernel similarity (0..1) of each object's shape features to the exemplars'."""
    cols = list(SHAPE_COLUMNS)
    a, r = feats[:, cols], ref[:, cols]
    z = (a - np.median(r, axis=0)) / _spread(r)
    return np.exp(-0.5 * np.mean(z * z, axis=1))


def prior_score(feats: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Round-0 score: similarity to the exemplars times the mean pixel probability."""
    if len(feats) == 0:
        return np.zeros(0)
    p = np.clip(feats[:, PROB_COLUMN], 0, 1)
    return (similarity(feats, ref) ** 0.5 * p ** 0.25) ** CALIBRATION


def score_objects(feats: np.ndarray, positives: np.ndarray, negatives: np.ndarray | None = None,
                  seed: int = 0) -> np.ndarray:
    """Scores in [0, 1] of the objects ``feats`` given positive (and negative) references."""
    feats = np.asarray(feats, float).reshape(-1, len(OBJECT_FEATURES))
    positives = np.asarray(positives, float).reshape(-1, len(OBJECT_FEATURES))
    if len(feats) == 0 or len(positives) == 0:
        return np.zeros(len(feats))
    prior = prior_score(feats, positives)
    if negatives is None or len(negatives) < MIN_DECISIONS or len(positives) < MIN_DECISIONS:
        return prior
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cols = list(SHAPE_COLUMNS)  # not the mean probability: exemplars were trained on
    x = np.vstack([positives, negatives])[:, cols]
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced",
                                                             random_state=seed, max_iter=500))
    clf.fit(x, y)
    learnt = clf.predict_proba(feats[:, cols])[:, 1]
    return 0.5 * (prior + learnt)
