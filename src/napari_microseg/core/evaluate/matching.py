"""One-to-one matching of predicted to true instances by IoU.

The overlap of every (true, predicted) pair is read from a sparse contingency
table built in one vectorised pass (``np.unique`` of combined label pairs over
the pixels where both are non-zero), never by looping over objects.

Matching rule
-------------
Candidate pairs with IoU >= the threshold are taken greedily in order of
decreasing IoU (ties: lower true id, then lower predicted id); a pair is kept
when neither member is matched yet. So each true object is matched at most
once, to the best still-available prediction, and each prediction at most once
(a prediction that merges two true objects matches one of them; the other is
a false negative). Unmatched predictions are false positives. For thresholds
>= 0.5 the result is the same as any other one-to-one rule, since a pair with
IoU > 0.5 is then unique.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..correct import id_areas
from ..errors import LabelsError
from ..measure.runs import check_labels


@dataclass
class Overlaps:
    """Sparse contingency table of two labels images.

    Attributes
    ----------
    true_ids, pred_ids : ndarray of int64
        Non-zero ids present in each image (sorted).
    true_area, pred_area : ndarray of int64
        Pixel count of each id, aligned with the ids.
    pair_true, pair_pred : ndarray of intp
        Index into ``true_ids`` / ``pred_ids`` of each overlapping pair.
    intersection, iou : ndarray
        Overlap in pixels and intersection over union of each pair.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_area: np.ndarray
    pred_area: np.ndarray
    pair_true: np.ndarray
    pair_pred: np.ndarray
    intersection: np.ndarray
    iou: np.ndarray


def overlaps(pred, true) -> Overlaps:
    """Contingency table of predicted vs true instances (vectorised).

    Parameters
    ----------
    pred, true : array-like
        2-D labels images of the same shape (0 = background).
    """
    p = check_labels(pred)
    t = check_labels(true)
    if p.shape != t.shape:
        raise LabelsError(f"Prediction shape {p.shape} differs from ground truth {t.shape}.")
    t_ids, t_area = id_areas(t)
    p_ids, p_area = id_areas(p)
    both = (t != 0) & (p != 0)
    tv = t[both].astype(np.int64)
    pv = p[both].astype(np.int64)
    width = int(p_ids[-1]) + 1 if p_ids.size else 1
    keys, inter = np.unique(tv * width + pv, return_counts=True)
    kt, kp = keys // width, keys % width
    it = np.searchsorted(t_ids, kt)
    ip = np.searchsorted(p_ids, kp)
    union = t_area[it] + p_area[ip] - inter
    return Overlaps(
        t_ids,
        p_ids,
        t_area,
        p_area,
        it.astype(np.intp),
        ip.astype(np.intp),
        inter.astype(np.int64),
        inter / union,
    )


@dataclass
class Matching:
    """Result of :func:`match_instances`.

    Attributes
    ----------
    true_ids, pred_ids : ndarray
        All true / predicted ids.
    matched_true, matched_pred : ndarray
        Ids of the matched pairs (aligned), and ``matched_iou`` their IoU.
    threshold : float
        The IoU threshold used.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    matched_true: np.ndarray
    matched_pred: np.ndarray
    matched_iou: np.ndarray
    threshold: float

    @property
    def tp(self) -> int:
        """Matched pairs."""
        return int(self.matched_true.size)

    @property
    def fp(self) -> int:
        """Unmatched predictions."""
        return int(self.pred_ids.size - self.matched_pred.size)

    @property
    def fn(self) -> int:
        """Unmatched true objects."""
        return int(self.true_ids.size - self.matched_true.size)

    @property
    def unmatched_true(self) -> np.ndarray:
        """True ids without a match."""
        return np.setdiff1d(self.true_ids, self.matched_true)

    @property
    def unmatched_pred(self) -> np.ndarray:
        """Predicted ids without a match (false positives)."""
        return np.setdiff1d(self.pred_ids, self.matched_pred)

    @property
    def precision(self) -> float:
        """TP / predictions (1 when there is nothing predicted and nothing true)."""
        return prf(self.tp, self.pred_ids.size, self.true_ids.size)[0]

    @property
    def recall(self) -> float:
        """TP / true objects."""
        return prf(self.tp, self.pred_ids.size, self.true_ids.size)[1]

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        return prf(self.tp, self.pred_ids.size, self.true_ids.size)[2]


def prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts.

    With nothing predicted and nothing true all three are 1 (a perfect empty
    answer); with only one side empty the undefined ratio is 0.
    """
    if n_pred == 0 and n_true == 0:
        return 1.0, 1.0, 1.0
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2.0 * tp / (n_pred + n_true)
    return float(p), float(r), float(f)


def match_overlaps(ov: Overlaps, iou_threshold: float = 0.3) -> Matching:
    """Greedy one-to-one matching of an :class:`Overlaps` table (see module doc)."""
    if not 0.0 < iou_threshold <= 1.0:
        raise LabelsError(f"The IoU threshold must be in (0, 1], got {iou_threshold}.")
    cand = np.flatnonzero(ov.iou >= iou_threshold)
    order = cand[np.lexsort((ov.pair_pred[cand], ov.pair_true[cand], -ov.iou[cand]))]
    used_t = np.zeros(ov.true_ids.size, bool)
    used_p = np.zeros(ov.pred_ids.size, bool)
    keep = []
    for k in order.tolist():
        i, j = ov.pair_true[k], ov.pair_pred[k]
        if not used_t[i] and not used_p[j]:
            used_t[i] = used_p[j] = True
            keep.append(k)
    keep = np.asarray(keep, dtype=np.intp)
    return Matching(
        true_ids=ov.true_ids,
        pred_ids=ov.pred_ids,
        matched_true=ov.true_ids[ov.pair_true[keep]],
        matched_pred=ov.pred_ids[ov.pair_pred[keep]],
        matched_iou=ov.iou[keep],
        threshold=float(iou_threshold),
    )


def match_instances(pred, true, iou_threshold: float = 0.3) -> Matching:
    """Match predicted to true instances at an IoU threshold.

    Parameters
    ----------
    pred, true : array-like
        2-D labels images of the same shape.
    iou_threshold : float
        Minimum IoU of a match (default 0.3).

    Returns
    -------
    Matching
    """
    return match_overlaps(overlaps(pred, true), iou_threshold)
