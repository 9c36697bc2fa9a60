"""Tiled inference of an instance model (Mask R-CNN, YOLO-seg) on an image of any size.

Each tile is detected on its own. A detection is kept only by the tile whose
kept part (:mod:`.tiles`) contains the centre of its box, so an object in the
overlap of two tiles is taken from the tile that sees it whole. Masks are
pasted in order of decreasing score without overwriting earlier ones; a mask
that overlaps an existing instance by at least ``merge_overlap`` of the
smaller of the two is merged into it (an object cut by a tile edge and found
by both tiles becomes one instance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..calibration import PixelSize
from ..device import autocast
from .card import ModelCard, ModelError
from .inference import (
    InferenceCancelled,
    check_image,
    effective_tiling,
    intensity_window,
    read_tile,
    resample,
    resample_factors,
    resize_to,
)
from .tiles import Tile, batches, tile_grid


@dataclass
class InstancePrediction:
    """Instances found by :func:`predict_instances`.

    Attributes
    ----------
    labels : ndarray of int32
        Instance ids, 0 background, ids ``1..n``.
    instance_classes : dict
        ``{instance id: class id}`` (class ids of the card).
    scores : dict
        ``{instance id: detection score}``.
    """

    labels: np.ndarray
    instance_classes: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)


class _Painter:
    """Pastes masks into a label image, merging strongly overlapping ones."""

    def __init__(self, shape, merge_overlap: float):
        self.labels = np.zeros(shape, np.int32)
        self.merge_overlap = float(merge_overlap)
        self.area: dict[int, int] = {}
        self.scores: dict[int, float] = {}
        self.classes: dict[int, int] = {}

    def add(self, r0: int, c0: int, mask: np.ndarray, score: float, class_id: int) -> None:
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        if rows.size == 0:
            return
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        m = mask[y0:y1, x0:x1]
        sub = self.labels[r0 + y0 : r0 + y1, c0 + x0 : c0 + x1]
        under = sub[m]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        n = int(m.sum())
        target = None
        for i in np.argsort(-counts):
            idx = int(ids[i])
            if counts[i] >= self.merge_overlap * min(n, self.area[idx]):
                target = idx
                break
        free = m & (sub == 0)
        n_free = int(free.sum())
        if target is None:
            if n_free == 0:
                return
            target = len(self.area) + 1
            self.area[target], self.scores[target], self.classes[target] = 0, score, class_id
        elif score > self.scores[target]:
            self.scores[target], self.classes[target] = score, class_id
        sub[free] = target
        self.area[target] += n_free


def _detect(model, batch: np.ndarray, score_floor: float = 0.0):
    device = next(model.parameters()).device
    x = torch.from_numpy(batch).to(device)
    kw = {"score_floor": score_floor} if getattr(model, "refines_boxes", False) else {}
    with torch.inference_mode(), autocast(device):
        dets = model(x, **kw)  # a two-stage model refines only what will be kept
    return [{k: v.float().cpu().numpy() for k, v in d.items()} for d in dets]


def _paste_tile(painter, tile: Tile, det, card, score_thresholds, mask_threshold):
    h, w = tile.r1 - tile.r0, tile.c1 - tile.c0
    ids = card.class_ids
    for i in np.argsort(-det["scores"], kind="stable"):
        score, label = float(det["scores"][i]), int(det["labels"][i])
        if not 1 <= label <= len(ids) or score < score_thresholds[label - 1]:
            continue
        x1, y1, x2, y2 = det["boxes"][i]
        if not tile.keeps_point(tile.r0 + (y1 + y2) / 2, tile.c0 + (x1 + x2) / 2):
            continue
        mask = det["masks"][i, 0, :h, :w] >= mask_threshold
        painter.add(tile.r0, tile.c0, mask, score, ids[label - 1])


def predict_instances(
    model,
    card: ModelCard,
    image,
    *,
    pixel_size: PixelSize | None = None,
    tile: int | None = None,
    halo: int | None = None,
    batch_size: int = 2,
    score_threshold: float | None = None,
    mask_threshold: float = 0.5,
    merge_overlap: float = 0.5,
    progress=None,
    cancel=None,
) -> InstancePrediction:
    """Instance labels, classes and scores of an instance model over a whole image.

    Parameters
    ----------
    model : torch.nn.Module
        A :class:`~.maskrcnn.MaskRCNN` (or any module with the same eval output:
        a list of dicts with ``boxes``, ``labels``, ``scores``, ``masks``).
    card : ModelCard
        Its card (task ``"instance"``).
    image : array-like
        ``(H, W)`` or ``(H, W, C)``.
    pixel_size, tile, halo, batch_size, progress, cancel
        As in :func:`~.inference.predict_probabilities`.
    score_threshold : float, optional
        Detections scoring less are dropped; default the card's per-class
        ``thresholds`` (0.5 for a class without one).
    mask_threshold : float
        Mask probability above which a pixel belongs to the instance.
    merge_overlap : float
        Fraction of the smaller mask two masks must share to be merged.

    Returns
    -------
    InstancePrediction
    """
    if card.task != "instance":
        raise ModelError(f"Model {card.name!r} is a {card.task} model; use predict_probabilities.")
    image = check_image(image, card)
    tile, halo, multiple = effective_tiling(model, card, tile, halo)
    window = intensity_window(image, card)
    factors = resample_factors(pixel_size, card)
    src = image
    if factors is not None:
        from ..prompting.normalize import apply_normalization

        src, window = resample(apply_normalization(np.asarray(image), *window), factors), (0.0, 1.0)
    thresholds = (card.threshold_list(0.5) if score_threshold is None
                  else [float(score_threshold)] * card.n_classes)
    painter = _Painter(src.shape[:2], merge_overlap)
    tiles = tile_grid(src.shape[:2], tile, halo)
    done = 0
    for group in batches(tiles, batch_size):
        if cancel is not None and cancel():
            raise InferenceCancelled("Prediction cancelled.")
        arr = np.stack([read_tile(src, t, window, card.in_channels, multiple) for t in group])
        for t, det in zip(group, _detect(model, arr, min(thresholds, default=0.0)), strict=True):
            _paste_tile(painter, t, det, card, thresholds, mask_threshold)
        done += len(group)
        if progress is not None:
            progress(done, len(tiles))
    labels = painter.labels
    if factors is not None:
        labels = resize_to(labels, image.shape[:2], order=0)
    present = set(np.unique(labels).tolist()) - {0}
    if len(present) < len(painter.area):
        from skimage.segmentation import relabel_sequential

        labels, fw, _ = relabel_sequential(labels)
        remap = {int(k): int(fw[k]) for k in present}
    else:
        remap = {k: k for k in painter.area}
    return InstancePrediction(
        labels=labels.astype(np.int32, copy=False),
        instance_classes={remap[k]: painter.classes[k] for k in remap},
        scores={remap[k]: painter.scores[k] for k in remap},
    )
