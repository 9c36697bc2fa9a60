"""Fine-tuning the offline promptable click/box model (``architecture="promptable"``).

:func:`finetune` is what :func:`~.engine.train` runs for this architecture. It
wraps :func:`~napari_microseg.core.promptable.training.train_promptable` (the
RITM-style loop with simulated corrective clicks) with the engine's contract:
validation split, data checks before anything starts, :class:`~.config.TrainEvent`
progress, stop after any step with a checkpoint, resume, and registration as a
prompt model the Label dock offers by name.

Run folder: ``checkpoint.pt`` (every epoch and at a stop), ``log.jsonl``,
``history.json``, ``config.json``, ``weights.pt`` (last, fp16), ``best_weights.pt``
(the best validation epoch: the one registered) and
``card.json`` once registered.

Recipe from :class:`~.config.TrainConfig`: ``epochs``, ``steps_per_epoch``,
``batch_size`` (objects per step), ``lr`` (AdamW, warm-up then cosine),
``max_minutes`` (wall-time budget), ``threads`` (0: one thread), ``seed``;
``init_model`` (a promptable weights file, or ``"default"``) overrides
``params["init"]``. ``patch_size`` and ``augment`` are not used: the model
works on its own windows around each object and has its own augmentation.

``config.params`` keys
----------------------
init : str
    ``"default"`` (the shipped ``microseg-promptable``, default), a path to a
    promptable ``weights.pt``, the name of a registered fine-tuned promptable
    model, or ``"scratch"`` (a new network).
widths : list of int
    U-Net widths of a new network (``init="scratch"``), default
    ``[16, 32, 64, 96, 128]``.
p_box : float
    Share of examples prompted with a box instead of a click (0.3).
val_objects : int
    At most this many objects scored per validation image (default 50).

Validation metrics: ``iou_1click`` and ``iou_3clicks``, the mean IoU after 1
and 3 clicks of the simulated user on the validation objects.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import TrainConfig, TrainEvent, TrainingDataError, TrainingStopped, TrainResult
from .prompt_models import click_metrics, samples, setup_run, step_event, write_config
from .prompt_models import register as register_prompt

CHECKPOINT = "checkpoint.pt"
DEFAULT_PARAMS = {
    "init": "default",
    "widths": [16, 32, 64, 96, 128],
    "p_box": 0.3,
    "val_objects": 50,
}


def _init(config: TrainConfig, params: dict):
    """The ``init`` argument of ``train_promptable`` and a description of it."""
    from ..models.registry import list_prompt_models

    init = config.init_model or params["init"]
    if init in (None, "scratch"):
        return None, "scratch"
    if init == "default":
        return "default", "microseg-promptable (shipped)"
    for e in list_prompt_models():
        if e.name == init and e.backend == "microseg-promptable":
            return str(e.folder / e.card.get("files", {}).get("weights", "weights.pt")), init
    if not Path(init).is_file():
        raise TrainingDataError(
            f"Cannot start from {init!r}: not 'default', 'scratch', a registered promptable "
            "model or a weights file."
        )
    return str(init), str(init)


def _history_record(rec: dict) -> dict:
    """A ``log.jsonl`` record in the engine's history format (``val_`` metrics)."""
    out = {k: rec.get(k) for k in ("epoch", "step", "loss", "lr", "elapsed_s")}
    out["best"] = bool(rec.get("best"))
    if rec.get("val_iou"):
        out.update({f"val_{k}": v for k, v in click_metrics(rec["val_iou"]).items()})
        out["val_mean_iou_per_click"] = rec["val_iou"]
    return out


def finetune(
    config: TrainConfig,
    images,
    val_images=None,
    *,
    run_dir=None,
    resume: bool = False,
    progress=None,
    should_stop=None,
    register: bool = True,
    overwrite: bool = False,
    source: dict | None = None,
) -> TrainResult:
    """Fine-tune (or train) the promptable model; register it when the run ends.

    Parameters and result as :func:`~.engine.train` (the module docstring lists
    the ``config.params`` keys). The registered model is built by
    ``make_backend(result.model_name)``.
    """
    from ..promptable.training import train_promptable

    progress = progress or (lambda e: None)
    params = {**DEFAULT_PARAMS, **(config.params or {})}
    init, init_label = _init(config, params)
    run_dir, images, val_images = setup_run(config, images, val_images, run_dir, resume, CHECKPOINT)
    if not resume:
        write_config(run_dir, config, source, images, val_images)
    total = config.total_steps
    history: list = []

    def on_event(ev: dict) -> None:
        if ev["kind"] == "step":
            progress(step_event(config, ev["step"], total, ev["loss"], ev["lr"], ev["elapsed_s"]))
            return
        rec = _history_record(ev)
        history.append(rec)
        metrics = {
            k[4:]: v for k, v in rec.items() if k.startswith("val_") and "per_click" not in k
        }
        progress(
            TrainEvent(
                "epoch",
                step=rec["step"],
                total_steps=total,
                epoch=rec["epoch"],
                loss=rec["loss"],
                lr=rec["lr"],
                batch_size=config.batch_size,
                elapsed_s=rec["elapsed_s"] or 0.0,
                metrics=metrics,
            )
        )

    stopped = False
    try:
        weights = train_promptable(
            [(im.image, im.labels) for im in images],
            epochs=config.epochs,
            out_dir=run_dir,
            init=init,
            steps_per_epoch=config.steps_per_epoch,
            batch_size=config.batch_size,
            lr=config.lr,
            minutes=config.max_minutes,
            p_box=float(params["p_box"]),
            widths=tuple(params["widths"]),
            val_samples=samples(val_images) or None,
            val_objects=params["val_objects"],
            resume=resume,
            seed=config.seed,
            threads=config.threads or 1,
            log=None,
            progress=on_event,
            should_stop=should_stop,
        )
    except TrainingStopped as e:
        stopped, weights = True, None
        progress(TrainEvent("message", text=str(e)))
    except ValueError as e:  # ObjectBank: no object large enough
        raise TrainingDataError(
            f"The training labels cannot train the promptable model: {e}."
        ) from None
    history = _full_history(run_dir, history)
    from ..atomic import write_json_atomic

    write_json_atomic(run_dir / "history.json", history)
    result = TrainResult(run_dir, weights, run_dir / CHECKPOINT, history, stopped=stopped)
    if not stopped and register:
        result.card = _register(
            config, weights, init_label, history, source, images, val_images, run_dir, overwrite
        )
        result.model_name = result.card["name"]
        progress(TrainEvent("message", text=f"Registered prompt model {result.model_name!r}."))
    last = history[-1] if history else {}
    progress(
        TrainEvent(
            "done",
            step=last.get("step", 0),
            total_steps=total,
            elapsed_s=last.get("elapsed_s") or 0.0,
            text="stopped" if stopped else "finished",
        )
    )
    return result


def _full_history(run_dir: Path, fallback: list) -> list:
    """Every epoch of the run so far (earlier sessions included), from ``log.jsonl``."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return fallback
    return [_history_record(json.loads(line)) for line in path.read_text().splitlines() if line]


def _register(
    config, weights: Path, init_label, history, source, images, val_images, run_dir, overwrite
) -> dict:
    from ..promptable.backend import load_weights
    from ..weights import sha256_file

    _, crop, meta = load_weights(weights)
    sha = sha256_file(weights)
    fields = {
        "backend": "microseg-promptable",
        "model_id": f"{config.name}-{sha[:12]}",
        "description": f"microseg-promptable fine-tuned from {init_label} with napari-microseg",
        "files": {"weights": "weights.pt"},
        "weights_sha256": sha,
        "base": {"model": init_label},
        "crop": crop.to_dict(),
        **{k: meta[k] for k in ("threshold", "first_threshold") if k in meta},
    }
    return register_prompt(
        config,
        fields,
        {"weights.pt": weights},
        history,
        source,
        images,
        val_images,
        run_dir,
        overwrite,
    )
