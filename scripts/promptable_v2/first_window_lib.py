"""Experiment (not shipped): the first click's window chosen per object instead of fixed.

A first click has no extent, so the backend looks through a fixed smallest window
(``CropConfig.min_side``, 64 px) and doubles it when the mask runs into its edge. That one
size overshoots small objects and cuts large ones. Here the click is predicted through several
smallest windows (:data:`SIDES`) and each candidate mask is described by a few numbers
(:data:`FEATURES`); ``first_window_fit.py`` learns which candidate to keep. Results and why it
was not shipped: BENCHMARKS.md "Promptable model v2", "First window chosen per object".
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from napari_microseg.core.prompting.base import Prediction, Prompts

#: Smallest windows (native pixels) a first click is predicted through.
SIDES = (24, 32, 48, 64, 96, 128)
#: Names of the columns :func:`candidate_features` returns, in order.
FEATURES = (
    "log2_min_side", "log2_side", "grew", "log_area", "fill", "p_inside", "p_ring",
    "on_border", "contrast", "p_click", "compact", "iou_mean", "iou_smaller", "iou_larger",
    "log_area_vs_median",
)
_CROSS = 4  # the last four columns compare a candidate with the others


class Candidates(NamedTuple):
    """First-click predictions through each of :data:`SIDES`, with their features."""

    predictions: list[Prediction]
    #: ``((image slices, window slices), mask on the window)`` per candidate.
    masks: list[tuple]
    features: np.ndarray  # (len(SIDES), len(FEATURES)) float32


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _own_features(image, pred: Prediction, min_side: int, click) -> tuple[tuple, np.ndarray]:
    """Features of one candidate that need only itself, and its mask on its window."""
    win, logits = pred.logits
    img_sl, loc_sl = win.overlap(image.shape)
    mask = np.zeros((win.side, win.side), bool)
    mask[loc_sl] = pred.mask[img_sl]
    area = int(mask.sum())
    prob = _sigmoid(logits)
    ring = ndi.binary_dilation(mask, iterations=2) & ~mask
    crop = np.zeros((win.side, win.side), np.float32)
    crop[loc_sl] = image[img_sl]
    valid = np.zeros((win.side, win.side), bool)
    valid[loc_sl] = True
    ring &= valid
    sd = float(crop[valid].std()) + 1e-3
    inside_mean = float(crop[mask].mean()) if area else 0.0
    ring_mean = float(crop[ring].mean()) if ring.any() else inside_mean
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    perimeter = int((mask & ~ndi.binary_erosion(mask)).sum())
    r, c = int(round(click[0])) - win.r0, int(round(click[1])) - win.c0
    r, c = min(max(r, 0), win.side - 1), min(max(c, 0), win.side - 1)
    row = (
        np.log2(min_side), np.log2(win.side), float(win.side > min_side), np.log1p(area),
        area / win.side**2, float(prob[mask].mean()) if area else 0.0,
        float(prob[ring].mean()) if ring.any() else 0.0, float(border.mean()),
        abs(inside_mean - ring_mean) / sd, float(prob[r, c]),
        4 * np.pi * area / max(perimeter, 1) ** 2,
    )
    return row, ((img_sl, loc_sl), mask)


def _cross_features(masks: list[tuple], shape) -> np.ndarray:
    """Per candidate: mean IoU with the others, IoU with its smaller and larger neighbours, log area over the median."""
    boxes = [(s[0].start, s[1].start, s[0].stop, s[1].stop) for (s, _), _ in masks]
    r0, c0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    r1, c1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    flat = []
    for (img_sl, loc_sl), m in masks:
        canvas = np.zeros((r1 - r0, c1 - c0), bool)
        canvas[img_sl[0].start - r0: img_sl[0].stop - r0,
               img_sl[1].start - c0: img_sl[1].stop - c0] = m[loc_sl]
        flat.append(canvas.ravel())
    stack = np.array(flat, np.float32)
    inter = stack @ stack.T
    areas = np.diag(inter)
    union = areas[:, None] + areas[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    k = len(masks)
    out = np.zeros((k, _CROSS), np.float32)
    med = float(np.median(areas)) + 1.0
    for i in range(k):
        others = [iou[i, j] for j in range(k) if j != i]
        out[i] = (np.mean(others) if others else 1.0, iou[i, i - 1] if i else 1.0,
                  iou[i, i + 1] if i + 1 < k else 1.0, np.log((areas[i] + 1.0) / med))
    return out


def candidates(backend, prompts: Prompts, sides=SIDES) -> Candidates:
    """The first click ``prompts`` predicted through each smallest window in ``sides``.

    ``backend`` is a ``PromptableBackend`` with an image set; each prediction is its usual
    one (growth included) with ``CropConfig.min_side`` set to the side.
    """
    image = backend._image
    preds, rows, masks = [], [], []
    click = prompts.points[0]
    keep = backend.crop
    try:
        for side in sides:
            backend.crop = dataclasses.replace(keep, min_side=int(side))
            pred = backend.predict(prompts)
            row, mask = _own_features(image, pred, int(side), click)
            preds.append(pred)
            rows.append(row)
            masks.append(mask)
    finally:
        backend.crop = keep
    feats = np.hstack([np.array(rows, np.float32), _cross_features(masks, image.shape)])
    return Candidates(preds, masks, feats)
