"""The model card of a finished training run: provenance, metrics, a free name."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import platform

from ..models.card import ModelCard


def free_name(name: str, overwrite: bool = False) -> str:
    """``name``, or ``name-2``, ``name-3``... when a model of that name is registered."""
    from ..models.registry import list_models, list_prompt_models

    if overwrite:
        return name
    taken = {e.name for e in list_models(include_broken=True) + list_prompt_models()}
    if name not in taken:
        return name
    i = 2
    while f"{name}-{i}" in taken:
        i += 1
    return f"{name}-{i}"


def best_metrics(history: list) -> dict:
    """Validation metrics of the best epoch (``val_`` prefix dropped)."""
    best = [h for h in history if h.get("best")]
    rec = best[-1] if best else (history[-1] if history else {})
    out = {k[4:]: v for k, v in rec.items() if k.startswith("val_")}
    if rec:
        out["epoch"] = rec.get("epoch")
        out["step"] = rec.get("step")
    return out


def final_card(
    card: ModelCard,
    cfg,
    history: list,
    source: dict,
    train_names,
    val_names,
    overwrite: bool = False,
) -> ModelCard:
    """``card`` with a free name, the run's provenance and its best validation metrics."""
    return dataclasses.replace(
        card,
        name=free_name(card.name, overwrite),
        description=card.description or f"{cfg.architecture} trained with napari-microseg",
        provenance=run_provenance(cfg, history, source, train_names, val_names),
        metrics=best_metrics(history),
    )


def run_provenance(cfg, history: list, source: dict, train_names, val_names) -> dict:
    """Who trained what on which data, how long: the ``provenance`` of a model card."""
    import torch

    from ... import __version__

    return {
        "trained_by": f"napari-microseg {__version__}",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": cfg.to_dict(),
        "data": {
            **(source or {}),
            "train_images": list(train_names),
            "validation_images": list(val_names),
        },
        "steps": history[-1]["step"] if history else 0,
        "training_seconds": history[-1]["elapsed_s"] if history else 0.0,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
