"""Building blocks of the YOLOv9-style network of :mod:`.yolo_seg`.

Written from the published description of YOLOv9 (Wang, Yeh & Liao 2024,
"YOLOv9: Learning What You Want to Learn Using Programmable Gradient
Information"): GELAN blocks (:class:`ELAN`, the RepNCSPELAN layout with plain
3x3 convolutions instead of re-parameterisable ones), the ``ADown``
down-sampler and the ``SPPELAN`` pooling block; and the texture refinement
block :class:`TextureRefinement` of the SS304L corrosion study. No code of
any YOLO package is used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Conv(nn.Sequential):
    """Convolution, batch norm and SiLU ("same" padding)."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: bool = True):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(inplace=True) if act else nn.Identity(),
        )


class Bottleneck(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    def __init__(self, c: int):
        super().__init__()
        self.cv1, self.cv2 = Conv(c, c, 3), Conv(c, c, 3)

    def forward(self, x):
        return x + self.cv2(self.cv1(x))


class CSP(nn.Module):
    """Cross-stage partial block: half the channels through ``n`` bottlenecks."""

    def __init__(self, c_in: int, c_out: int, n: int = 1):
        super().__init__()
        c = max(1, c_out // 2)
        self.cv1, self.cv2 = Conv(c_in, c), Conv(c_in, c)
        self.m = nn.Sequential(*(Bottleneck(c) for _ in range(n)))
        self.cv3 = Conv(2 * c, c_out)

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class ELAN(nn.Module):
    """GELAN block (RepNCSPELAN layout): split, two CSP+conv stages, concatenate all."""

    def __init__(self, c_in: int, c_out: int, n: int = 1):
        super().__init__()
        half = max(1, c_out // 2)
        self.cv1 = Conv(c_in, 2 * half)
        self.cv2 = nn.Sequential(CSP(half, half, n), Conv(half, half, 3))
        self.cv3 = nn.Sequential(CSP(half, half, n), Conv(half, half, 3))
        self.cv4 = Conv(4 * half, c_out)

    def forward(self, x):
        a, b = self.cv1(x).chunk(2, 1)
        c = self.cv2(b)
        d = self.cv3(c)
        return self.cv4(torch.cat((a, b, c, d), 1))


class ADown(nn.Module):
    """YOLOv9 down-sampling by 2: average pool, then a strided conv and a max-pool branch."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.half_in = c_in // 2
        c = c_out // 2
        self.cv1 = Conv(self.half_in, c, 3, 2)
        self.cv2 = Conv(c_in - self.half_in, c_out - c, 1)

    def forward(self, x):
        x = F.avg_pool2d(x, 2, 1, 0, False, True)
        a, b = x[:, : self.half_in], x[:, self.half_in :]
        return torch.cat((self.cv1(a), self.cv2(F.max_pool2d(b, 3, 2, 1))), 1)


class SPPELAN(nn.Module):
    """Spatial pyramid pooling (three chained 5x5 max-pools) in ELAN form."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        c = max(1, c_out // 2)
        self.cv1 = Conv(c_in, c)
        self.cv5 = Conv(4 * c, c_out)

    def forward(self, x):
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(F.max_pool2d(y[-1], 5, 1, 2))
        return self.cv5(torch.cat(y, 1))


class TextureRefinement(nn.Module):
    """Texture refinement ``TR(f) = γ ⊙ f + β`` with modulation maps predicted from ``f``.

    ``γ`` and ``β`` (each of ``f``'s shape) come from two convolution +
    batch-norm blocks on the fused features ``f``: a 3x3 Conv-BN-SiLU and a
    1x1 Conv-BN. The last batch norm of the ``γ`` branch starts with bias 1
    and that of the ``β`` branch with bias 0, both with a small weight, so the
    block starts close to (but not at) the identity and learns how much to
    modulate. With both last batch-norm weights at 0 (``γ = 1``, ``β = 0``)
    it is exactly the identity.

    Parameters
    ----------
    channels : int
        Channels of ``f``.
    init_scale : float
        Initial weight of the two last batch norms.
    """

    def __init__(self, channels: int, init_scale: float = 0.1):
        super().__init__()
        self.gamma = self._branch(channels, 1.0, init_scale)
        self.beta = self._branch(channels, 0.0, init_scale)

    @staticmethod
    def _branch(c: int, bias: float, scale: float) -> nn.Sequential:
        branch = nn.Sequential(Conv(c, c, 3), Conv(c, c, 1, act=False))
        bn = branch[-1][1]
        nn.init.constant_(bn.weight, scale)
        nn.init.constant_(bn.bias, bias)
        return branch

    def modulation(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The maps ``(γ, β)`` for features ``f``."""
        return self.gamma(f), self.beta(f)

    def forward(self, f):
        gamma, beta = self.modulation(f)
        return gamma * f + beta
