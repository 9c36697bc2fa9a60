"""Label assignment and losses of the YOLO-style instance model (:mod:`.yolo_seg`).

Anchor points are the centres of the cells of the stride-8/16/32 maps. Each
true object is assigned, by task alignment (TOOD, as YOLOv8/v9 describe it),
the ``topk`` anchor points near it with the largest ``score^alpha * IoU^beta``
of their current prediction; a point claimed by several objects goes to the
one its box overlaps most. Losses, summed over the batch and normalised by
the sum of the soft (IoU-aware) classification targets:

* classification: binary cross-entropy against the normalised alignment;
* box: ``1 - CIoU`` (``torchvision.ops``) weighted by the targets;
* mask: pixel binary cross-entropy of ``sigmoid(coefficients · prototypes)``
  against the true mask inside the true box, at the prototype resolution.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.ops import box_iou, complete_box_iou_loss

#: Loss gains (the YOLOv8/v9 defaults: box 7.5, classification 0.5; masks as boxes).
GAINS = {"box": 7.5, "cls": 0.5, "mask": 7.5}


def anchor_points(shapes, strides, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres ``(A, 2)`` as ``(x, y)`` pixels and their strides ``(A,)``."""
    pts, st = [], []
    for (h, w), s in zip(shapes, strides, strict=True):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        pts.append(torch.stack((gx.reshape(-1), gy.reshape(-1)), 1))
        st.append(torch.full((h * w,), float(s), device=device))
    return torch.cat(pts), torch.cat(st)


def decode_boxes(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """``(x1, y1, x2, y2)`` boxes from anchor points and left/top/right/bottom distances."""
    return torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), -1)


def assign(scores, boxes, points, strides, gt_boxes, gt_labels, topk: int = 10,
           alpha: float = 0.5, beta: float = 6.0):
    """Task-aligned assignment of anchor points to the true objects of one image.

    Parameters
    ----------
    scores : Tensor (A, K)
        Predicted class probabilities (detached).
    boxes : Tensor (A, 4)
        Predicted boxes (detached), pixels.
    points, strides : Tensor (A, 2), (A,)
        Anchor points and their strides.
    gt_boxes, gt_labels : Tensor (G, 4), (G,)
        True boxes and 0-based classes.

    Returns
    -------
    fg : Tensor of bool (A,)
        Anchor points assigned to an object.
    gt_index : Tensor of int64 (A,)
        The object of each point (meaningful where ``fg``).
    target_scores : Tensor (A, K)
        Soft classification targets (0 for the background).
    """
    n_anchor, n_cls = scores.shape
    if gt_boxes.shape[0] == 0:
        zeros = torch.zeros(n_anchor, dtype=torch.bool, device=scores.device)
        return zeros, zeros.long(), torch.zeros_like(scores)
    grow = strides[None, :] / 2  # every object, however small, has a point of each level near it
    x, y = points[None, :, 0], points[None, :, 1]
    inside = ((x > gt_boxes[:, 0:1] - grow) & (x < gt_boxes[:, 2:3] + grow)
              & (y > gt_boxes[:, 1:2] - grow) & (y < gt_boxes[:, 3:4] + grow))
    ious = box_iou(gt_boxes, boxes).clamp(0)  # (G, A)
    cls_score = scores[:, gt_labels].T  # (G, A)
    align = cls_score.pow(alpha) * ious.pow(beta) * inside
    k = min(int(topk), n_anchor)
    rank = align + 1e-9 * inside  # ties (all zero at the start) fall on points near the object
    top = torch.zeros_like(inside)
    top.scatter_(1, rank.topk(k, dim=1).indices, True)
    pos = top & inside
    overlap = torch.where(pos, ious + 1e-6, torch.zeros_like(ious))
    gt_index = overlap.argmax(0)
    fg = pos.any(0)
    pos = torch.zeros_like(pos)
    pos[gt_index[fg], torch.nonzero(fg).squeeze(1)] = True
    align = align * pos
    max_align = align.amax(1, keepdim=True).clamp_min(1e-9)
    max_iou = (ious * pos).amax(1, keepdim=True)
    norm = (align / max_align * max_iou).amax(0)  # (A,)
    target_scores = torch.zeros_like(scores)
    target_scores[fg, gt_labels[gt_index[fg]]] = norm[fg].clamp_min(1e-3)
    return fg, gt_index, target_scores


def _mask_loss(coef, protos, gt_masks, gt_boxes, stride: float) -> torch.Tensor:
    """Sum over the positive points of the box-cropped mean pixel BCE."""
    h, w = protos.shape[-2:]
    logits = (coef @ protos.reshape(protos.shape[0], -1)).reshape(-1, h, w)
    target = F.interpolate(gt_masks[:, None].float(), size=(h, w), mode="area")[:, 0]
    ys = (torch.arange(h, device=coef.device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=coef.device, dtype=torch.float32) + 0.5) * stride
    b = gt_boxes[:, :, None, None]
    crop = ((xs[None, None, :] >= b[:, 0] - stride) & (xs[None, None, :] <= b[:, 2] + stride)
            & (ys[None, :, None] >= b[:, 1] - stride) & (ys[None, :, None] <= b[:, 3] + stride))
    crop = crop.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return ((bce * crop).sum((1, 2)) / crop.sum((1, 2)).clamp_min(1.0)).sum()


def detection_losses(out: dict, targets: list[dict], n_classes: int, with_masks: bool = True,
                     topk: int = 10) -> dict:
    """Classification, box (and mask) losses of one set of head outputs.

    Parameters
    ----------
    out : dict
        ``cls`` (B, A, K) logits, ``ltrb`` (B, A, 4) distances (px), ``points``
        (A, 2), ``strides`` (A,); with masks also ``coef`` (B, A, M) and
        ``protos`` (B, M, h, w) at ``proto_stride``.
    targets : list of dict
        Per image ``boxes`` (G, 4) xyxy px, ``labels`` (G,) 1-based classes,
        ``masks`` (G, H, W) (torchvision detection convention).
    n_classes : int
        Classes without the background.
    """
    points, strides = out["points"], out["strides"]
    device = points.device
    tot = {"box": torch.zeros((), device=device), "cls": torch.zeros((), device=device),
           "mask": torch.zeros((), device=device)}
    norm, n_pos = torch.zeros((), device=device), 0
    for i, t in enumerate(targets):
        cls_logits, ltrb = out["cls"][i].float(), out["ltrb"][i].float()
        boxes = decode_boxes(points, ltrb)
        gt_boxes = t["boxes"].float().to(device)
        gt_labels = (t["labels"].long().to(device) - 1).clamp(0, n_classes - 1)
        with torch.no_grad():
            fg, gt_index, target_scores = assign(cls_logits.sigmoid(), boxes, points, strides,
                                                 gt_boxes, gt_labels, topk)
        tot["cls"] = tot["cls"] + F.binary_cross_entropy_with_logits(
            cls_logits, target_scores, reduction="sum")
        norm = norm + target_scores.sum()
        if not fg.any():
            continue
        weight = target_scores.sum(1)[fg]
        box_l = complete_box_iou_loss(boxes[fg], gt_boxes[gt_index[fg]], reduction="none")
        tot["box"] = tot["box"] + (box_l * weight).sum()
        if with_masks:
            tot["mask"] = tot["mask"] + _mask_loss(
                out["coef"][i][fg].float(), out["protos"][i].float(),
                t["masks"].to(device)[gt_index[fg]], gt_boxes[gt_index[fg]], out["proto_stride"])
            n_pos += int(fg.sum())
    norm = norm.clamp_min(1.0)
    losses = {"loss_cls": GAINS["cls"] * tot["cls"] / norm,
              "loss_box": GAINS["box"] * tot["box"] / norm}
    if with_masks:
        losses["loss_mask"] = GAINS["mask"] * tot["mask"] / max(n_pos, 1)
    return losses
