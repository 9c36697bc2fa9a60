"""DefectSegNet: a dense encoder-decoder for defects in STEM images of steels.

Written from the description in Roberts et al., "Deep learning for semantic
segmentation of defects in advanced STEM images of steels", Sci. Rep. 9, 12744
(2019):

* the encoder is a stack of *dense blocks* (every 3x3 convolution receives the
  concatenation of the block input and all earlier layers' outputs) separated
  by 2x2 max pooling;
* the decoder upsamples with 2x2 transposed convolutions;
* every feature map the encoder computed at a resolution (the dense block's
  whole concatenation) is fed to *all* decoder layers of that resolution, which
  also form a dense block;
* a final 3x3 convolution gives the output; the model card's ``"sigmoid"``
  activation turns it into probabilities.

Width (``growth``), depth and layers per block are parameters, so tiny
instances run in tests. The network returns logits.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DenseBlock(nn.Module):
    """``n_layers`` 3x3 conv layers, each fed every earlier feature map of the block.

    Parameters
    ----------
    in_channels : int
        Channels of the (concatenated) block inputs.
    growth : int
        Channels each layer adds.
    n_layers : int
        Number of conv layers.
    keep_input : bool
        Whether the output includes the inputs (encoder) or only the new maps.
    """

    def __init__(self, in_channels: int, growth: int, n_layers: int, keep_input: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(_conv(in_channels + i * growth, growth) for i in range(n_layers))
        self.keep_input = keep_input
        self.out_channels = (in_channels if keep_input else 0) + n_layers * growth

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feats = list(inputs)
        n_in = len(feats)
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats if self.keep_input else feats[n_in:], 1)


class DefectSegNet(nn.Module):
    """Dense encoder-decoder with full same-resolution skip connections.

    Parameters
    ----------
    in_channels, out_channels : int
        Image channels and output logit channels.
    growth : int
        Channels added by each conv layer of a dense block (the width).
    depth : int
        Number of max-pooling steps; inputs must be multiples of ``2 ** depth``.
    layers_per_block : int
        Conv layers per dense block.
    up_channels : int or None
        Channels of each transposed convolution (default ``2 * growth``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        growth: int = 16,
        depth: int = 3,
        layers_per_block: int = 3,
        up_channels: int | None = None,
    ):
        super().__init__()
        if depth < 1 or growth < 1 or layers_per_block < 1:
            raise ValueError("growth, depth and layers_per_block must be positive")
        up = int(up_channels or 2 * growth)
        self.input_multiple = 2**depth
        self.encoder = nn.ModuleList()
        skip_channels = []
        ch = in_channels
        for _ in range(depth):
            block = DenseBlock(ch, growth, layers_per_block, keep_input=True)
            self.encoder.append(block)
            skip_channels.append(block.out_channels)
            ch = block.out_channels
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DenseBlock(ch, growth, layers_per_block, keep_input=False)
        ch = self.bottleneck.out_channels
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for skip in reversed(skip_channels):
            self.ups.append(nn.ConvTranspose2d(ch, up, 2, stride=2))
            block = DenseBlock(up + skip, growth, layers_per_block, keep_input=False)
            self.decoder.append(block)
            ch = block.out_channels
        self.head = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.ups, self.decoder, reversed(skips), strict=True):
            x = block(up(x), skip)
        return self.head(x)
