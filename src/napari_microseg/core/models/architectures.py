"""Network architectures a model card can name, built with random weights.

=================  ==========================================================
``unet``           U-Net (segmentation_models_pytorch)
``unetplusplus``   U-Net++ (segmentation_models_pytorch)
``fpn``            Feature Pyramid Network (segmentation_models_pytorch)
``deeplabv3plus``  DeepLabV3+ (segmentation_models_pytorch)
``defectsegnet``   dense encoder-decoder of Roberts et al. 2019 (:mod:`.defectsegnet`)
``maskrcnn``       torchvision Mask R-CNN, instance task (:mod:`.maskrcnn`)
``yolo-seg``       YOLOv9-style instance segmentation (:mod:`.yolo_seg`)
``yolo-seg-tr``    the same with the texture refinement block (:mod:`.yolo_seg`)
``ensemble``       mean class probabilities of registered models (:mod:`.ensemble`)
=================  ==========================================================

Nothing is downloaded: encoders start from random weights unless the card's
params say ``"pretrained": true`` explicitly (ImageNet weights, fetched by the
underlying library, for fine-tuning only).
"""

from __future__ import annotations

from torch import nn

from .card import ModelCard, ModelError
from .network_io import input_multiple, lcm, to_probabilities

__all__ = ["ARCHITECTURES", "INSTANCE_ARCHITECTURES", "build_model", "count_parameters",
           "input_multiple", "lcm", "to_probabilities"]

SMP_ARCHITECTURES = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "fpn": "FPN",
    "deeplabv3plus": "DeepLabV3Plus",
}
#: Every architecture name :func:`build_model` knows.
ARCHITECTURES = (*SMP_ARCHITECTURES, "defectsegnet", "maskrcnn", "yolo-seg", "yolo-seg-tr",
                 "ensemble")
#: Architectures that do instance segmentation.
INSTANCE_ARCHITECTURES = ("maskrcnn", "yolo-seg", "yolo-seg-tr")
_SMP_DEFAULT_DECODER = (256, 128, 64, 32, 16)


def _build_smp(arch: str, params: dict, in_channels: int, out_channels: int) -> nn.Module:
    try:
        import segmentation_models_pytorch as smp
    except ImportError:  # pragma: no cover - depends on the environment
        raise ModelError(
            f"Architecture {arch!r} needs segmentation-models-pytorch "
            "(pip install segmentation-models-pytorch)."
        ) from None
    p = dict(params)
    pretrained = bool(p.pop("pretrained", False))
    p.setdefault("encoder_name", "resnet18")
    depth = int(p.setdefault("encoder_depth", 5))
    if arch in ("unet", "unetplusplus") and "decoder_channels" not in p:
        p["decoder_channels"] = list(_SMP_DEFAULT_DECODER[:depth])
    if arch == "fpn":
        p.setdefault("upsampling", 2 ** max(depth - 3, 0))  # output at input size for any depth
    if "decoder_channels" in p and isinstance(p["decoder_channels"], list):
        p["decoder_channels"] = tuple(p["decoder_channels"])
    cls = getattr(smp, SMP_ARCHITECTURES[arch])
    return cls(
        encoder_weights="imagenet" if pretrained else None,
        in_channels=in_channels,
        classes=out_channels,
        **p,
    )


def build_model(card: ModelCard, members=None, where: str | None = None) -> nn.Module:
    """The network a card describes, with random (untrained) weights.

    Parameters
    ----------
    card : ModelCard
    members : list of (nn.Module, ModelCard), optional
        The loaded member models of an ``"ensemble"`` card.
    where : str, optional
        What error messages name (default ``"Model '<name>'"``; e.g. the card file).

    Raises
    ------
    ModelError
        Unknown architecture, or parameters the architecture refuses.
    """
    arch = card.architecture
    where = where or f"Model {card.name!r}"
    if arch not in ARCHITECTURES:
        raise ModelError(
            f"{where}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}."
        )
    if (arch in INSTANCE_ARCHITECTURES) != (card.task == "instance"):
        raise ModelError(f"{where}: architecture {arch!r} cannot do task {card.task!r}.")
    for key in ("in_channels", "out_channels", "classes", "num_classes"):
        if key in card.params:
            raise ModelError(
                f"{where}: {key!r} comes from the card's classes/in_channels, "
                "not from the architecture params."
            )
    try:
        if arch in SMP_ARCHITECTURES:
            model = _build_smp(arch, card.params, card.in_channels, card.out_channels)
        elif arch == "defectsegnet":
            from .defectsegnet import DefectSegNet

            model = DefectSegNet(card.in_channels, card.out_channels, **card.params)
        elif arch == "maskrcnn":
            from .maskrcnn import MaskRCNN

            model = MaskRCNN(card.in_channels, card.out_channels, **card.params)
        elif arch in ("yolo-seg", "yolo-seg-tr"):
            from .yolo_seg import YoloSeg

            if "texture_refinement" in card.params:
                raise ValueError("texture_refinement follows the architecture name")
            model = YoloSeg(card.in_channels, card.out_channels,
                            texture_refinement=arch == "yolo-seg-tr", **card.params)
        else:
            from .ensemble import Ensemble

            if not members:
                raise ModelError(f"{where}: the ensemble has no member models.")
            model = Ensemble(members)
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as e:
        raise ModelError(f"{where}: bad parameters for architecture {arch!r} ({e}).") from None
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
