"""Scores of candidate objects: how much each looks like the exemplars, in [0, 1].

Every object is described by :data:`.proposal.OBJECT_FEATURES` (log area,
eccentricity, solidity, contrast against a ring around it, inner texture and
the pixel classifier's mean probability). Before any review the score is the
product of three terms: the similarity to the exemplars' feature distribution
(a Gaussian kernel on robust z-scores, with floors on the spread so one or two
exemplars still generalise), the contrast relative to the exemplars' median
contrast (capped at 1: a fainter object scores less, a stronger one is not
penalised) and the mean pixel probability. Once the user has both accepted and
rejected objects (three of each at least), a logistic regression of "accepted
or exemplar" against "rejected" on the shape and intensity features (not the
mean probability, which is biased high on the exemplars the pixel classifier
was trained on) joins it (geometric mean), but only when, cross-validated on
the user's own decisions, it ranks them clearly better than the prior does.

The contrast term was chosen on the tuning images only (Ti frames 2, 124, 433;
creme 1-7 and 9 with exemplars from creme 8; 10 synthetic images of 5 kinds;
BENCHMARKS.md "Find similar"). With the features measured on the redrawn masks
it raised the best fixed-threshold F1@0.5 of the round-0 score there from 0.25
to 0.30 (Ti) and 0.32 to 0.44 (creme) with promptable-model masks, from 0.18 to
0.19 (Ti) with find similar's own masks (creme unchanged at 0.27), and from
0.54-0.60 to 0.55-0.61 on the synthetic images (``scripts/fewshot/score_variants.py``).
"""

from __future__ import annotations

import numpy as np

from .proposal import OBJECT_FEATURES

#: Features compared with the exemplars (all but the mean probability).
SHAPE_COLUMNS = tuple(range(len(OBJECT_FEATURES) - 1))
#: Exponent of the round-0 score: it puts 0.5 between the best-F1 thresholds of the
#: tuning images (about 0.65 on the Ti frames, 0.4 on creme; BENCHMARKS.md "Find similar").
CALIBRATION = 0.8
#: Rejections (and accepted objects) needed before a classifier may join the score.
MIN_DECISIONS = 3
#: ... and the AUC by which it must rank the user's own decisions better than the
#: prior, cross-validated (:func:`learnt_helps`).
LEARNT_MARGIN = 0.05

#: Index of the mean probability column.
PROB_COLUMN = len(OBJECT_FEATURES) - 1
#: Index of the contrast column (ring minus inside, in normalised grey levels).
CONTRAST_COLUMN = OBJECT_FEATURES.index("contrast")


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


def relative_contrast(feats: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Each object's contrast over the exemplars' median contrast, clipped to [0, 1].

    Sign-agnostic (dark and bright exemplars alike); all ones when the
    exemplars have no contrast to compare with.
    """
    c_ref = float(np.median(ref[:, CONTRAST_COLUMN]))
    if abs(c_ref) < 1e-3:
        return np.ones(len(feats))
    return np.clip(feats[:, CONTRAST_COLUMN] / c_ref, 0.0, 1.0)


def prior_score(feats: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Round-0 score: similarity x relative contrast x mean pixel probability (module doc)."""
    if len(feats) == 0:
        return np.zeros(0)
    p = np.clip(feats[:, PROB_COLUMN], 0, 1)
    sim = similarity(feats, ref)
    return (sim ** 0.5 * relative_contrast(feats, ref) * p ** 0.25) ** CALIBRATION


def _classifier(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced",
                                                              random_state=seed, max_iter=500))


def learnt_helps(fixed: np.ndarray, accepted: np.ndarray, rejected: np.ndarray,
                 prior_accepted: np.ndarray, prior_rejected: np.ndarray, seed: int = 0) -> bool:
    """Does the accepted-vs-rejected classifier rank the user's decisions better than the prior?

    Cross-validated on the decisions (stratified folds of accepted and
    rejected objects; ``fixed`` positives, the exemplars, are in every
    training fold): the classifier's out-of-fold AUC must beat the prior's AUC
    on the same decisions by :data:`LEARNT_MARGIN`. On the Ti tuning frames,
    where accepted and rejected dark patches look alike, it did not, and
    mixing it in anyway lowered F1@0.5 after a review round from 0.30 to 0.17.

    Comparing instead with the scores the objects had when the user decided
    let the classifier in on some Ti tuning frames, and F1@0.5 after the first
    round fell from 0.29 to 0.20 there (creme unchanged): it ranks the
    reviewed best-scored objects well but the rest of the candidates badly.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    n_acc, n_rej = len(accepted), len(rejected)
    if min(n_acc, n_rej) < MIN_DECISIONS:
        return False
    cols = list(SHAPE_COLUMNS)
    x = np.vstack([accepted, rejected])[:, cols]
    y = np.r_[np.ones(n_acc), np.zeros(n_rej)]
    oof = np.zeros(len(y))
    folds = StratifiedKFold(n_splits=min(5, n_acc, n_rej), shuffle=True, random_state=seed)
    for train, test in folds.split(x, y):
        xt = np.vstack([fixed[:, cols], x[train]])
        yt = np.r_[np.ones(len(fixed)), y[train]]
        oof[test] = _classifier(seed).fit(xt, yt).predict_proba(x[test])[:, 1]
    prior_auc = roc_auc_score(y, np.r_[prior_accepted, prior_rejected])
    return bool(roc_auc_score(y, oof) >= prior_auc + LEARNT_MARGIN)


def score_objects(feats: np.ndarray, positives: np.ndarray, negatives: np.ndarray | None = None,
                  accepted: np.ndarray | None = None, *, seed: int = 0) -> np.ndarray:
    """Scores in [0, 1] of the objects ``feats`` given positive (and negative) references.

    ``accepted`` marks the positives the user accepted from earlier candidates
    (the others are exemplars); default: all of them. The classifier of
    positives against negatives joins the score (geometric mean with the
    prior) only when :func:`learnt_helps`.
    """
    feats = np.asarray(feats, float).reshape(-1, len(OBJECT_FEATURES))
    positives = np.asarray(positives, float).reshape(-1, len(OBJECT_FEATURES))
    if len(feats) == 0 or len(positives) == 0:
        return np.zeros(len(feats))
    prior = prior_score(feats, positives)
    if negatives is None or len(negatives) < MIN_DECISIONS:
        return prior
    negatives = np.asarray(negatives, float).reshape(-1, len(OBJECT_FEATURES))
    acc = np.ones(len(positives), bool) if accepted is None else np.asarray(accepted, bool)
    # The prior as it was before these decisions (exemplars only): with the accepted
    # objects among its references it would rank them high by construction.
    before = positives[~acc] if (~acc).any() else positives
    if not learnt_helps(positives[~acc], positives[acc], negatives,
                        prior_score(positives[acc], before), prior_score(negatives, before),
                        seed=seed):
        return prior
    cols = list(SHAPE_COLUMNS)  # not the mean probability: exemplars were trained on
    x = np.vstack([positives, negatives])[:, cols]
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    learnt = _classifier(seed).fit(x, y).predict_proba(feats[:, cols])[:, 1]
    return np.sqrt(prior * learnt)
