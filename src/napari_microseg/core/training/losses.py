"""Training losses and targets: cross-entropy + Dice, Mask R-CNN targets from instance patches."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def semantic_loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str = "ce+dice"
) -> torch.Tensor:
    """Cross-entropy, plus soft Dice over the defect classes for ``"ce+dice"``."""
    ce = F.cross_entropy(logits, target)
    if kind == "ce":
        return ce
    prob = logits.float().softmax(1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = 1 - (2 * inter + 1) / (denom + 1)
    return ce + dice.mean()


def instance_targets(labels: np.ndarray, classes_of, channel_of: dict, device) -> list[dict]:
    """torchvision Mask R-CNN targets from a batch of instance-label patches."""
    out = []
    for lab, inst in zip(labels, classes_of, strict=True):
        ids = [i for i in np.unique(lab) if i]
        masks, boxes, cls = [], [], []
        for i in ids:
            m = lab == i
            rows, cols = np.nonzero(m)
            if rows.size < 4 or rows.min() == rows.max() or cols.min() == cols.max():
                continue
            masks.append(m)
            boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
            cls.append(channel_of.get(int(inst.get(int(i), 1)), 1))
        shape = lab.shape
        out.append(
            {
                "boxes": torch.tensor(np.asarray(boxes, np.float32).reshape(-1, 4), device=device),
                "labels": torch.tensor(np.asarray(cls, np.int64), device=device),
                "masks": torch.from_numpy(np.asarray(masks, np.uint8).reshape(-1, *shape)).to(
                    device
                ),
            }
        )
    return out
