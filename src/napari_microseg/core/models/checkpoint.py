"""Weights files: a state dict saved with the architecture facts it belongs to.

``weights.pt`` holds ``{"format", "format_version", "architecture", "params",
"in_channels", "out_channels", "state_dict"}`` and is read with
``torch.load(weights_only=True)``. Before a state dict is loaded, its facts and
tensor shapes are compared with the model card, so a checkpoint that does not
fit (other input channels, other number of classes, other architecture
parameters, a damaged file) fails with one sentence naming the file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import MicrosegError
from .card import ModelCard, ModelError

WEIGHTS_FORMAT = "napari-microseg-weights"
WEIGHTS_VERSION = 1


def save_weights(path, model_or_state_dict, card: ModelCard, half: bool = False) -> Path:
    """Write a state dict with the architecture facts of ``card`` to ``path``."""
    sd = model_or_state_dict
    if isinstance(sd, nn.Module):
        sd = sd.state_dict()
    state = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        state[k] = (v.half() if half and v.is_floating_point() else v).clone()
    data = {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_VERSION,
        "architecture": card.architecture,
        "params": card.params,
        "in_channels": card.in_channels,
        "out_channels": card.out_channels,
        "state_dict": state,
    }
    torch.save(data, path)
    return Path(path)


def read_weights(path, card: ModelCard, where=None) -> dict:
    """The state dict in ``path``, checked against what ``card`` describes.

    The file is read as data (``torch.load(weights_only=True)``: a pickle that
    holds code is refused, never run); before its tensors are returned its
    SHA-256 is compared with the card's ``weights_sha256`` or, without one,
    the record beside the file (:mod:`~napari_microseg.core.safeload`). Error
    messages name ``where`` (default: ``path``).
    """
    from ..safeload import IntegrityError, UnsafeFileError, load_torch_data, verify_digest

    path = Path(path)
    name = where or path
    if not path.is_file():
        raise ModelError(f"{name}: the weights file is missing.")
    try:
        data = load_torch_data(path, "weights file", where=name, verify=False)
    except UnsafeFileError:
        raise ModelError(
            f"{name}: not a readable weights file (not napari-microseg weights, or it contains "
            "code); refusing to load it."
        ) from None
    except MicrosegError as e:
        msg = getattr(e, "detail", None) or str(e)
        raise ModelError(f"{name}: not a readable weights file (corrupt or truncated: {msg}).") from None
    if not isinstance(data, dict):
        raise ModelError(f"{name}: does not hold a state dict.")
    if data.get("format") == WEIGHTS_FORMAT:
        _check_weights_meta(name, data, card)
        data = data.get("state_dict")
    elif isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{name}: does not hold a state dict of tensors.")
    try:  # read as data first (safe), so a damaged file says so; then check it is unchanged
        verify_digest(path, card.weights_sha256, name)
    except IntegrityError as e:
        raise ModelError(str(e)) from None
    return {k: v.float() if v.is_floating_point() else v for k, v in data.items()}


def _check_weights_meta(name, data: dict, card: ModelCard) -> None:
    if int(data.get("format_version", 0)) > WEIGHTS_VERSION:
        raise ModelError(
            f"{name}: weights format {data['format_version']} is newer than this napari-microseg "
            f"reads ({WEIGHTS_VERSION}); update napari-microseg."
        )
    if data.get("architecture") != card.architecture:
        raise ModelError(
            f"{name}: the weights are for architecture {data.get('architecture')!r} but the card "
            f"says {card.architecture!r}."
        )
    if data.get("in_channels") != card.in_channels:
        raise ModelError(
            f"{name}: the weights take {data.get('in_channels')} input channel(s) but the card "
            f"says {card.in_channels}."
        )
    if data.get("out_channels") != card.out_channels:
        raise ModelError(
            f"{name}: the weights have {data.get('out_channels')} output channels but the card's "
            f"{card.n_classes} classes need {card.out_channels} (wrong number of classes)."
        )
    if data.get("params") != card.params:
        raise ModelError(
            f"{name}: the weights were saved with architecture parameters {data.get('params')} "
            f"but the card says {card.params}."
        )


def load_state(model: nn.Module, state: dict, card: ModelCard, where) -> None:
    """Load ``state`` into ``model`` or raise :class:`ModelError` saying what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or wrong):
        model.load_state_dict(state, strict=True)
        return
    first_conv = next((k for k, v in own.items() if k.endswith("weight") and v.ndim == 4), None)
    for k in wrong:
        a, b = tuple(state[k].shape), tuple(own[k].shape)
        if k == first_conv and len(a) == 4 and a[1] != b[1]:
            raise ModelError(
                f"{where}: the weights take {a[1]} input channel(s) but the card says "
                f"{card.in_channels}."
            )
        if b[0] == card.out_channels and a[0] != b[0]:
            raise ModelError(
                f"{where}: the weights predict {a[0]} output channels but the card's "
                f"{card.n_classes} classes need {card.out_channels} (wrong number of classes)."
            )
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} tensor(s) of the wrong shape (e.g. {k}: {tuple(state[k].shape)} "
            f"instead of {tuple(own[k].shape)})"
        )
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    raise ModelError(
        f"{where}: the weights do not match architecture {card.architecture!r} with parameters "
        f"{card.params}: {'; '.join(parts)}."
    )
