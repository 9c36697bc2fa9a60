"""What every training run shares: its folder name, learning-rate schedule, progress, checkpoints.

Used by the segmentation engine (:mod:`.engine`) and the prompt-model fine-tunes
(:mod:`.sam2_finetune`, :mod:`.prompt_models`), so that none of them imports another for it.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import torch

from ..safeload import load_torch_data, write_with_digest
from .config import TrainConfig, TrainingDataError, runs_dir

#: ``format`` of a training checkpoint.
CHECKPOINT_FORMAT = "napari-microseg-training-checkpoint"


def default_run_dir(name: str) -> Path:
    """A fresh run folder for ``name`` under :func:`~.config.runs_dir`."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return runs_dir() / f"{name}-{stamp}"


def lr_factor(progress: float, warmup_fraction: float) -> float:
    """Learning-rate multiplier at ``progress`` (0..1) of a run.

    Linear warm-up from 10 % over ``warmup_fraction``, then cosine decay to 1 %.
    """
    if progress < warmup_fraction:
        return 0.1 + 0.9 * progress / warmup_fraction
    q = min(1.0, (progress - warmup_fraction) / max(1e-9, 1 - warmup_fraction))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * q))


def run_progress(step: int, elapsed_s: float, cfg: TrainConfig) -> float:
    """Share of the run done: steps, or the time budget when that is used up sooner."""
    p = step / cfg.total_steps
    if cfg.max_minutes:
        p = max(p, elapsed_s / (cfg.max_minutes * 60))
    return min(1.0, p)


# -- checkpoints ------------------------------------------------------------------------------
#
# A checkpoint is data: tensors and plain containers, read back with
# ``torch.load(weights_only=True)`` (:func:`~..safeload.load_torch_data`), so a
# shared run folder cannot make ``--resume`` run code. Each checkpoint gets a
# ``NAME.sha256.json`` record beside it and is checked against it on resume.


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` with its SHA-256 record beside it."""
    write_with_digest(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``; one-line :class:`~..errors.MicrosegError` otherwise.

    Refused: a file changed since it was written (SHA-256 record), a pickle
    holding anything but tensors and plain data (it is never executed), a
    damaged file, and a file of another kind.
    """
    data = load_torch_data(path, "napari-microseg checkpoint")
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise TrainingDataError(f"{path} is not a napari-microseg training checkpoint.")
    return data
