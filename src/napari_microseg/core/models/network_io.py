"""What a network's input and output need: the input size multiple, probabilities from output.

Shared by every architecture (:mod:`.architectures`), the ensemble (:mod:`.ensemble`) and
inference (:mod:`.inference`), so that none of them imports another for it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def input_multiple(model: nn.Module) -> int:
    """Input height and width must be multiples of this (the network's total stride)."""
    m = getattr(model, "input_multiple", None)
    if m is None:
        encoder = getattr(model, "encoder", None)
        m = getattr(encoder, "output_stride", None) or 1
    return int(m)


def lcm(values) -> int:
    """Least common multiple of positive integers."""
    out = 1
    for v in values:
        out = out * int(v) // math.gcd(out, int(v))
    return out


def to_probabilities(output: torch.Tensor, activation: str) -> torch.Tensor:
    """Class probabilities ``(B, K, H, W)`` from network output (see :mod:`.card`)."""
    output = output.float()
    if activation == "softmax":
        return torch.softmax(output, dim=1)[:, 1:]
    if activation == "sigmoid":
        return torch.sigmoid(output)
    return output
