"""Two-stage instance models: a registered detector proposes boxes, a promptable model draws the masks.

As in the detector-then-SAM pipelines (a YOLO detector's boxes fed to SAM2,
the Severstal steel study), any registered instance model (Mask R-CNN,
``yolo-seg``, ...) finds the objects and gives each its class and score; a
promptable backend (:func:`~napari_microseg.core.prompting.registry.make_backend`:
a SAM2 model when its weights are installed, the offline
``microseg-promptable``, or a fine-tuned prompt model) then draws every
object's mask from its box. The detector's own masks are kept where the
refiner returns an empty mask and for the classes the card does not refine
(``refine_labels``). Boxes are given to the refiner as they are, or grown by
``box_margin`` px (the refiner's mask is cut to its box).

A two-stage model is registered like any other model, without weights of its
own. Its card has ``architecture = "two-stage"``, ``task = "instance"`` and
``params = {"detector": NAME, "refiner": BACKEND, "min_score": s, "box_margin": px,
"refine_labels": [k, ...] or null}`` (``refine_labels``: the detector's label indices,
1 = the card's first class, whose masks the refiner draws; null = all);
classes, normalisation, pixel size, tile and halo come from the detector's
card, and the detector's version and weights hash are kept in the provenance
(a detector retrained under the same name is refused at load time).
:func:`~.registry.load_model` returns a :class:`TwoStage` module whose
output (boxes, labels, scores, masks per image) is that of an instance
model, so :func:`~.instances.predict_instances` (Predict dock,
``microseg predict``, batch recipes) runs it unchanged, with the same
overlap-tile merging. Each tile of the detector is also the image the refiner
prompts on.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .architectures import input_multiple
from .card import ModelCard, ModelError

#: Card ``architecture`` of a two-stage model.
ARCHITECTURE = "two-stage"
#: Refiner name meaning "SAM2 when its weights are installed, else microseg-promptable".
AUTO = "auto"
#: Refiners a two-stage model cannot use (they need the true labels).
REFUSED = ("oracle",)


def resolve_refiner(name: str) -> str:
    """The concrete backend name for ``name`` (``"auto"`` picks SAM2 when usable)."""
    if name != AUTO:
        return name
    from ..weights import MODELS, OFFLINE_DEFAULT_MODEL, find_weights

    try:
        import sam2  # noqa: F401
    except ImportError:
        return OFFLINE_DEFAULT_MODEL
    for model_id in MODELS:  # SAM2.1 tiny first
        try:
            if find_weights(model_id) is not None:
                return model_id
        except Exception:
            continue
    return OFFLINE_DEFAULT_MODEL


def make_refiner(name: str):
    """The prompt backend called ``name``; a :class:`ModelError` line when it cannot be built."""
    from ..errors import MicrosegError
    from ..prompting.registry import make_backend

    if name in REFUSED:
        raise ModelError(f"Refiner {name!r} needs the true labels; it cannot refine predictions.")
    try:
        return make_backend(name)
    except MicrosegError as e:
        raise ModelError(f"Refiner {name!r} is not usable: {e}") from None


class TwoStage(nn.Module):
    """Detector boxes, refined into masks by a promptable backend.

    Parameters
    ----------
    detector : torch.nn.Module
        An instance model whose eval output is one dict per image with
        ``boxes`` (``x1, y1, x2, y2`` px), ``labels``, ``scores``, ``masks``
        (``(N, 1, H, W)`` probabilities), as :class:`~.maskrcnn.MaskRCNN`.
    refiner : PromptBackend
        Draws one mask per box (:mod:`napari_microseg.core.prompting`).
    min_score : float
        Detections scoring less are dropped before refinement.
    box_margin : float
        Pixels added on every side of a box before it is given to the refiner.
    refine_labels : sequence of int, optional
        Detector labels (1 = first class) whose masks the refiner draws; the
        others keep the detector's own masks. Default: all.
    """

    def __init__(self, detector: nn.Module, refiner, min_score: float = 0.05,
                 box_margin: float = 0.0, refine_labels=None):
        super().__init__()
        self.detector = detector
        self.refiner = refiner  # not a module: never moved, never in the state dict
        self.min_score = float(min_score)
        self.box_margin = float(box_margin)
        self.refine_labels = None if refine_labels is None else {int(k) for k in refine_labels}
        self.input_multiple = input_multiple(detector)
        #: Masks drawn by the refiner, and empty ones replaced by the detector's mask.
        self.stats = {"refined": 0, "fallback": 0}
    #: ``forward`` takes ``score_floor=`` (``predict_instances`` passes its lowest threshold).
    refines_boxes = True

    def forward(self, images, targets=None, score_floor: float = 0.0):
        """One detection dict per image, masks from the refiner (eval only).

        Boxes scoring under ``score_floor`` (the caller's lowest kept score) are
        dropped before refinement instead of refined and discarded.
        """
        if self.training or targets is not None:
            raise ModelError("A two-stage model is not trained as a whole; train its detector.")
        dets = self.detector(images)
        return [self.refine(img, det, score_floor) for img, det in zip(images, dets, strict=True)]

    def refine(self, image: torch.Tensor, det: dict, score_floor: float = 0.0) -> dict:
        """``det`` with each box scoring at least ``score_floor`` masked by the refiner on ``image``."""
        from ..prompting.session import PromptSession

        keep = det["scores"] >= max(self.min_score, float(score_floor))
        det = {k: v[keep] for k, v in det.items()}
        boxes = det["boxes"].detach().float().cpu().numpy()
        if len(boxes) == 0:
            return det
        grey = image.detach().float().mean(0).clamp(0, 1).cpu().numpy().astype(np.float32)
        h, w = grey.shape
        session = PromptSession(self.refiner, tile_size=max(h, w, 16), halo=0)
        session.set_image(grey, contrast_limits=(0.0, 1.0))
        old = det["masks"] if det["masks"].ndim == 4 else det["masks"][:, None]
        masks = torch.zeros((len(boxes), 1, h, w), dtype=torch.float32)
        m = self.box_margin
        labels = det["labels"].detach().cpu().numpy()
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            if self.refine_labels is not None and int(labels[i]) not in self.refine_labels:
                masks[i, 0] = old[i, 0, :h, :w].detach().float().cpu()
                continue
            box = [max(y1 - m, 0.0), max(x1 - m, 0.0), min(max(y2 - 1, y1) + m, h - 1),
                   min(max(x2 - 1, x1) + m, w - 1)]
            session.reset()
            mask = session.predict(box=box, use_previous=False).mask
            mask = np.asarray(mask.full((h, w)) if hasattr(mask, "full") else mask, bool)
            if mask.any():
                masks[i, 0] = torch.from_numpy(mask).to(masks.dtype)
                self.stats["refined"] += 1
            else:
                masks[i, 0] = old[i, 0, :h, :w].detach().float().cpu()
                self.stats["fallback"] += 1
        det["masks"] = masks.to(old.device)
        return det


def two_stage_card(name: str, detector: ModelCard, refiner: str, *, min_score: float = 0.05,
                   box_margin: float = 0.0, refine_classes=None,
                   description: str = "") -> ModelCard:
    """The card of a two-stage model made of ``detector`` (its card) and ``refiner``.

    ``refine_classes`` (class ids of the detector's card) limits the refiner to
    those classes; the others keep the detector's masks. Default: all classes.
    """
    if detector.task != "instance":
        raise ModelError(
            f"Detector {detector.name!r} is a {detector.task} model; a two-stage model needs an "
            "instance model (boxes) as its detector."
        )
    if detector.architecture == ARCHITECTURE:
        raise ModelError(f"Detector {detector.name!r} is itself a two-stage model.")
    if not 0.0 <= float(min_score) <= 1.0:
        raise ModelError(f"min_score {min_score!r} must lie in [0, 1].")
    if not 0.0 <= float(box_margin) <= 256:
        raise ModelError(f"box_margin {box_margin!r} must lie in [0, 256] px.")
    from datetime import datetime, timezone

    from ... import __version__

    # classes, task, activation, channels, normalisation, scale, tiling and thresholds: the detector's
    d = {**detector.to_dict(), "name": name, "architecture": ARCHITECTURE, "version": "1",
         "metrics": {}, "weights_sha256": None}
    d["params"] = {"detector": detector.name, "refiner": refiner, "min_score": float(min_score),
                   "box_margin": float(box_margin),
                   "refine_labels": _refine_labels(detector, refine_classes)}
    d["description"] = description or f"{detector.name} boxes refined by {refiner}"
    d["provenance"] = {
        "detector": {**detector.reference(), "weights_sha256": detector.weights_sha256},
        "refiner": refiner,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "napari_microseg": __version__,
    }
    return ModelCard.from_dict(d, where=f"two-stage model {name!r}")


def _refine_labels(detector: ModelCard, refine_classes) -> list[int] | None:
    """Detector label indices (1-based) of ``refine_classes`` (class ids); ``None`` = all."""
    if refine_classes is None:
        return None
    ids = detector.class_ids
    unknown = sorted({int(c) for c in refine_classes} - set(ids))
    if unknown or not refine_classes:
        raise ModelError(f"refine classes {unknown or '[]'} are not classes of detector "
                         f"{detector.name!r} (its class ids: {ids}).")
    return sorted(ids.index(int(c)) + 1 for c in set(refine_classes))


def detector_name(card: ModelCard, where: str = "") -> str:
    """The registry name of a two-stage card's detector (a :class:`ModelError` when missing)."""
    name = card.params.get("detector")
    if not isinstance(name, str) or not name:
        raise ModelError(f"{where or card.name}: a two-stage card must name its detector.")
    return name


def check_detector(card: ModelCard, detector: ModelCard, where: str = "") -> None:
    """Raise :class:`ModelError` unless ``detector`` fits the two-stage ``card``."""
    where = where or f"Two-stage model {card.name!r}"
    if detector.task != "instance" or detector.architecture == ARCHITECTURE:
        raise ModelError(f"{where}: detector {detector.name!r} is not a (single-stage) instance model.")
    for key in ("classes", "in_channels", "normalization", "pixel_size_nm"):
        if getattr(detector, key) != getattr(card, key):
            raise ModelError(f"{where}: detector {detector.name!r} has different {key} "
                             f"({getattr(detector, key)!r} vs {getattr(card, key)!r}).")


def load_two_stage(card: ModelCard, device, where: str = "", *, load) -> tuple[TwoStage, ModelCard]:
    """``(TwoStage in eval mode, card)``: the detector loaded by name, the refiner built.

    ``load(name, device=...)`` loads the detector (the registry's
    :func:`~.registry.load_model`, which calls this for a two-stage card).
    """
    detector, dcard = load(detector_name(card, where), device=device)
    check_detector(card, dcard, where)
    made_with = (card.provenance.get("detector") or {}).get("weights_sha256")
    if made_with and dcard.weights_sha256 and made_with != dcard.weights_sha256:
        raise ModelError(
            f"{where or card.name}: detector {dcard.name!r} changed since this two-stage model "
            f"was made (weights {dcard.weights_sha256[:12]}… instead of {made_with[:12]}…); make "
            f"it again (microseg two-stage --detector {dcard.name} --name {card.name} --overwrite)."
        )
    refiner = make_refiner(str(card.params.get("refiner", AUTO)))
    model = TwoStage(detector, refiner, float(card.params.get("min_score", 0.05)),
                     float(card.params.get("box_margin", 0.0)), card.params.get("refine_labels"))
    return model.eval(), card
