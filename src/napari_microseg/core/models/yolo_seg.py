"""YOLOv9-style instance segmentation (``yolo-seg``) and its texture-refined variant (``yolo-seg-tr``).

Why a network of our own
------------------------
The SS304L corrosion study builds on YOLOv9. The ultralytics package is AGPL
and is neither used nor copied. LibreYOLO (MIT, on PyPI) trains YOLOv9, but
through its own trainer on YOLO-format dataset files; it would bring a large
dependency tree, its segmentation variant and training loop could not be
driven by this plugin's engine (in-memory patches, the study's augmentations,
checkpoints, validation), and the texture refinement block would have to be
patched into its internals. So this is a compact network written in torch from
the published description (Wang, Yeh & Liao 2024; YOLACT/YOLO-seg masks):

* backbone and PAN neck of GELAN blocks (:class:`~.yolo_blocks.ELAN`) with
  ``ADown`` down-sampling and ``SPPELAN`` pooling, outputs at strides 8, 16, 32;
* ``yolo-seg-tr``: a :class:`~.yolo_blocks.TextureRefinement` block
  ``TR(f) = γ ⊙ f + β`` on each fused level before the prediction heads;
* anchor-free decoupled heads: class logits, box distances (left, top,
  right, bottom; softplus × stride) and ``n_masks`` mask coefficients per
  cell; a prototype branch on the stride-8 level gives ``n_masks``
  prototypes at stride ``8 / 2**proto_upsample``; an instance mask is
  ``sigmoid(coefficients · prototypes)`` cropped to its box;
* programmable gradient information, simplified: an auxiliary detection head
  on the backbone's own stride-8/16/32 features (before the neck merges
  them), trained with the same assignment and weight ``aux_weight``, and
  never run at inference (``aux=False`` leaves it out);
* losses (:mod:`.yolo_loss`): BCE classification, CIoU box loss, pixel BCE
  mask loss; at inference class-wise NMS (``torchvision.ops.batched_nms``).

The RepConv re-parameterisation and the distribution focal loss of YOLOv9 are
left out (plain 3x3 convolutions, direct distance regression): they speed up
deployment and sharpen large boxes, neither of which matters for CPU-sized
defect models. Weights start at random; nothing is downloaded.

The module follows torchvision's detection interface, like
:class:`~.maskrcnn.MaskRCNN`: in training ``model(images, targets)`` returns
a dict of losses; in evaluation ``model(images)`` returns per image a dict of
``boxes`` (N, 4) xyxy px, ``labels`` (N,) 1-based, ``scores`` (N,) and
``masks`` (N, 1, H, W) probabilities, so :func:`~.instances.predict_instances`
tiles and merges it and other code (a two-stage detector → promptable model)
can read its boxes.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms

from .yolo_blocks import ELAN, SPPELAN, ADown, Conv, TextureRefinement
from .yolo_loss import anchor_points, decode_boxes, detection_losses

STRIDES = (8, 16, 32)
#: Inference settings recorded on the card's params (NMS and the score floor).
NMS_DEFAULTS = {"conf": 0.25, "nms_iou": 0.6, "max_det": 300, "agnostic_nms": False}


class _Backbone(nn.Module):
    def __init__(self, c_in: int, w: int, n: int):
        super().__init__()
        self.stem = nn.Sequential(Conv(c_in, w, 3, 2), Conv(w, 2 * w, 3, 2), ELAN(2 * w, 4 * w, n))
        self.p3 = nn.Sequential(ADown(4 * w, 4 * w), ELAN(4 * w, 8 * w, n))
        self.p4 = nn.Sequential(ADown(8 * w, 8 * w), ELAN(8 * w, 8 * w, n))
        self.p5 = nn.Sequential(ADown(8 * w, 8 * w), ELAN(8 * w, 8 * w, n), SPPELAN(8 * w, 8 * w))
        self.channels = (8 * w, 8 * w, 8 * w)

    def forward(self, x):
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        return p3, p4, self.p5(p4)


class _Neck(nn.Module):
    """PAN: top-down then bottom-up fusion of the three backbone levels."""

    def __init__(self, w: int, n: int):
        super().__init__()
        self.h4 = ELAN(16 * w, 8 * w, n)
        self.n3 = ELAN(16 * w, 4 * w, n)
        self.down3, self.n4 = ADown(4 * w, 4 * w), ELAN(12 * w, 8 * w, n)
        self.down4, self.n5 = ADown(8 * w, 8 * w), ELAN(16 * w, 8 * w, n)
        self.channels = (4 * w, 8 * w, 8 * w)

    def forward(self, p3, p4, p5):
        h4 = self.h4(torch.cat((F.interpolate(p5, size=p4.shape[-2:]), p4), 1))
        n3 = self.n3(torch.cat((F.interpolate(h4, size=p3.shape[-2:]), p3), 1))
        n4 = self.n4(torch.cat((self.down3(n3), h4), 1))
        n5 = self.n5(torch.cat((self.down4(n4), p5), 1))
        return n3, n4, n5


class _Head(nn.Module):
    """Per-level anchor-free class, box (and mask-coefficient) branches."""

    def __init__(self, channels, n_classes: int, n_masks: int = 0):
        super().__init__()
        c_box = max(16, channels[0] // 2)
        c_cls = max(channels[0], min(n_classes, 100))
        c_coef = max(channels[0] // 2, n_masks)

        def branch(c, hidden, out):
            return nn.Sequential(Conv(c, hidden, 3), Conv(hidden, hidden, 3),
                                 nn.Conv2d(hidden, out, 1))

        self.box = nn.ModuleList(branch(c, c_box, 4) for c in channels)
        self.cls = nn.ModuleList(branch(c, c_cls, n_classes) for c in channels)
        self.coef = (nn.ModuleList(branch(c, c_coef, n_masks) for c in channels)
                     if n_masks else None)
        prior = -math.log((1 - 0.01) / 0.01)  # start with 1 % foreground probability
        for b in self.cls:
            nn.init.constant_(b[-1].bias, prior)
        for b in self.box:
            nn.init.constant_(b[-1].bias, 1.0)

    def forward(self, feats) -> dict:
        def flat(t):  # (B, C, H, W) -> (B, H*W, C)
            return t.flatten(2).transpose(1, 2)

        out = {
            "cls": torch.cat([flat(b(f)) for b, f in zip(self.cls, feats, strict=True)], 1),
            "raw_box": [b(f) for b, f in zip(self.box, feats, strict=True)],
        }
        if self.coef is not None:
            out["coef"] = torch.cat([flat(b(f)) for b, f in zip(self.coef, feats, strict=True)], 1)
        return out


class _Proto(nn.Module):
    """Mask prototypes from the stride-8 level, up-sampled ``2**upsample`` times."""

    def __init__(self, c_in: int, hidden: int, n_masks: int, upsample: int):
        super().__init__()
        layers = [Conv(c_in, hidden, 3)]
        for _ in range(upsample):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), Conv(hidden, hidden, 3)]
        layers += [Conv(hidden, hidden, 3), nn.Conv2d(hidden, n_masks, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class YoloSeg(nn.Module):
    """Compact YOLOv9-style instance segmentation network (see the module docstring).

    Parameters
    ----------
    in_channels : int
        Image channels (1 grey or 3).
    num_classes : int
        Classes including the background (torchvision convention, as the card's
        ``out_channels`` of an instance model).
    width : int
        Base width; the levels have 4-8x as many channels (16 for a small
        CPU model, 4 for tests).
    depth : int
        Bottlenecks per CSP block.
    n_masks : int
        Mask prototypes (and coefficients per detection).
    proto_upsample : int
        Doublings of the stride-8 prototypes (1: masks at stride 4, 2: stride 2).
    texture_refinement : bool
        Insert the TR block before the heads (``yolo-seg-tr``).
    aux, aux_weight : bool, float
        Auxiliary (PGI) head used only in training, and its loss weight.
    topk : int
        Anchor points per object in the assignment.
    conf, nms_iou, max_det, agnostic_nms
        Inference: score floor before NMS, NMS IoU, detections kept per
        image, NMS across classes.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 16,
                 depth: int = 1, n_masks: int = 16, proto_upsample: int = 1,
                 texture_refinement: bool = False, aux: bool = True, aux_weight: float = 0.25,
                 topk: int = 10, conf: float = NMS_DEFAULTS["conf"],
                 nms_iou: float = NMS_DEFAULTS["nms_iou"], max_det: int = NMS_DEFAULTS["max_det"],
                 agnostic_nms: bool = NMS_DEFAULTS["agnostic_nms"]):
        super().__init__()
        if num_classes < 2:
            raise ValueError("num_classes counts the background and must be at least 2")
        if width < 2 or depth < 1 or n_masks < 1 or proto_upsample not in (0, 1, 2, 3):
            raise ValueError("width >= 2, depth >= 1, n_masks >= 1, proto_upsample 0..3")
        if not (0.0 <= conf <= 1.0 and 0.0 < nms_iou <= 1.0 and max_det >= 1):
            raise ValueError("conf in [0, 1], nms_iou in (0, 1], max_det >= 1")
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        self.n_cls = self.num_classes - 1
        self.input_multiple = STRIDES[-1]
        self.conf, self.nms_iou, self.max_det = float(conf), float(nms_iou), int(max_det)
        self.agnostic_nms, self.topk, self.aux_weight = bool(agnostic_nms), int(topk), aux_weight
        self.proto_stride = STRIDES[0] / 2 ** int(proto_upsample)
        self.backbone = _Backbone(in_channels, width, depth)
        self.neck = _Neck(width, depth)
        ch = self.neck.channels
        self.tr = (nn.ModuleList(TextureRefinement(c) for c in ch)
                   if texture_refinement else None)
        self.head = _Head(ch, self.n_cls, n_masks)
        self.proto = _Proto(ch[0], max(ch[0], n_masks), n_masks, int(proto_upsample))
        self.aux_head = _Head(self.backbone.channels, self.n_cls) if aux else None

    # -- features and raw outputs ------------------------------------------------------

    def _images(self, images) -> torch.Tensor:
        x = torch.stack(list(images)) if isinstance(images, (list, tuple)) else images
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W) images, got {tuple(x.shape)}")
        m = self.input_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"image height and width must be multiples of {m}, got {tuple(x.shape)}")
        return x.float()

    def fused_features(self, x: torch.Tensor):
        """Backbone levels and the (texture-refined) neck levels of ``x``."""
        p = self.backbone(x)
        n = self.neck(*p)
        if self.tr is not None:
            n = tuple(tr(f) for tr, f in zip(self.tr, n, strict=True))
        return p, n

    @staticmethod
    def _boxes(head_out: dict, feats) -> dict:
        shapes = [f.shape[-2:] for f in feats]
        points, strides = anchor_points(shapes, STRIDES, feats[0].device)
        ltrb = torch.cat([r.flatten(2).transpose(1, 2) for r in head_out.pop("raw_box")], 1)
        head_out["ltrb"] = F.softplus(ltrb.float()) * strides[None, :, None]
        head_out.update(points=points, strides=strides)
        return head_out

    def raw_outputs(self, x: torch.Tensor) -> dict:
        """Head outputs (``cls``, ``ltrb``, ``coef``, ``points``, ``strides``, ``protos``)."""
        p, n = self.fused_features(x)
        out = self._boxes(self.head(n), n)
        out["protos"], out["proto_stride"] = self.proto(n[0]), self.proto_stride
        if self.training and self.aux_head is not None:
            out["aux"] = self._boxes(self.aux_head(p), p)
        return out

    # -- forward ---------------------------------------------------------------------------

    def forward(self, images, targets=None):
        """Losses (training, with ``targets``) or detections (evaluation).

        Parameters
        ----------
        images : Tensor (B, C, H, W) or list of Tensor (C, H, W)
            Intensities in [0, 1]; H and W multiples of 32.
        targets : list of dict, optional
            ``boxes``, ``labels`` (1-based), ``masks`` per image.
        """
        x = self._images(images)
        if self.training:
            if targets is None:
                raise ValueError("in training mode the model needs targets")
            out = self.raw_outputs(x)
            losses = detection_losses(out, targets, self.n_cls, True, self.topk)
            if "aux" in out:
                aux = detection_losses(out["aux"], targets, self.n_cls, False, self.topk)
                losses["loss_aux"] = self.aux_weight * (aux["loss_cls"] + aux["loss_box"])
            return losses
        out = self.raw_outputs(x)
        return [self._detections(out, i, x.shape[-2:]) for i in range(x.shape[0])]

    def _detections(self, out: dict, i: int, size) -> dict:
        """Boxes, 1-based labels, scores and full-size mask probabilities of image ``i``."""
        h, w = int(size[0]), int(size[1])
        prob = out["cls"][i].float().sigmoid()
        score, label = prob.max(1)
        keep = torch.nonzero(score > self.conf).squeeze(1)
        keep = keep[score[keep].argsort(descending=True)[: 30 * self.max_det]]
        boxes = decode_boxes(out["points"][keep], out["ltrb"][i][keep])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        score, label = score[keep], label[keep]
        groups = torch.zeros_like(label) if self.agnostic_nms else label
        kept = batched_nms(boxes, score, groups, self.nms_iou)[: self.max_det]
        keep, boxes, score, label = keep[kept], boxes[kept], score[kept], label[kept]
        protos = out["protos"][i].float()
        m = (out["coef"][i][keep].float() @ protos.flatten(1)).reshape(-1, *protos.shape[-2:])
        masks = F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)
        masks = masks.sigmoid() * _box_window(boxes, h, w, masks.device)
        return {"boxes": boxes, "labels": label + 1, "scores": score, "masks": masks}


def _box_window(boxes: torch.Tensor, h: int, w: int, device) -> torch.Tensor:
    """``(N, 1, H, W)`` 1 inside each box (pixel centres), 0 outside."""
    ys = torch.arange(h, device=device, dtype=torch.float32)[None, :, None] + 0.5
    xs = torch.arange(w, device=device, dtype=torch.float32)[None, None, :] + 0.5
    b = boxes[:, :, None, None]
    inside = (xs >= b[:, 0]) & (xs <= b[:, 2]) & (ys >= b[:, 1]) & (ys <= b[:, 3])
    return inside[:, None].float()
