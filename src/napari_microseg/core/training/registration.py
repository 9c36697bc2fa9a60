"""Registering the result of a training run: when it learnt something, or on request.

A run registers its best weights when it ends. Two cases need a decision first:

* the model **learnt nothing** (:func:`learned_nothing`: validation F1 of 0 at its
  best epoch, i.e. not one validation object found): registering it silently
  would put a useless model in the Predict dock, so a caller may ask for
  registration only when something was learnt and then offer "register anyway";
* the user **stopped** the run: its best weights so far can be registered as a
  *partial* model, named so (``NAME-partial``) and described with the step it
  stopped at, so that nobody takes it for a finished one.

:func:`register_run` does both from a run folder alone (``config.json``,
``history.json``, ``best.pt``), so the Train dock can register after the
training process has ended.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..atomic import write_json_atomic
from ..models.card import ModelCard
from .config import TrainConfig, TrainingDataError


def learned_nothing(history: list) -> str | None:
    """Why the run's best epoch shows that the model learnt nothing, or ``None``.

    Only validation can tell: without validation metrics this returns ``None``.

    Parameters
    ----------
    history : list of dict
        The run's per-epoch records (``val_f1``, ``val_miou``, ``best``).
    """
    scored = [h for h in history if h.get("val_f1") is not None]
    if not scored:
        return None
    best = max(scored, key=lambda h: (h["val_f1"], h.get("val_miou") or 0.0))
    if best["val_f1"] > 0:
        return None
    miou = best.get("val_miou")
    extra = f", mean IoU {miou:.2f}" if miou is not None else ""
    return (
        f"at its best epoch ({best.get('epoch')}) the model found none of the validation "
        f"objects (F1 0{extra})"
    )


def partial_name(name: str) -> str:
    """The registry name of a stopped run's best-so-far weights."""
    return f"{name}-partial"


def finish_card(
    card: ModelCard,
    cfg: TrainConfig,
    history: list,
    source: dict,
    train_names,
    val_names,
    *,
    overwrite: bool = False,
    partial: bool = False,
) -> ModelCard:
    """The card to register: provenance, metrics, a free name; marked when ``partial``."""
    from .provenance import final_card

    if partial:
        step = history[-1]["step"] if history else 0
        card = dataclasses.replace(
            card,
            name=partial_name(card.name),
            description=(
                f"PARTIAL: {cfg.architecture} training stopped by the user at step {step} "
                f"of {cfg.total_steps}; best weights so far"
            ),
        )
    out = final_card(card, cfg, history, source, train_names, val_names, overwrite)
    if partial:
        out.provenance["partial"] = True
    return out


def register_best(run_dir, card: ModelCard) -> ModelCard:
    """Register ``run_dir/best.pt`` under ``card`` (already finished); write ``card.json``."""
    from ..models.checkpoint import read_weights
    from ..models.registry import register_model

    run_dir = Path(run_dir)
    best = run_dir / "best.pt"
    if not best.is_file():
        raise TrainingDataError(f"{run_dir}: no best weights (best.pt) to register yet.")
    state = read_weights(best, card)
    register_model(state, card, overwrite=True)
    write_json_atomic(run_dir / "card.json", json.loads(card.to_json()))
    return card


def register_run(run_dir, *, overwrite: bool = False, partial: bool = False) -> ModelCard:
    """Register a run's best weights from its folder; return the registered card.

    Parameters
    ----------
    run_dir : path-like
        A run folder written by :func:`~.engine.train` (``config.json`` with the
        run's draft card, ``history.json``, ``best.pt``).
    overwrite : bool
        Replace a registered model of the same name (else a free name is chosen).
    partial : bool
        Register as ``NAME-partial``, described as stopped before its end.
    """
    run_dir = Path(run_dir)
    try:
        meta = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
        draft = ModelCard.from_dict(meta["card"], where=f"{run_dir}/config.json")
        cfg = TrainConfig.from_dict(meta["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainingDataError(
            f"{run_dir}: not a training run folder that can be registered ({type(e).__name__}: {e})."
        ) from None
    card = finish_card(
        draft,
        cfg,
        history,
        meta.get("source") or {},
        meta.get("train_images") or [],
        meta.get("val_images") or [],
        overwrite=overwrite,
        partial=partial,
    )
    return register_best(run_dir, card)
