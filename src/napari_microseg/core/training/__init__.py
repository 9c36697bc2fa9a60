"""Training segmentation models on labelled micrographs (pure Python, no GUI).

:func:`~.engine.train` trains, stops, resumes and registers a model from
:class:`~.data.TrainImage` s (napari layers or folders, see
:func:`~.data.load_folder`) following a :class:`~.config.TrainConfig`.
"""

from .augment import AugmentConfig
from .config import (
    TRAINABLE,
    TrainConfig,
    TrainEvent,
    TrainingDataError,
    TrainResult,
    runs_dir,
)
from .data import TrainImage, check_training_data, load_folder, split_validation
from .engine import train

__all__ = [
    "TRAINABLE",
    "AugmentConfig",
    "TrainConfig",
    "TrainEvent",
    "TrainImage",
    "TrainResult",
    "TrainingDataError",
    "check_training_data",
    "load_folder",
    "runs_dir",
    "split_validation",
    "train",
]
