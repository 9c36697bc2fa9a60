"""Pixel-level metrics: per-class IoU and Dice, mIoU, pixel precision/recall, AUPRC.

Semantic maps are made from a labels image and its ``{instance: class}``
mapping; an instance without a class gets class 0 (``"unclassified"``) and
background is -1. All metrics come from one confusion matrix built with
``np.bincount``; confusion matrices of several images add up, which is how
metrics over an image set are pooled.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import LabelsError
from ..measure.runs import check_labels

#: Semantic value of background pixels.
BACKGROUND = -1


def semantic_map(labels, instance_classes: Mapping[int, int] | None = None) -> np.ndarray:
    """Per-pixel class id (-1 background, 0 unclassified instance, >= 1 class)."""
    a = check_labels(labels)
    top = int(a.max()) if a.size else 0
    lut = np.zeros(top + 1, np.int64)
    lut[0] = BACKGROUND
    for k, v in (instance_classes or {}).items():
        if 0 < int(k) <= top:
            lut[int(k)] = int(v)
    return lut[a]


def confusion(true_sem: np.ndarray, pred_sem: np.ndarray, analysis_mask=None) -> dict:
    """Sparse confusion counts ``{(true_class, pred_class): pixels}``.

    Parameters
    ----------
    true_sem, pred_sem : ndarray
        Semantic maps of the same shape (see :func:`semantic_map`).
    analysis_mask : array-like of bool, optional
        Only pixels where it is ``True`` are counted.
    """
    if true_sem.shape != pred_sem.shape:
        raise LabelsError(f"Shapes differ: {true_sem.shape} vs {pred_sem.shape}.")
    t, p = true_sem, pred_sem
    if analysis_mask is not None:
        m = np.asarray(analysis_mask, bool)
        t, p = t[m], p[m]
    lo = min(int(t.min()) if t.size else 0, int(p.min()) if p.size else 0)
    hi = max(int(t.max()) if t.size else 0, int(p.max()) if p.size else 0)
    k = hi - lo + 1
    cm = np.bincount(((t - lo) * k + (p - lo)).ravel(), minlength=k * k).reshape(k, k)
    nz = np.argwhere(cm)
    return {(int(i) + lo, int(j) + lo): int(cm[i, j]) for i, j in nz}


def add_confusions(*cms: Mapping) -> dict:
    """Sum sparse confusion dicts."""
    out: dict = {}
    for cm in cms:
        for key, v in cm.items():
            out[key] = out.get(key, 0) + v
    return out


def pixel_scores(cm: Mapping) -> dict:
    """Per-class IoU and Dice, mIoU and pixel precision/recall from a confusion dict.

    Returns
    -------
    dict
        ``per_class_iou`` and ``per_class_dice`` (``{class_id: value}`` for every
        non-background class in the true or predicted map), ``miou`` (mean of
        those IoUs), ``background_iou``, ``miou_with_background``,
        ``dice`` and ``foreground_iou`` (foreground vs background,
        class-agnostic), ``pixel_precision``
        and ``pixel_recall`` (foreground vs background, class-agnostic),
        ``pixel_accuracy``.
    """
    classes = sorted({c for key in cm for c in key})
    row = {c: 0 for c in classes}
    col = {c: 0 for c in classes}
    total = 0
    for (t, p), v in cm.items():
        row[t] += v
        col[p] += v
        total += v
    iou, dice = {}, {}
    for c in classes:
        inter = cm.get((c, c), 0)
        union = row[c] + col[c] - inter
        iou[c] = inter / union if union else float("nan")
        dice[c] = 2 * inter / (row[c] + col[c]) if (row[c] + col[c]) else float("nan")
    fg = [c for c in classes if c != BACKGROUND]
    fg_true = sum(row[c] for c in fg)
    fg_pred = sum(col[c] for c in fg)
    fg_both = sum(v for (t, p), v in cm.items() if t != BACKGROUND and p != BACKGROUND)
    correct = sum(cm.get((c, c), 0) for c in classes)
    miou = float(np.mean([iou[c] for c in fg])) if fg else float("nan")
    with_bg = [iou[c] for c in classes]
    return {
        "per_class_iou": {c: float(iou[c]) for c in fg},
        "per_class_dice": {c: float(dice[c]) for c in fg},
        "miou": miou,
        "background_iou": float(iou.get(BACKGROUND, float("nan"))),
        "miou_with_background": float(np.mean(with_bg)) if with_bg else float("nan"),
        "dice": 2 * fg_both / (fg_true + fg_pred) if (fg_true + fg_pred) else float("nan"),
        "foreground_iou": (
            fg_both / (fg_true + fg_pred - fg_both) if (fg_true + fg_pred) else float("nan")
        ),
        "pixel_precision": fg_both / fg_pred if fg_pred else float("nan"),
        "pixel_recall": fg_both / fg_true if fg_true else float("nan"),
        "pixel_accuracy": correct / total if total else float("nan"),
    }


def average_precision(y_true, scores) -> float:
    """Area under the precision-recall curve as average precision (numpy only).

    ``AP = Σ_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds taken
    from high to low (tied scores form one threshold), the step-wise definition
    of ``sklearn.metrics.average_precision_score``; no interpolation.

    Parameters
    ----------
    y_true : array-like of bool
        Whether each pixel is foreground in the ground truth.
    scores : array-like of float
        Foreground probability (or any score, higher = more likely).

    Returns
    -------
    float
        NaN when there is no positive pixel.
    """
    y = np.asarray(y_true, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    if y.shape != s.shape:
        raise LabelsError(f"{y.size} truth values but {s.size} scores.")
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each threshold
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def relative_domain_transferability(miou_target: float, miou_source: float) -> float:
    """RDT = (mIoU_target - mIoU_source) / mIoU_source (0 = no loss across domains)."""
    if not miou_source:
        return float("nan")
    return (float(miou_target) - float(miou_source)) / float(miou_source)
