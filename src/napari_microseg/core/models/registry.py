"""Where trained models live, and how they are loaded, added and shared (listing: :mod:`.store`).

A model is a folder ``<name>/`` holding ``model_card.json`` (:mod:`.card`) and
``weights.pt`` (a state dict with the architecture facts it was saved with).
Models are looked up, first match wins, in

1. the per-user folder :func:`models_dir` (``MICROSEG_MODELS_DIR``, else
   ``platformdirs.user_data_dir("napari-microseg")/models``);
2. the models bundled in the package (``napari_microseg/resources/models``).

Folders whose card has ``task = "promptable"`` (click/box models of the
prompt engine: fine-tuned promptable models and SAM2 deltas) are not
segmentation models: :func:`list_models` skips them and
:func:`list_prompt_models` / :func:`register_prompt_model` handle them (the
Label dock offers them by name). One model travels as
ONE file: :func:`export_model` writes a zip with the card and the weights (and
an ensemble's members), :func:`import_model` validates and installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

import torch
from torch import nn

from .architectures import build_model
from .card import CARD_FILE, WEIGHTS_FILE, ModelCard, ModelError, read_card, valid_name
from .checkpoint import load_state, read_weights, save_weights
from .ensemble import check_members
from .store import (
    ENV_MODELS_DIR,
    PROMPTABLE_TASK,
    ModelEntry,
    PromptModelEntry,
    bundled_dir,
    check_prompt_card,
    find_model,
    list_models,
    list_prompt_models,
    models_dir,
    read_prompt_card,
)

__all__ = [
    "COMPOSITE", "ENV_MODELS_DIR", "PROMPTABLE_TASK", "ModelEntry", "PromptModelEntry",
    "bundled_dir", "check_prompt_card", "export_model", "find_model", "import_model",
    "list_models", "list_prompt_models", "load_folder", "load_model", "models_dir",
    "read_prompt_card", "register_model", "register_prompt_model", "remove_model",
]

#: Architectures made of other registered models, without weights of their own.
COMPOSITE = ("ensemble", "two-stage")


def register_prompt_model(card: dict, files: dict, *, overwrite: bool = False, root=None) -> Path:
    """Install a prompt model: ``card`` (dict) and ``files`` (``{name in folder: source path}``)."""
    import json

    root = Path(root) if root is not None else models_dir()
    card = check_prompt_card({**card, "task": PROMPTABLE_TASK}, f"model {card.get('name')!r}")
    root.mkdir(parents=True, exist_ok=True)
    with _staging(root, card["name"], overwrite) as tmp:
        for name, src in files.items():
            shutil.copy2(src, tmp / name)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=1), encoding="utf-8")
    return root / card["name"]


# -- loading -------------------------------------------------------------------------


def load_folder(folder, device="cpu") -> tuple[nn.Module, ModelCard]:
    """``(model in eval mode on device, card)`` from a model folder."""
    folder = Path(folder)
    card = read_card(folder / CARD_FILE)
    members = None
    if card.architecture == "two-stage":
        from .two_stage import load_two_stage

        return load_two_stage(card, _device(device), str(folder / CARD_FILE), load=load_model)
    if card.architecture == "ensemble":
        names = card.params.get("members") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ModelError(f"{folder / CARD_FILE}: ensemble members must be a list of model names.")
        members = [load_model(n, device="cpu") for n in names]
        check_members(card, [c for _, c in members])
    model = build_model(card, members=members, where=str(folder / CARD_FILE))
    if members is None:
        load_state(model, read_weights(folder / WEIGHTS_FILE, card), card, folder / WEIGHTS_FILE)
    return model.eval().to(_device(device)), card


def _device(device):
    from ..device import select_device

    if isinstance(device, torch.device):
        return device
    return select_device(device)


def load_model(name, device="auto") -> tuple[nn.Module, ModelCard]:
    """Load a registered model (or a model folder / exported file given as a path).

    Parameters
    ----------
    name : str or Path
        Registry name, a model folder, or a file written by :func:`export_model`.
    device : str or torch.device
        ``"auto"`` (CUDA, MPS, else CPU), ``"cpu"``, ``"cuda"``, ...

    Returns
    -------
    (torch.nn.Module, ModelCard)
        The network in eval mode on ``device`` and its card.
    """
    path = Path(name)
    if path.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            folder = _unpack(path, Path(tmp))
            return load_folder(folder, device)
    if path.is_dir() and (path / CARD_FILE).is_file():
        return load_folder(path, device)
    return load_folder(find_model(str(name)).folder, device)


# -- adding, exporting, importing ----------------------------------------------------------


def register_model(
    model_or_state_dict, card: ModelCard, *, overwrite: bool = False, root=None, half: bool = False
) -> Path:
    """Add a trained model to the per-user folder (or ``root``); return its folder.

    The weights are checked against the card (built and loaded) before anything
    is written. An ensemble or two-stage card needs no weights (pass ``None``).
    """
    root = Path(root) if root is not None else models_dir()
    card.validate()
    where = f"model {card.name!r}"
    if card.architecture == "ensemble":
        member_cards = [load_model(n, device="cpu")[1] for n in card.params.get("members", [])]
        check_members(card, member_cards)
    elif card.architecture == "two-stage":
        from .two_stage import check_detector, detector_name

        check_detector(card, load_model(detector_name(card, where), device="cpu")[1], where)
    else:
        if model_or_state_dict is None:
            raise ModelError(f"{where}: no weights given.")
        sd = model_or_state_dict
        if isinstance(sd, nn.Module):
            sd = sd.state_dict()
        state = {k: v.detach().cpu().float() if v.is_floating_point() else v for k, v in sd.items()}
        load_state(build_model(card, where=where), state, card, where)
    root.mkdir(parents=True, exist_ok=True)
    with _staging(root, card.name, overwrite) as tmp:
        if card.architecture not in COMPOSITE:  # the card carries the weights' SHA-256
            from dataclasses import replace

            from ..safeload import file_sha256

            save_weights(tmp / WEIGHTS_FILE, model_or_state_dict, card, half=half)
            card = replace(card, weights_sha256=file_sha256(tmp / WEIGHTS_FILE))
        (tmp / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
    return root / card.name


@contextlib.contextmanager
def _staging(root: Path, name: str, overwrite: bool):
    """A temporary folder in ``root`` that becomes ``root/name`` on success."""
    target = root / name
    if target.exists() and not overwrite:
        raise ModelError(f"A model named {name!r} already exists in {root}; choose another name.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=root))
            os.replace(target, old / name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def export_model(name, path) -> Path:
    """Write model ``name`` (card + weights; an ensemble or two-stage model with its members)."""
    entry = find_model(str(name))
    card = read_card(entry.folder / CARD_FILE)
    path = Path(path)
    from ..atomic import atomic_path

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        _add_folder(zf, entry.folder, card, "")
        for member in _member_names(card):
            m = find_model(member)
            _add_folder(zf, m.folder, read_card(m.folder / CARD_FILE), f"members/{member}/")
    return path


def _member_names(card: ModelCard) -> list[str]:
    """Registered models a composite card is made of (an ensemble's members, a detector)."""
    if card.architecture == "ensemble":
        return list(card.params.get("members", []))
    if card.architecture == "two-stage":
        return [card.params.get("detector")]
    return []


def _add_folder(zf: zipfile.ZipFile, folder: Path, card: ModelCard, prefix: str) -> None:
    zf.writestr(prefix + CARD_FILE, card.to_json())
    if card.architecture not in COMPOSITE:
        zf.write(folder / WEIGHTS_FILE, prefix + WEIGHTS_FILE)


#: Largest total size (bytes) the files of an imported model may expand to.
MAX_UNPACKED_BYTES = 4 * 2**30
#: Largest expansion ratio (uncompressed / compressed) of a member bigger than
#: :data:`RATIO_MIN_BYTES`; real weights barely compress (about 1.1x).
MAX_COMPRESSION_RATIO = 200
#: Members smaller than this are not held to :data:`MAX_COMPRESSION_RATIO`.
RATIO_MIN_BYTES = 2**20


def _model_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The members of an exported model that are extracted (card/weights, members' too)."""
    out = []
    for info in zf.infolist():
        parts = info.filename.split("/")
        ok = info.filename in (CARD_FILE, WEIGHTS_FILE) or (
            len(parts) == 3 and parts[0] == "members" and valid_name(parts[1])
            and parts[2] in (CARD_FILE, WEIGHTS_FILE)
        )
        if ok and not info.is_dir():
            out.append(info)
    return out


def check_zip_sizes(path, infos: list[zipfile.ZipInfo]) -> int:
    """Refuse a zip bomb before extracting: total size and compression ratio from the headers.

    Returns the declared total size in bytes.

    Raises
    ------
    ModelError
        When the members would expand past :data:`MAX_UNPACKED_BYTES`, or one
        expands more than :data:`MAX_COMPRESSION_RATIO` times.
    """
    total = sum(int(i.file_size) for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise ModelError(
            f"{path}: the model would expand to {total / 2**30:.1f} GiB (limit "
            f"{MAX_UNPACKED_BYTES / 2**30:.0f} GiB); refusing to import it."
        )
    for i in infos:
        ratio = i.file_size / max(int(i.compress_size), 1)
        if i.file_size > RATIO_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise ModelError(
                f"{path}: {i.filename} expands {ratio:.0f}x ({i.compress_size} -> {i.file_size} "
                f"bytes; limit {MAX_COMPRESSION_RATIO}x): not a model export, refusing to import it."
            )
    return total


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Extract one member, stopping when it writes more than declared or than ``budget``."""
    written, limit = 0, min(int(info.file_size), budget)
    with zf.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(2**20):
            written += len(chunk)
            if written > limit:
                raise ModelError(f"{zf.filename}: {info.filename} holds more data than its header "
                                 "says; refusing to import it.")
            out.write(chunk)
    return written


def _unpack(path: Path, dest: Path) -> Path:
    """Extract an exported model's files into ``dest/<name>``; return that folder.

    Only the card and weights files (and an ensemble's members') are extracted,
    under ``dest`` (no path traversal), after :func:`check_zip_sizes`.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if CARD_FILE not in names:
                raise ModelError(f"{path}: not a napari-microseg model file (no {CARD_FILE}).")
            infos = _model_members(zf)
            budget = check_zip_sizes(path, infos)
            for info in infos:
                target = dest.joinpath(*info.filename.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                budget -= _copy_member(zf, info, target, budget)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        raise ModelError(f"{path}: not a readable napari-microseg model file ({e}).") from None
    card = read_card(dest / CARD_FILE)
    folder = dest / "_model" / card.name
    folder.mkdir(parents=True)
    for f in (CARD_FILE, WEIGHTS_FILE):
        if (dest / f).exists():
            os.replace(dest / f, folder / f)
    return folder


def import_model(path, *, name: str | None = None, overwrite: bool = False, root=None) -> ModelCard:
    """Install a file written by :func:`export_model` into the per-user folder.

    The model is loaded (built and its weights checked) before it is
    installed. An ensemble's members are installed first unless a model of
    that name already exists. ``name`` renames the imported model.
    """
    path = Path(path)
    root = Path(root) if root is not None else models_dir()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".import.") as tmp:
        folder = _unpack(path, Path(tmp))
        card = read_card(folder / CARD_FILE)
        members_dir = Path(tmp) / "members"
        if members_dir.is_dir():
            for m in sorted(members_dir.iterdir()):
                if not (root / m.name).exists():
                    mcard = read_card(m / CARD_FILE)
                    load_state(build_model(mcard, where=str(path)),
                               read_weights(m / WEIGHTS_FILE, mcard, path), mcard, path)
                    with _staging(root, mcard.name, False) as stage:
                        for f in m.iterdir():
                            shutil.copy2(f, stage / f.name)
        if card.architecture not in COMPOSITE:
            load_state(build_model(card, where=str(path)),
                       read_weights(folder / WEIGHTS_FILE, card, path), card, path)
        if name is not None:
            card = ModelCard.from_dict({**card.to_dict(), "name": name}, where=str(path))
        with _staging(root, card.name, overwrite) as stage:
            (stage / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
            if (folder / WEIGHTS_FILE).exists():
                shutil.copy2(folder / WEIGHTS_FILE, stage / WEIGHTS_FILE)
    if card.architecture in COMPOSITE and root.resolve() == models_dir().resolve():
        load_model(root / card.name, device="cpu")  # members resolvable and compatible
    return card


def remove_model(name: str) -> None:
    """Delete a user model (bundled models cannot be removed)."""
    entry = find_model(name)
    if entry.source != "user":
        raise ModelError(f"Model {name!r} is bundled with napari-microseg and cannot be removed.")
    shutil.rmtree(entry.folder)
