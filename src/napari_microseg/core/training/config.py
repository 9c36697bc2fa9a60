"""What a training run is asked to do, what it reports while it runs, and what it returns.

:class:`TrainConfig` is the whole recipe of a run (saved as ``config.json`` in the
run folder and copied into the model card's provenance); :class:`TrainEvent` is
what the engine sends to a progress callback (the CLI prints it, the Train dock
plots it); :class:`TrainResult` is what a finished, stopped or resumed run gives
back.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MicrosegError
from .augment import AugmentConfig

ENV_RUNS_DIR = "MICROSEG_RUNS_DIR"

#: Architectures :func:`~.engine.train` can train, with a one-line description.
TRAINABLE = {
    "unet": "U-Net (segmentation-models-pytorch)",
    "unetplusplus": "U-Net++ (segmentation-models-pytorch)",
    "fpn": "FPN (segmentation-models-pytorch)",
    "deeplabv3plus": "DeepLabV3+ (segmentation-models-pytorch)",
    "defectsegnet": "DefectSegNet-style dense encoder-decoder",
    "maskrcnn": "Mask R-CNN instances (torchvision)",
    "yolo-seg": "YOLOv9-style instance segmentation (GELAN, prototype masks)",
    "yolo-seg-tr": "yolo-seg with the texture refinement block (SS304L corrosion study)",
    "promptable": "offline promptable click/box model",
    "sam2": "SAM2 (decoder + prompt encoder, LoRA on the image encoder)",
}


class TrainingDataError(MicrosegError):
    """The training data cannot train the chosen model (said before anything starts)."""


class TrainingStopped(MicrosegError):
    """Raised inside the engine when the caller asked it to stop (caught there)."""


def runs_dir() -> Path:
    """Folder that receives training runs (``$MICROSEG_RUNS_DIR`` or the user data folder)."""
    env = os.environ.get(ENV_RUNS_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-microseg")) / "runs"


@dataclass
class TrainConfig:
    """The recipe of one training run.

    Parameters
    ----------
    name : str
        Registry name of the trained model.
    architecture : str
        Key of :data:`TRAINABLE`.
    params : dict
        Architecture keyword arguments (encoder, depth, widths, ...).
    classes : list of dict
        ``{"id", "name", "color"}`` per defect class (background not listed).
        Empty: taken from the data.
    init_model : str, optional
        Registry name (or weights path) to fine-tune from instead of random weights.
    patch_size, batch_size : int
        Training patch side (px) and patches per step.
    epochs, steps_per_epoch : int
        Length of the run; the learning-rate schedule spans ``epochs * steps_per_epoch``.
    lr, weight_decay, warmup_fraction, grad_clip : float
        AdamW learning rate and decay; linear warm-up over that fraction of the
        steps, then cosine decay; gradient-norm clipping (0: off).
    val_fraction : float
        Share of the images held out for validation when no validation images
        are given (at least one image; 0: no validation).
    kfold : int
        ``> 1``: this run is fold ``fold`` of a k-fold split of the images.
    fold : int
    patience : int
        Early stopping: epochs without a better validation score (0: off).
    oversample : float
        Probability that a patch is centred on a random object rather than drawn
        uniformly.
    augment : AugmentConfig
    loss : str
        ``"ce+dice"`` or ``"ce"`` for semantic models.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
    amp : bool
        Mixed precision on CUDA.
    threads : int
        ``torch.set_num_threads`` for CPU training (0: leave as is).
    seed : int
    max_minutes : float, optional
        Time budget; training stops at the end of the step that uses it up.
    snapshot_minutes : list of float
        Keep a copy of the weights when these many minutes of training are done.
    clock : str
        What the budget, the snapshots and the learning-rate schedule count:
        ``"wall"`` (elapsed time of the training steps) or ``"cpu"`` (this
        process's CPU time in them, so that runs sharing the cores with other
        work get equal compute, as an equal-CPU-time comparison needs).
    adapt_target : list of str
        Unlabelled target-domain image paths for adversarial output-space
        adaptation (AdaptSegNet); empty: off.
    adapt_weight : float
        Weight of the adversarial loss.
    pixel_size_nm : float, optional
        nm/px of the training images (recorded on the model card).
    tile, halo : int
        Inference tiling recorded on the model card.
    """

    name: str = "my-model"
    architecture: str = "unet"
    params: dict = field(default_factory=dict)
    classes: list = field(default_factory=list)
    init_model: str | None = None
    patch_size: int = 256
    batch_size: int = 4
    epochs: int = 20
    steps_per_epoch: int = 50
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    val_fraction: float = 0.2
    kfold: int = 0
    fold: int = 0
    patience: int = 0
    oversample: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: str = "ce+dice"
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    seed: int = 0
    max_minutes: float | None = None
    snapshot_minutes: list = field(default_factory=list)
    clock: str = "wall"
    adapt_target: list = field(default_factory=list)
    adapt_weight: float = 0.001
    pixel_size_nm: float | None = None
    tile: int = 512
    halo: int = 32

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`TrainingDataError` for a setting no run can use."""
        if self.architecture not in TRAINABLE:
            raise TrainingDataError(
                f"Cannot train architecture {self.architecture!r}; choose one of {', '.join(TRAINABLE)}."
            )
        checks = [
            (self.patch_size >= 32, f"patch size {self.patch_size} is below 32 px"),
            (self.batch_size >= 1, "batch size must be at least 1"),
            (
                self.epochs >= 1 and self.steps_per_epoch >= 1,
                "epochs and steps per epoch must be >= 1",
            ),
            (self.lr > 0, "learning rate must be positive"),
            (0 <= self.val_fraction < 1, "validation fraction must be in [0, 1)"),
            (self.kfold == 0 or 0 <= self.fold < self.kfold, f"fold {self.fold} is not in 0..k-1"),
            (self.loss in ("ce+dice", "ce"), f"unknown loss {self.loss!r}"),
            (self.clock in ("wall", "cpu"), f"clock {self.clock!r} is not 'wall' or 'cpu'"),
        ]
        for ok, msg in checks:
            if not ok:
                raise TrainingDataError(f"Training settings: {msg}.")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainEvent:
    """One progress report of a running training.

    ``kind`` is ``"step"`` (after each optimiser step), ``"epoch"`` (after each
    epoch, with validation ``metrics`` and possibly a ``preview``), ``"message"``
    (``text`` for the user, e.g. a halved batch size) or ``"done"``.
    """

    kind: str
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float | None = None
    lr: float | None = None
    batch_size: int | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    metrics: dict = field(default_factory=dict)
    text: str = ""
    preview: object = None

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


@dataclass
class TrainResult:
    """What a run left behind.

    ``stopped`` is true when the caller stopped it (resume with ``resume=True``),
    ``model_name`` is the registry name when the model was registered (a stopped
    run registered with ``register_on_stop`` is named ``NAME-partial``).
    """

    run_dir: Path
    best_weights: Path | None
    last_checkpoint: Path
    history: list
    stopped: bool = False
    early_stopped: bool = False
    model_name: str | None = None
    card: object = None
    #: Why the run was not registered although asked to (see ``register="if-learned"``).
    not_registered: str | None = None
