"""The promptable network: a compact U-Net over a prompt-centred crop.

Input channels (all ``N x N``, the crop resampled to the network size):

0. image, standardised over the valid part of the crop (zero mean, unit std);
1. validity (1 inside the image, 0 for padding beyond its border);
2. positive clicks, 3. negative clicks (Gaussian bumps, see :func:`click_maps`);
4. box (1 inside the prompt box, 0 elsewhere; all 0 without a box);
5. previous mask probability (0 without one).

Output: one channel of mask logits at the input resolution.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Number of input channels (see the module docstring).
IN_CHANNELS = 6


def _norm(c: int) -> nn.GroupNorm:
    """GroupNorm (groups of at least 4 channels, at most 8 groups).

    Not BatchNorm: batch statistics made train- and eval-mode outputs differ
    (a batch shares its number of corrective rounds and its data mix), and
    fine-tuning on a few user images uses tiny batches.
    """
    return nn.GroupNorm(max(1, min(8, c // 4)), c)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        _norm(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        _norm(cout),
        nn.ReLU(inplace=True),
    )


class PromptUNet(nn.Module):
    """U-Net with ``len(widths) - 1`` poolings and concatenated skips.

    Parameters
    ----------
    widths : sequence of int
        Channels per level, finest first (default ``(16, 32, 64, 96, 128)``).
    in_channels : int
        Input channels (default :data:`IN_CHANNELS`).
    """

    def __init__(self, widths=(16, 32, 64, 96, 128), in_channels: int = IN_CHANNELS):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.in_channels = int(in_channels)
        self.down = nn.ModuleList()
        cin = self.in_channels
        for w in self.widths:
            self.down.append(_block(cin, w))
            cin = w
        self.up = nn.ModuleList()
        for w_skip in reversed(self.widths[:-1]):
            self.up.append(_block(cin + w_skip, w_skip))
            cin = w_skip
        self.head = nn.Conv2d(cin, 1, 1)

    def config(self) -> dict:
        """Constructor arguments (JSON-ready), stored with the weights."""
        return {"widths": list(self.widths), "in_channels": self.in_channels}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mask logits ``(B, 1, H, W)`` for input ``(B, C, H, W)``; H, W divisible by 16."""
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)
