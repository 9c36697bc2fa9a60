"""The training engine: train, stop, resume and register segmentation models.

:func:`train` runs one :class:`~.config.TrainConfig` over labelled
:class:`~.data.TrainImage` s. It writes into its run folder, atomically:

``config.json``
    The recipe (and where the data came from).
``last.pt``
    Model, optimiser, AMP scaler, random-generator states, step,
    history; written after every epoch and when the caller stops the run, so a
    killed process loses at most the current epoch and ``resume=True``
    continues exactly where the checkpoint was taken.
``best.pt``
    Weights (model-registry format) of the epoch with the best validation
    score (instance F1 at IoU 0.3, then pixel mIoU); the last weights when
    there is no validation.
``history.json``
    One record per epoch: loss, learning rate, validation metrics, time.

When the run ends (not when it is stopped) the best weights are registered
in the model registry with a model card holding the provenance and the
validation metrics, so the Predict dock and ``microseg predict`` find them.
The promptable model and SAM2 have their own loops
(:mod:`.promptable_finetune`, :mod:`.sam2_finetune`) behind the same call.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, write_json_atomic
from ..device import select_device
from ..models.architectures import build_model, input_multiple
from ..models.card import ModelCard
from .adapt import OutputAdapter
from .config import TrainConfig, TrainEvent, TrainingDataError, TrainResult, runs_dir
from .data import PatchSampler, check_training_data, split_validation
from .losses import instance_targets, semantic_loss
from .model_setup import classes_for, init_from, make_card
from .validation import score_images

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


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def _load_checkpoint(path: Path) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # damaged file
        raise TrainingDataError(f"{path}: the training checkpoint cannot be read ({e}).") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise TrainingDataError(f"{path} is not a napari-microseg training checkpoint.")
    return data


# -- the run -------------------------------------------------------------------------------


def train(
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
    preview_image=None,
    preview_every: int = 0,
    source: dict | None = None,
) -> TrainResult:
    """Train (or resume) a model; register it when the run ends.

    Parameters
    ----------
    config : TrainConfig
    images : list of TrainImage
        Labelled images; a validation share is split off unless ``val_images``
        is given (see ``config.val_fraction`` / ``kfold``).
    val_images : list of TrainImage, optional
    run_dir : path-like, optional
        Run folder (a new one under :func:`~.config.runs_dir` by default). With
        ``resume=True`` the run continues from ``run_dir/last.pt``.
    progress : callable, optional
        Receives :class:`~.config.TrainEvent` s.
    should_stop : callable, optional
        Polled after every step; when it returns True the run saves a
        checkpoint and returns with ``stopped=True``.
    register : bool
        Register the best weights in the model registry when the run ends.
    overwrite : bool
        Replace a registered model of the same name.
    preview_image : ndarray, optional
        Every ``preview_every`` epochs its class probabilities are sent as
        ``TrainEvent.preview``.
    source : dict, optional
        Where the data came from (recorded in the card's provenance).

    Returns
    -------
    TrainResult
    """
    if config.architecture in ("promptable", "sam2"):
        from . import promptable_finetune, sam2_finetune

        impl = promptable_finetune if config.architecture == "promptable" else sam2_finetune
        return impl.finetune(
            config,
            images,
            val_images,
            run_dir=run_dir,
            resume=resume,
            progress=progress,
            should_stop=should_stop,
            register=register,
            overwrite=overwrite,
            source=source,
        )
    return _Run(config, images, val_images, run_dir, resume, progress, should_stop, source).go(
        register, overwrite, preview_image, preview_every
    )


class _Run:
    """State of one semantic or Mask R-CNN training run (see :func:`train`)."""

    def __init__(self, cfg, images, val_images, run_dir, resume, progress, should_stop, source):
        self.cfg = cfg
        self.progress = progress or (lambda e: None)
        self.should_stop = should_stop or (lambda: False)
        if resume:
            if run_dir is None or not (Path(run_dir) / "last.pt").is_file():
                raise TrainingDataError(f"Nothing to resume: {run_dir} has no last.pt checkpoint.")
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg.name)
        self.resume = resume
        images = list(images)
        if val_images is None:
            images, val_images = split_validation(
                images, cfg.val_fraction, cfg.kfold, cfg.fold, cfg.seed
            )
        self.images, self.val_images = images, list(val_images or [])
        classes = classes_for(cfg, self.images)
        check_training_data(self.images, cfg.patch_size, [c["id"] for c in classes])
        if self.val_images:
            check_training_data(self.val_images, 1, [c["id"] for c in classes], what="validation")
        self.card = make_card(cfg, classes)
        self.instance = self.card.task == "instance"
        self.source = source or {}

    def log(self, text: str) -> None:
        self.progress(TrainEvent("message", text=text))

    # -- setup ------------------------------------------------------------------------------

    def _setup(self):
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        torch.manual_seed(cfg.seed)
        self.device = select_device(cfg.device)
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.model = build_model(self.card)
        multiple = input_multiple(self.model)
        if cfg.patch_size % multiple:
            raise TrainingDataError(
                f"Patch size {cfg.patch_size} must be a multiple of {multiple} for this model."
            )
        if cfg.init_model and not self.resume:
            init_from(self.model, self.card, cfg.init_model, self.log)
        self.model.to(self.device).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.sampler = PatchSampler(
            self.images,
            cfg.patch_size,
            cfg.augment,
            cfg.oversample,
            target="instance" if self.instance else "semantic",
        )
        self.adapter = (
            OutputAdapter(cfg, self.card.out_channels, self.device)
            if cfg.adapt_target and not self.instance
            else None
        )
        self.rng = np.random.default_rng(cfg.seed)
        self.step, self.history, self.elapsed = 0, [], 0.0
        self.batch_size = cfg.batch_size
        self.best_score, self.bad_epochs = None, 0
        self.snapshots_done: list = []
        self.channel_of = {c: i + 1 for i, c in enumerate(self.card.class_ids)}
        # class id -> output channel (ids need not be 1..K without gaps)
        self.channel_lut = np.zeros(max(self.card.class_ids) + 1, np.int64)
        for c, ch in self.channel_of.items():
            self.channel_lut[c] = ch

    def _state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "card": self.card.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "adapter": self.adapter.state_dict() if self.adapter else None,
            "rng": _rng_state(self.rng),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "elapsed": self.elapsed,
            "history": self.history,
            "batch_size": self.batch_size,
            "best_score": self.best_score,
            "bad_epochs": self.bad_epochs,
            "snapshots_done": self.snapshots_done,
        }

    def _restore(self) -> None:
        data = _load_checkpoint(self.run_dir / "last.pt")
        self.model.load_state_dict(data["model"])
        self.opt.load_state_dict(data["optimizer"])
        self.scaler.load_state_dict(data["scaler"])
        if self.adapter and data.get("adapter"):
            self.adapter.load_state_dict(data["adapter"])
        self.rng.bit_generator.state = data["rng"]
        torch.set_rng_state(data["torch_rng"])
        for key in (
            "step",
            "elapsed",
            "history",
            "batch_size",
            "best_score",
            "bad_epochs",
            "snapshots_done",
        ):
            setattr(self, key, data[key])
        self.log(f"Resumed {self.run_dir.name} at step {self.step} of {self.cfg.total_steps}.")

    def checkpoint(self) -> None:
        _save_checkpoint(self.run_dir / "last.pt", self._state())
        write_json_atomic(self.run_dir / "history.json", self.history)

    # -- one step ---------------------------------------------------------------------------

    def _loss(self, imgs: np.ndarray, tgts: np.ndarray, ks) -> torch.Tensor:
        x = torch.from_numpy(imgs).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            if self.instance:
                inst = [self.images[k].instance_classes for k in ks]
                targets = instance_targets(tgts, inst, self.channel_of, self.device)
                losses = self.model(x, targets)
                return sum(losses.values())
            logits = self.model(x)
            y = torch.from_numpy(self.channel_lut[tgts]).to(self.device)
            loss = semantic_loss(logits, y, self.cfg.loss)
            if self.adapter:
                loss = loss + self.adapter.generator_loss(self.model, logits, self.rng)
            return loss

    def _train_step(self) -> tuple[float, float]:
        """One optimiser step; returns ``(loss, data seconds)``; halves the batch on CUDA OOM."""
        while True:
            t0 = time.perf_counter()
            ks, imgs, tgts = self.sampler.batch(self.rng, self.batch_size)
            t_data = time.perf_counter() - t0
            lr = self.cfg.lr * lr_factor(
                run_progress(self.step, self.elapsed, self.cfg), self.cfg.warmup_fraction
            )
            for group in self.opt.param_groups:
                group["lr"] = lr
            try:
                self.opt.zero_grad(set_to_none=True)
                loss = self._loss(imgs, tgts, ks)
                self.scaler.scale(loss).backward()
                if self.cfg.grad_clip:
                    self.scaler.unscale_(self.opt)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.scaler.step(self.opt)
                self.scaler.update()
                if self.adapter:
                    self.adapter.discriminator_step()
                return float(loss.detach()), t_data
            except torch.cuda.OutOfMemoryError:
                self._halve_batch()

    def _halve_batch(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self.batch_size <= 1:
            raise TrainingDataError(
                "The device ran out of memory even with batch size 1; choose a smaller patch size."
            )
        self.batch_size //= 2
        self.log(f"Out of device memory: batch size halved to {self.batch_size}; continuing.")

    # -- epochs -----------------------------------------------------------------------------

    def _validate(self) -> dict:
        if not self.val_images:
            return {}
        return score_images(self.model, self.card, self.val_images)

    def _is_better(self, metrics: dict) -> bool:
        score = (metrics.get("f1", 0.0), metrics.get("miou", 0.0)) if metrics else None
        if score is None or any(np.isnan(v) for v in score):
            score = (float(self.step), 0.0)  # no validation: the latest is the best
        if self.best_score is None or tuple(score) > tuple(self.best_score):
            self.best_score = list(score)
            return True
        return False

    def _end_epoch(
        self, epoch: int, losses: list, data_s: float, step_s: float, preview_image, preview_every
    ) -> bool:
        """Validate, keep the best weights, checkpoint; True when early stopping triggers."""
        metrics = self._validate()
        better = self._is_better(metrics)
        if better:
            self._save_best()
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        rec = {
            "epoch": epoch,
            "step": self.step,
            "loss": float(np.mean(losses)) if losses else None,
            "lr": self.opt.param_groups[0]["lr"],
            "batch_size": self.batch_size,
            "elapsed_s": round(self.elapsed, 2),
            "data_fraction": data_s / step_s if step_s else None,
            "best": better,
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        self.history.append(rec)
        self.checkpoint()
        preview = None
        if preview_image is not None and preview_every and epoch % preview_every == 0:
            preview = self._preview(preview_image)
        self.progress(
            TrainEvent(
                "epoch",
                step=self.step,
                total_steps=self.cfg.total_steps,
                epoch=epoch,
                loss=rec["loss"],
                lr=rec["lr"],
                batch_size=self.batch_size,
                elapsed_s=self.elapsed,
                eta_s=self._eta(),
                metrics=metrics,
                preview=preview,
            )
        )
        return bool(self.cfg.patience and self.val_images and self.bad_epochs >= self.cfg.patience)

    def _preview(self, image):
        from ..models.inference import predict_probabilities
        from ..models.instances import predict_instances

        self.model.eval()
        try:
            if self.instance:
                return predict_instances(self.model, self.card, image).labels
            return predict_probabilities(self.model, self.card, image)
        finally:
            self.model.train()

    def _save_best(self) -> None:
        from ..models.checkpoint import save_weights

        with atomic_path(self.run_dir / "best.pt") as tmp:
            save_weights(tmp, self.model, self.card)

    def _eta(self) -> float | None:
        if not self.step:
            return None
        per_step = self.elapsed / self.step
        left = (self.cfg.total_steps - self.step) * per_step
        if self.cfg.max_minutes:
            left = min(left, max(0.0, self.cfg.max_minutes * 60 - self.elapsed))
        return left

    def _snapshot(self) -> None:
        from ..models.checkpoint import save_weights

        for m in self.cfg.snapshot_minutes:
            if m not in self.snapshots_done and self.elapsed >= m * 60:
                with atomic_path(self.run_dir / f"snapshot-{m:g}min.pt") as tmp:
                    save_weights(tmp, self.model, self.card)
                self.snapshots_done.append(m)

    def go(self, register, overwrite, preview_image, preview_every) -> TrainResult:
        cfg = self.cfg
        self._setup()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            self._restore()
        else:
            write_json_atomic(
                self.run_dir / "config.json",
                {
                    "config": cfg.to_dict(),
                    "source": self.source,
                    "train_images": [im.name for im in self.images],
                    "val_images": [im.name for im in self.val_images],
                },
            )
        stopped = early = False
        epoch_losses, data_s, step_s = [], 0.0, 0.0
        while self.step < cfg.total_steps:
            if cfg.max_minutes and self.elapsed >= cfg.max_minutes * 60:
                break
            t0 = time.perf_counter()
            loss, t_data = self._train_step()
            dt = time.perf_counter() - t0
            self.step += 1
            self.elapsed += dt
            epoch_losses.append(loss)
            data_s, step_s = data_s + t_data, step_s + dt
            self._snapshot()
            self.progress(
                TrainEvent(
                    "step",
                    step=self.step,
                    total_steps=cfg.total_steps,
                    epoch=(self.step - 1) // cfg.steps_per_epoch + 1,
                    loss=loss,
                    lr=self.opt.param_groups[0]["lr"],
                    batch_size=self.batch_size,
                    elapsed_s=self.elapsed,
                    eta_s=self._eta(),
                )
            )
            if self.step % cfg.steps_per_epoch == 0:
                if self._end_epoch(
                    self.step // cfg.steps_per_epoch,
                    epoch_losses,
                    data_s,
                    step_s,
                    preview_image,
                    preview_every,
                ):
                    early = True
                    self.log(f"Early stopping: no better validation for {cfg.patience} epochs.")
                    break
                epoch_losses, data_s, step_s = [], 0.0, 0.0
            if self.should_stop():
                stopped = True
                self.checkpoint()
                self.log(f"Stopped at step {self.step}; resume continues from {self.run_dir}.")
                break
        if not stopped and self.step % cfg.steps_per_epoch:
            self._end_epoch(
                self.step // cfg.steps_per_epoch + 1, epoch_losses, data_s, step_s, None, 0
            )
        result = TrainResult(
            self.run_dir,
            self.run_dir / "best.pt" if (self.run_dir / "best.pt").is_file() else None,
            self.run_dir / "last.pt",
            self.history,
            stopped=stopped,
            early_stopped=early,
        )
        if not stopped and register:
            result.card = self._register(overwrite)
            result.model_name = result.card.name
        self.progress(
            TrainEvent(
                "done",
                step=self.step,
                total_steps=cfg.total_steps,
                elapsed_s=self.elapsed,
                text="stopped" if stopped else "finished",
            )
        )
        return result

    def _register(self, overwrite: bool) -> ModelCard:
        from ..models.checkpoint import read_weights
        from ..models.registry import register_model
        from .provenance import final_card

        card = final_card(
            self.card,
            self.cfg,
            self.history,
            self.source,
            [im.name for im in self.images],
            [im.name for im in self.val_images],
        )
        state = read_weights(self.run_dir / "best.pt", self.card)
        register_model(state, card, overwrite=overwrite)
        write_json_atomic(self.run_dir / "card.json", json.loads(card.to_json()))
        self.log(f"Registered model {card.name!r}.")
        return card
