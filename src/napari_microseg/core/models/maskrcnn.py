"""Mask R-CNN (torchvision) for instance segmentation of defects.

:class:`MaskRCNN` wraps torchvision's detector so it takes the same input as
the semantic models: a ``(B, C, H, W)`` batch (or a list of ``(C, H, W)``
tensors) of intensities normalised to [0, 1]. Grey images are repeated to the
three channels the backbone expects. The backbone starts from random weights
(``weights=None, weights_backbone=None``) unless ``pretrained=True`` is given
explicitly. ``backbone="resnet18"`` (or 34) builds a small ResNet-FPN for
quick experiments and tests.
"""

from __future__ import annotations

import torch
from torch import nn


def _resnet_fpn(name: str, pretrained: bool, trainable_layers: int, channels: int):
    """A ResNet-FPN backbone (as torchvision's ``resnet_fpn_backbone``, any FPN width)."""
    from torchvision.models import get_model_weights, resnet
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import misc
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    weights = get_model_weights(name).DEFAULT if pretrained else None
    norm = misc.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    net = getattr(resnet, name)(weights=weights, norm_layer=norm)
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][: int(trainable_layers)]
    if int(trainable_layers) == 5:
        trainable.append("bn1")
    for pname, p in net.named_parameters():
        if not any(pname.startswith(t) for t in trainable):
            p.requires_grad_(False)
    stage2 = net.inplanes // 8
    return BackboneWithFPN(
        net,
        {f"layer{i + 1}": str(i) for i in range(4)},
        [stage2 * 2**i for i in range(4)],
        channels,
        extra_blocks=LastLevelMaxPool(),
    )


class MaskRCNN(nn.Module):
    """torchvision Mask R-CNN taking normalised 1- or 3-channel images.

    Parameters
    ----------
    in_channels : int
        1 (grey, repeated to RGB) or 3.
    num_classes : int
        Classes including the background (torchvision convention).
    backbone : str
        ``"resnet50"`` (torchvision's ``maskrcnn_resnet50_fpn``) or another
        ResNet name (``"resnet18"``, ``"resnet34"``, ``"resnet101"``) built
        with ``resnet_fpn_backbone``.
    trainable_layers : int
        Backbone stages that are trained (0-5); all when training from scratch.
    min_size, max_size : int
        Internal resize range of torchvision's transform; equal to the tile
        side means tiles are not resized.
    anchor_sizes : list of int, optional
        One anchor size per FPN level (5 levels); default torchvision's
        ``(32, 64, 128, 256, 512)``. Smaller anchors suit small defects.
    fpn_channels, representation_size, mask_channels : int
        Widths of the FPN, the box head's MLP and the mask head (torchvision's
        defaults 256, 1024, 256; smaller for tiny test models).
    pretrained : bool
        Start from ImageNet backbone weights (downloads; never the default).
    **detector_kw
        Further keyword arguments of ``torchvision.models.detection.MaskRCNN``
        (``box_detections_per_img``, ``box_score_thresh``, ...).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        backbone: str = "resnet50",
        trainable_layers: int = 5,
        min_size: int = 512,
        max_size: int = 512,
        anchor_sizes=None,
        fpn_channels: int = 256,
        representation_size: int = 1024,
        mask_channels: int = 256,
        pretrained: bool = False,
        **detector_kw,
    ):
        super().__init__()
        from torchvision.models.detection import MaskRCNN as TVMaskRCNN
        from torchvision.models.detection import maskrcnn_resnet50_fpn
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

        if in_channels not in (1, 3):
            raise ValueError(f"Mask R-CNN takes 1 or 3 input channels, not {in_channels}")
        if num_classes < 2:
            raise ValueError("num_classes counts the background and must be at least 2")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        kw = dict(min_size=min_size, max_size=max_size, **detector_kw)
        if anchor_sizes is not None:
            sizes = tuple((int(s),) for s in anchor_sizes)
            kw["rpn_anchor_generator"] = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        if backbone == "resnet50" and not pretrained and (fpn_channels, representation_size,
                                                          mask_channels) == (256, 1024, 256):
            self.detector = maskrcnn_resnet50_fpn(
                weights=None, weights_backbone=None, num_classes=num_classes, **kw
            )
        else:
            body = _resnet_fpn(backbone, pretrained, trainable_layers, fpn_channels)
            self.detector = TVMaskRCNN(
                body,
                box_head=TwoMLPHead(fpn_channels * 7 * 7, representation_size),
                box_predictor=FastRCNNPredictor(representation_size, num_classes),
                mask_head=MaskRCNNHeads(fpn_channels, (mask_channels,) * 4, 1),
                mask_predictor=MaskRCNNPredictor(mask_channels, mask_channels, num_classes),
                **kw,
            )

    def _images(self, images) -> list[torch.Tensor]:
        imgs = list(images)
        out = []
        for im in imgs:
            if im.ndim != 3 or im.shape[0] != self.in_channels:
                raise ValueError(
                    f"Mask R-CNN expects ({self.in_channels}, H, W) images, got {tuple(im.shape)}"
                )
            out.append(im.float().expand(3, -1, -1) if self.in_channels == 1 else im.float())
        return out

    def forward(self, images, targets=None):
        """Detections (eval) or losses (train), as torchvision's Mask R-CNN.

        Parameters
        ----------
        images : Tensor (B, C, H, W) or list of Tensor (C, H, W)
            Intensities in [0, 1].
        targets : list of dict, optional
            Training targets (``boxes``, ``labels``, ``masks``).
        """
        return self.detector(self._images(images), targets)
