"""Where models live on disk, and how they are listed and found (no loading).

The folder layer of :mod:`.registry`: the per-user and bundled model folders,
the runnable models (:func:`list_models`, :func:`find_model`) and the prompt
models (:func:`list_prompt_models`). It loads nothing, so the prompt-backend
registry can list fine-tuned prompt models without importing model loading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .card import CARD_FILE, ModelCard, ModelError, card_task, read_card, valid_name

#: Environment variable overriding :func:`models_dir`.
ENV_MODELS_DIR = "MICROSEG_MODELS_DIR"
#: Package folder (under ``napari_microseg``) of the bundled models.
RESOURCE = ("resources", "models")
#: Folders never listed (the prompt engine's own model).
SKIPPED_FOLDERS = ("microseg-promptable",)
#: Card task of prompt-engine models (not runnable by :func:`load_model`).
PROMPTABLE_TASK = "promptable"


@dataclass
class ModelEntry:
    """One model found by :func:`list_models`.

    Attributes
    ----------
    name : str
    folder : Path
    source : str
        ``"user"`` or ``"bundled"``.
    card : ModelCard or None
        ``None`` when the card is broken (then ``error`` says why).
    error : str or None
    """

    name: str
    folder: Path
    source: str
    card: ModelCard | None = None
    error: str | None = None


def models_dir() -> Path:
    """The per-user model folder (not created)."""
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-microseg")) / "models"


def bundled_dir() -> Path | None:
    """Folder of the models shipped in the package, ``None`` when there is none."""
    root = resources.files("napari_microseg").joinpath(*RESOURCE)
    try:
        path = Path(str(root))
    except TypeError:  # pragma: no cover - zipped installs are not supported
        return None
    return path if path.is_dir() else None


def _scan(root: Path | None, source: str) -> list[ModelEntry]:
    if root is None or not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        card_path = folder / CARD_FILE
        if folder.name in SKIPPED_FOLDERS or not card_path.is_file():
            continue
        if card_task(card_path) == PROMPTABLE_TASK:
            continue
        try:
            out.append(ModelEntry(folder.name, folder, source, read_card(card_path)))
        except ModelError as e:
            out.append(ModelEntry(folder.name, folder, source, None, str(e)))
    return out


def list_models(*, include_broken: bool = False, task: str | None = None) -> list[ModelEntry]:
    """Runnable models, user models first; a user model hides a bundled one of the same name.

    Parameters
    ----------
    include_broken : bool
        Also list folders whose card cannot be read (``entry.error`` says why).
    task : str, optional
        Only ``"semantic"`` or only ``"instance"`` models.
    """
    seen, out = set(), []
    for entry in _scan(models_dir(), "user") + _scan(bundled_dir(), "bundled"):
        if entry.name in seen:
            continue
        seen.add(entry.name)
        if entry.card is None and not include_broken:
            continue
        if task is not None and (entry.card is None or entry.card.task != task):
            continue
        out.append(entry)
    return out


@dataclass
class PromptModelEntry:
    """One registered prompt-engine model (fine-tuned promptable model or SAM2 delta).

    ``card`` is the card as a dict: ``backend`` (``"microseg-promptable"`` or
    ``"sam2"``), ``model_id``, ``base``, ``files``, ``provenance``, ``metrics``.
    """

    name: str
    folder: Path
    card: dict

    @property
    def backend(self) -> str:
        return str(self.card.get("backend", ""))


def read_prompt_card(path) -> dict:
    """A prompt model's card (``task = "promptable"``); :class:`ModelError` when unusable."""
    import json

    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{path}: the model card is not readable JSON ({e}).") from None
    return check_prompt_card(d, str(path))


def check_prompt_card(d, where: str = "prompt-model card") -> dict:
    """``d`` when it is a usable prompt-model card, else :class:`ModelError` naming ``where``."""
    ok = (
        isinstance(d, dict)
        and d.get("task") == PROMPTABLE_TASK
        and isinstance(d.get("name"), str)
        and valid_name(d["name"])
        and d.get("backend") in ("microseg-promptable", "sam2")
    )
    if not ok:
        raise ModelError(f"{where}: not a prompt-model card (task, name or backend missing).")
    return d


def list_prompt_models() -> list[PromptModelEntry]:
    """Prompt models registered in the per-user folder (broken cards are left out)."""
    root = models_dir()
    out = []
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        path = folder / CARD_FILE
        if folder.name in SKIPPED_FOLDERS or card_task(path) != PROMPTABLE_TASK:
            continue
        try:
            out.append(PromptModelEntry(folder.name, folder, read_prompt_card(path)))
        except ModelError:
            continue
    return out


def find_model(name: str) -> ModelEntry:
    """The entry of the model called ``name`` (user folder first)."""
    for root, source in ((models_dir(), "user"), (bundled_dir(), "bundled")):
        if root is not None and (root / name / CARD_FILE).is_file() and valid_name(name):
            return ModelEntry(name, root / name, source)
    known = ", ".join(e.name for e in list_models()) or "none"
    raise ModelError(f"No model named {name!r}; available: {known}.")
