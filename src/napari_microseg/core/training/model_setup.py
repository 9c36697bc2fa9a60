"""The model card and starting weights of a training run."""

from __future__ import annotations

from pathlib import Path

from ..classes import DEFAULT_CLASSES
from ..models.architectures import INSTANCE_ARCHITECTURES
from ..models.card import ModelCard, read_card
from ..models.yolo_seg import NMS_DEFAULTS
from .config import TrainConfig, TrainingDataError


def classes_for(cfg: TrainConfig, images) -> list[dict]:
    """The card classes: the config's, or those present in the data.

    A class present in the data is named from the images' own class tables
    (``TrainImage.class_names``), else from the default classes, else
    ``"class N"``. Two images whose objects carry one id under different names
    are refused: the model would silently merge two classes.
    """
    if cfg.classes:
        return [dict(c) for c in cfg.classes]
    present = [im.class_ids() for im in images]  # a table may list classes an image does not use
    ids = sorted(set().union(*present) or {1})
    named: dict[int, tuple] = {}
    for im, used in zip(images, present, strict=True):
        for cid, (name, color) in im.class_names.items():
            if int(cid) not in used:
                continue
            first = named.setdefault(int(cid), (name, color, im.name))
            if first[0] != name:
                raise TrainingDataError(
                    f"Class {cid} is {first[0]!r} in {first[2]} but {name!r} in {im.name}; "
                    "give the labels one class table (or list the classes for the run)."
                )
    known = {c.id: (c.name, c.color) for c in DEFAULT_CLASSES}
    out = []
    for i in ids:
        name, color = named[i][:2] if i in named else known.get(i, (f"class {i}", "#ffff00"))
        out.append({"id": i, "name": name, "color": color})
    return out


def make_card(cfg: TrainConfig, classes: list[dict]) -> ModelCard:
    """The model card a run of ``cfg`` produces (before metrics and provenance)."""
    instance = cfg.architecture in INSTANCE_ARCHITECTURES
    params = dict(cfg.params)
    if cfg.architecture == "maskrcnn":
        params.setdefault("min_size", cfg.patch_size)
        params.setdefault("max_size", cfg.patch_size)
    elif instance:  # the NMS settings are written on the card
        for key, value in NMS_DEFAULTS.items():
            params.setdefault(key, value)
    return ModelCard(
        name=cfg.name,
        architecture=cfg.architecture,
        classes=classes,
        params=params,
        task="instance" if instance else "semantic",
        activation="none" if instance else "softmax",
        pixel_size_nm=cfg.pixel_size_nm,
        tile=cfg.tile,
        halo=cfg.halo,
    )


def init_from(model, card: ModelCard, init: str, log) -> None:
    """Load matching tensors of a registered model (or weights file) into ``model``.

    A file that changed since it was written, holds code or is damaged is
    refused with one :class:`~napari_microseg.core.errors.MicrosegError` line.
    """
    from ..models.registry import CARD_FILE, WEIGHTS_FILE, find_model
    from ..safeload import load_torch_data

    path, sha = Path(init), None
    if not path.is_file():
        entry = find_model(init)
        base = read_card(entry.folder / CARD_FILE)
        if base.architecture != card.architecture:
            raise TrainingDataError(
                f"Model {init!r} is a {base.architecture}, not a {card.architecture}."
            )
        path, sha = entry.folder / WEIGHTS_FILE, base.weights_sha256
    # not read_weights(): its card checks would refuse e.g. another number of classes.
    # Read as data (weights_only); the card's SHA-256 (or the record beside) is checked first.
    data = load_torch_data(path, "napari-microseg weights file", expected_sha256=sha)
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise TrainingDataError(f"{init}: the file does not hold a state dict.")
    own = model.state_dict()
    fit = {
        k: v.float() if v.is_floating_point() else v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape
    }
    if not fit:
        raise TrainingDataError(f"{init}: no tensor of these weights fits the chosen model.")
    model.load_state_dict(fit, strict=False)
    skipped = len(own) - len(fit)
    log(
        f"Started from {init}: {len(fit)} tensors loaded"
        + (f", {skipped} new (e.g. a different number of classes)." if skipped else ".")
    )
