"""Checks on a run folder before a training run writes into it or resumes from it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .config import TrainingDataError

#: Files that mark a folder as a training run folder.
RUN_FILES = ("config.json", "last.pt", "checkpoint.pt")
#: Files whose loss a new run in the same folder would cause (checkpoints, weights).
WORK_FILES = ("last.pt", "checkpoint.pt", "best.pt", "best_delta.pt", "best_weights.pt",
              "weights.pt")


def is_run_folder(folder) -> bool:
    """Whether ``folder`` holds a training run (its ``config.json`` or a checkpoint)."""
    folder = Path(folder)
    return folder.is_dir() and any((folder / f).is_file() for f in RUN_FILES)


def check_run_dir(run_dir, resume: bool, checkpoint: str = "last.pt") -> None:
    """Raise :class:`~.config.TrainingDataError` unless a run may use ``run_dir``.

    Resuming needs a folder holding ``checkpoint``. A new run needs a new or
    empty folder, or the folder of a run that ended before its first
    checkpoint; a folder of other files, or a run's checkpoints, is never
    overwritten. ``None`` (a fresh default folder) is accepted.
    """
    if resume:
        if run_dir is None:
            raise TrainingDataError("Nothing to resume: no run folder was given.")
        folder = Path(run_dir)
        if not folder.is_dir():
            raise TrainingDataError(f"Nothing to resume: {run_dir} is not a run folder.")
        if not (folder / checkpoint).is_file():
            raise TrainingDataError(
                f"Nothing to resume: {run_dir} has no {checkpoint} checkpoint "
                "(not a training run folder of this model type)."
            )
        return
    if run_dir is None:
        return
    folder = Path(run_dir)
    if folder.exists() and not folder.is_dir():
        raise TrainingDataError(f"Run folder {run_dir} exists and is not a folder; choose another.")
    if folder.is_dir() and any(folder.iterdir()):
        if any((folder / f).is_file() for f in WORK_FILES):
            raise TrainingDataError(
                f"Run folder {run_dir} already holds a training run; resume it or choose a new "
                "folder."
            )
        if is_run_folder(folder):  # a run that ended before its first checkpoint: start again
            return
        raise TrainingDataError(
            f"Run folder {run_dir} is not empty and is not a training run; choose a new or "
            "empty folder."
        )


def make_run_dir(run_dir) -> Path:
    """Create ``run_dir`` (parents too) and make sure files can be written in it."""
    folder = Path(run_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise TrainingDataError(
            f"Cannot write to the run folder {run_dir} ({e.strerror or e}); choose another folder."
        ) from None
    return folder
