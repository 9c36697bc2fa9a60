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

import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_json_atomic
from ..device import select_device
from ..models.architectures import build_model, input_multiple
from ..models.card import ModelCard
from ..safeload import plain
from .adapt import OutputAdapter
from .config import TrainConfig, TrainEvent, TrainingDataError, TrainResult
from .data import PatchSampler, check_training_data, split_validation
from .losses import instance_targets, semantic_loss
from .model_setup import classes_for, init_from, make_card
from .rng_state import restore_rng as _restore_rng
from .rng_state import rng_states
from .run_folder import check_run_dir, make_run_dir
from .run_plumbing import CHECKPOINT_FORMAT, default_run_dir, lr_factor, run_progress
from .run_plumbing import load_checkpoint as _load_checkpoint
from .run_plumbing import save_checkpoint as _save_checkpoint
from .validation import score_images

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
    register: bool | str = True,
    overwrite: bool = False,
    preview_image=None,
    preview_every: int = 0,
    source: dict | None = None,
    register_on_stop: bool = False,
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
    register : bool or "if-learned"
        Register the best weights in the model registry when the run ends.
        ``"if-learned"`` registers only when validation shows the model learnt
        something (see :func:`~.registration.learned_nothing`); otherwise the
        result says why in ``not_registered`` and :func:`~.registration.register_run`
        can still register it. ``True`` registers and warns in that case.
    register_on_stop : bool
        When the caller stops the run, register its best weights so far as a
        partial model (``NAME-partial``).
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
            register=bool(register),
            overwrite=overwrite,
            source=source,
        )
    return _Run(config, images, val_images, run_dir, resume, progress, should_stop, source).go(
        register, overwrite, preview_image, preview_every, register_on_stop
    )


class _Run:
    """State of one semantic or Mask R-CNN training run (see :func:`train`)."""

    def __init__(self, cfg, images, val_images, run_dir, resume, progress, should_stop, source):
        self.cfg = cfg
        self.progress = progress or (lambda e: None)
        self.should_stop = should_stop or (lambda: False)
        check_run_dir(run_dir, resume, "last.pt")
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg.name)
        self.resume = resume
        images = list(images)
        if val_images is None:
            images, val_images = split_validation(
                images, cfg.val_fraction, cfg.kfold, cfg.fold, cfg.seed
            )
        self.images, self.val_images = images, list(val_images or [])
        classes = classes_for(cfg, self.images + self.val_images)  # a class seen only in validation too
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
        #: what the budget, snapshots, schedule and data share count (see ``TrainConfig.clock``)
        self.clock = time.process_time if cfg.clock == "cpu" else time.perf_counter
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
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "adapter": self.adapter.state_dict() if self.adapter else None,
            "rng_states": rng_states(self.rng),
            **plain(
                {
                    "config": self.cfg.to_dict(),
                    "card": self.card.to_dict(),
                    "step": self.step,
                    "elapsed": self.elapsed,
                    "history": self.history,
                    "batch_size": self.batch_size,
                    "best_score": self.best_score,
                    "bad_epochs": self.bad_epochs,
                    "snapshots_done": self.snapshots_done,
                }
            ),
        }

    def _restore(self) -> None:
        data = _load_checkpoint(self.run_dir / "last.pt")
        self.model.load_state_dict(data["model"])
        self.opt.load_state_dict(data["optimizer"])
        self.scaler.load_state_dict(data["scaler"])
        if self.adapter and data.get("adapter"):
            self.adapter.load_state_dict(data["adapter"])
        _restore_rng(data, self.rng)
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
            t0 = self.clock()
            ks, imgs, tgts = self.sampler.batch(self.rng, self.batch_size)
            t_data = self.clock() - t0
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
        from ..safeload import write_with_digest

        write_with_digest(
            self.run_dir / "best.pt", lambda t: save_weights(t, self.model, self.card)
        )

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
        from ..safeload import write_with_digest

        for m in self.cfg.snapshot_minutes:
            if m not in self.snapshots_done and self.elapsed >= m * 60:
                write_with_digest(
                    self.run_dir / f"snapshot-{m:g}min.pt",
                    lambda t: save_weights(t, self.model, self.card),
                )
                self.snapshots_done.append(m)

    def go(
        self, register, overwrite, preview_image, preview_every, register_on_stop=False
    ) -> TrainResult:
        cfg = self.cfg
        t_setup = time.perf_counter()
        self._setup()
        make_run_dir(self.run_dir)
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
                    "card": self.card.to_dict(),
                },
            )
        self.log(
            f"Set-up took {time.perf_counter() - t_setup:.1f} s; the time budget counts "
            "training steps only, from now."
        )
        stopped = early = False
        epoch_losses, data_s, step_s = [], 0.0, 0.0
        while self.step < cfg.total_steps:
            if cfg.max_minutes and self.elapsed >= cfg.max_minutes * 60:
                break
            t0 = self.clock()
            loss, t_data = self._train_step()
            dt = self.clock() - t0
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
        self._register_result(result, register, overwrite, register_on_stop)
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

    def _register_result(self, result, register, overwrite, register_on_stop) -> None:
        """Register per the caller's wish (see :func:`train`); fill ``result``."""
        from .registration import learned_nothing

        if result.stopped:
            if register_on_stop and result.best_weights is not None:
                result.card = self._register(overwrite, partial=True)
                result.model_name = result.card.name
            return
        if not register:
            return
        reason = learned_nothing(self.history)
        if reason and register == "if-learned":
            result.not_registered = reason
            self.log(f"Not registered: {reason}. Register it anyway only if you mean to.")
            return
        if reason:
            self.log(f"Warning: {reason}; registering it anyway.")
        result.card = self._register(overwrite)
        result.model_name = result.card.name

    def _register(self, overwrite: bool, partial: bool = False) -> ModelCard:
        from .registration import finish_card, register_best

        card = finish_card(
            self.card,
            self.cfg,
            self.history,
            self.source,
            [im.name for im in self.images],
            [im.name for im in self.val_images],
            overwrite=overwrite,
            partial=partial,
        )
        register_best(self.run_dir, card)
        self.log(f"Registered {'partial ' if partial else ''}model {card.name!r}.")
        return card
