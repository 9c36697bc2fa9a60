"""What the promptable-model and SAM2 fine-tuning runs share with each other.

Both runs split and check the data as :func:`~.engine.train` does, write the
same ``config.json`` / ``history.json`` into the run folder, report the same
:class:`~.config.TrainEvent` s, and register their result as a *prompt model*
(a card with ``task = "promptable"`` in the per-user model folder, see
:func:`~napari_microseg.core.models.registry.register_prompt_model`) that the
Label dock and :func:`~napari_microseg.core.prompting.registry.make_backend`
find by name, and that :func:`~napari_microseg.core.models.registry.list_models`
never offers to the Predict dock.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from .config import TrainConfig, TrainEvent, TrainingDataError
from .data import check_training_data, split_validation


class PromptCard(dict):
    """A registered prompt model's card: a dict that also reads like a ``ModelCard``.

    ``card["metrics"]`` and ``card.metrics`` are the same, so callers of
    :func:`~.engine.train` can treat every :attr:`TrainResult.card` alike.
    """

    name = property(lambda self: self["name"])
    task = property(lambda self: self["task"])
    metrics = property(lambda self: self.get("metrics", {}))
    provenance = property(lambda self: self.get("provenance", {}))

    def to_dict(self) -> dict:
        return dict(self)


def setup_run(
    config: TrainConfig,
    images,
    val_images,
    run_dir,
    resume: bool,
    checkpoint: str,
    patch_size: int = 1,
):
    """``(run folder, train images, validation images)`` after every check a run needs.

    Raises :class:`~.config.TrainingDataError` before anything starts: a name
    taken by a built-in backend, nothing to resume, a run folder that is
    not empty or cannot be written, no image, no object, a
    training image smaller than ``patch_size``.
    """
    from ..prompting.registry import _fixed_names
    from .run_folder import check_run_dir, make_run_dir
    from .run_plumbing import default_run_dir

    if config.name in _fixed_names():
        raise TrainingDataError(
            f"{config.name!r} is the name of a built-in prompt backend; choose another model name."
        )
    check_run_dir(run_dir, resume, checkpoint)
    images = list(images)
    if val_images is None:
        images, val_images = split_validation(
            images, config.val_fraction, config.kfold, config.fold, config.seed
        )
    val_images = list(val_images or [])
    check_training_data(images, patch_size)
    if val_images:
        check_training_data(val_images, 1, what="validation")
    run_dir = make_run_dir(run_dir if run_dir is not None else default_run_dir(config.name))
    return run_dir, images, val_images


def write_config(run_dir: Path, config: TrainConfig, source, images, val_images) -> None:
    """The run's ``config.json`` (recipe, data source, image names), as the engine writes it."""
    write_json_atomic(
        run_dir / "config.json",
        {
            "config": config.to_dict(),
            "source": source or {},
            "train_images": [im.name for im in images],
            "val_images": [im.name for im in val_images],
        },
    )


def samples(images) -> list:
    """:class:`~napari_microseg.core.prompting.eval_data.Sample` s of labelled images."""
    from ..prompting.eval_data import Sample

    return [Sample(im.name, np.asarray(im.image), np.asarray(im.labels)) for im in images]


def click_metrics(mean_iou) -> dict:
    """Validation metrics from the simulated user's mean IoU per click."""
    out = {"iou_1click": float(mean_iou[0])}
    if len(mean_iou) >= 3:
        out["iou_3clicks"] = float(mean_iou[2])
    return out


def eta(step: int, total: int, elapsed: float, max_minutes: float | None) -> float | None:
    """Seconds left at the pace so far (bounded by the wall-time budget)."""
    if not step:
        return None
    left = (total - step) * elapsed / step
    if max_minutes:
        left = min(left, max(0.0, max_minutes * 60 - elapsed))
    return left


def step_event(config: TrainConfig, step: int, total: int, loss, lr, elapsed: float) -> TrainEvent:
    """The ``"step"`` event after optimiser step ``step``."""
    return TrainEvent(
        "step",
        step=step,
        total_steps=total,
        epoch=(step - 1) // config.steps_per_epoch + 1,
        loss=loss,
        lr=lr,
        batch_size=config.batch_size,
        elapsed_s=elapsed,
        eta_s=eta(step, total, elapsed, config.max_minutes),
    )


def register(
    config: TrainConfig,
    fields: dict,
    files: dict,
    history: list,
    source,
    images,
    val_images,
    run_dir: Path,
    overwrite: bool,
) -> PromptCard:
    """Register a prompt model (card ``fields`` + ``files``); return its card."""
    from ..models.card import CARD_FORMAT, FORMAT_VERSION
    from ..models.registry import PROMPTABLE_TASK, register_prompt_model
    from .provenance import best_metrics, free_name, run_provenance

    name = free_name(config.name, overwrite)
    card = {
        "format": CARD_FORMAT,
        "format_version": FORMAT_VERSION,
        "task": PROMPTABLE_TASK,
        "name": name,
        **fields,
        "provenance": run_provenance(
            config, history, source, [im.name for im in images], [im.name for im in val_images]
        ),
        "metrics": best_metrics(history),
    }
    card = json.loads(json.dumps(card, default=str))
    register_prompt_model(card, files, overwrite=overwrite)
    write_json_atomic(run_dir / "card.json", card)
    return PromptCard(card)
