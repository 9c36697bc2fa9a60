"""Train dock: fine-tune a segmentation model on the labels you made, in the background.

Thin over :mod:`napari_microseg.core.training`: the dock gathers (image, labels)
layer pairs or dataset folders and the settings of a
:class:`~napari_microseg.core.training.TrainConfig`, runs
:func:`~napari_microseg.core.training.train` in a child process
(:class:`~napari_microseg.gui.training_run.TrainingRun`; the GUI stays usable: you
can keep labelling while it trains), and shows progress with ETA,
live loss and validation curves, messages and an optional preview of the model
on an image. Stop checkpoints the run; Resume continues it. When the run ends
the model is registered and the viewer's ``microseg_models_changed`` event tells
the Predict dock to list it.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from ...core.errors import MicrosegError
from ...core.training import TRAINABLE, AugmentConfig, TrainConfig, check_training_data
from ...core.training.model_setup import classes_for
from ..layer_data import helper_metadata, is_helper_layer
from ..model_events import models_changed_event
from ..plots import TrainCurves
from ..training_run import TrainingRun, layer_train_image, training_threads
from ..workers import alive, start_worker
from .train_sources import TrainSources, section

if TYPE_CHECKING:
    import napari

#: Network settings a new model of each architecture starts with (small enough for a CPU).
DEFAULT_PARAMS = {
    "unet": {"encoder_name": "resnet18", "encoder_depth": 4, "decoder_channels": [128, 64, 32, 16]},
    "unetplusplus": {
        "encoder_name": "resnet18",
        "encoder_depth": 4,
        "decoder_channels": [128, 64, 32, 16],
    },
    "fpn": {"encoder_name": "resnet18", "encoder_depth": 4},
    "deeplabv3plus": {"encoder_name": "resnet18", "encoder_depth": 4},
}
NO_INIT = "(random weights)"
PREVIEW_LAYER = "training preview"
#: Seconds between redraws of the curves while a run goes.
REDRAW_S = 0.5


def init_choices(architecture: str) -> list[str]:
    """Registered models of ``architecture`` that a run can start from."""
    from ...core.models.registry import list_models

    return [
        e.name for e in list_models() if e.card is not None and e.card.architecture == architecture
    ]


def format_eta(seconds) -> str:
    """``"1:05:09"`` / ``"3:20"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def typable(box) -> None:
    """Let the user type a number into a magicgui spin box without it snapping as they type.

    With keyboard tracking a spin box commits every keystroke: deleting the text
    snaps to the minimum and typing "128" into a box holding "32" gives "3228"
    or the maximum. The value is committed on Enter or when the box loses focus.
    """
    box.native.setKeyboardTracking(False)


class TrainWidget(QWidget):
    """Dock widget: layers or folders + settings → a trained, registered model."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.run: TrainingRun | None = None
        self.result = None
        self.error: str | None = None
        #: Steps reported by the current/last run, in order (the curves' x).
        self.steps: list[int] = []
        self._series = {k: [] for k in ("loss", "epoch", "epoch_step", "epoch_loss", "miou", "f1")}
        self._dirty = self._active = False
        #: Train in a thread of this process instead of a child process (tests, debugging).
        self.in_process = False
        self._last_draw = 0.0

        # -- data: pairs and folders (train_sources.py)
        self.data = TrainSources(viewer, self)
        self.image, self.labels = self.data.image, self.data.labels
        self.source_list, self.val_share = self.data.source_list, self.data.val_share
        self.add_pair, self.add_folder_source = self.data.add_pair, self.data.add_folder_source
        # -- model
        self.architecture = ComboBox(label="architecture", choices=list(TRAINABLE), value="unet")
        self.init = ComboBox(label="start from", choices=[NO_INIT])
        self.name = LineEdit(label="name", value="my-unet")
        self.replace = CheckBox(text="replace a model of that name", value=False)
        self.register_on_stop = CheckBox(
            text="on Stop, register the best so far (as NAME-partial)", value=False
        )
        self.register_on_stop.tooltip = (
            "Stop then registers the best weights so far under NAME-partial, marked as a "
            "partial model; Resume still continues the run."
        )
        self.params = LineEdit(label="network", value=json.dumps(DEFAULT_PARAMS["unet"]))
        self.params.tooltip = "Architecture settings (JSON), as on a model card."
        # -- training
        self.patch = SpinBox(label="patch size (px)", min=32, max=4096, step=32, value=256)
        self.patch.tooltip = "Side of the square training patches; a multiple of 32."
        self.batch = SpinBox(label="batch size", min=1, max=256, value=4)
        self.epochs = SpinBox(label="epochs", min=1, max=10000, value=20)
        self.steps_per_epoch = SpinBox(label="steps per epoch", min=1, max=100000, value=50)
        self.lr = FloatSpinBox(label="learning rate", min=1e-6, max=1.0, step=1e-4, value=1e-3)
        self.lr.native.setDecimals(5)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.minutes = FloatSpinBox(label="time budget (min, 0 = none)", min=0, max=1e5, value=0)
        self.augment = CheckBox(
            text="augmentation (flips, rotations, shear, contrast, elastic, noise)", value=True
        )
        self.patience = SpinBox(
            label="early stop patience (epochs, 0 = off)", min=0, max=1000, value=0
        )
        self.preview_every = SpinBox(
            label="preview every N epochs (0 = off)", min=0, max=1000, value=0
        )
        self.preview_every.tooltip = "Show the current model on the visible image (an Image layer)."
        # -- run
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume", enabled=False)
        self.register_anyway = PushButton(text="Register anyway", visible=False)
        self.register_anyway.tooltip = (
            "Register the run's best weights although validation says it learnt nothing."
        )
        for box in (self.patch, self.batch, self.epochs, self.steps_per_epoch, self.minutes):
            typable(box)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.curves = TrainCurves(self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.data.widget)
        layout.addWidget(
            section(
                "Model",
                [self.architecture, self.init, self.name, self.replace, self.register_on_stop],
            )
        )
        layout.addWidget(
            section(
                "Training",
                [
                    self.patch,
                    self.batch,
                    self.epochs,
                    self.steps_per_epoch,
                    self.device,
                    self.minutes,
                ],
            )
        )
        layout.addWidget(
            section(
                "More settings",
                [self.lr, self.augment, self.patience, self.preview_every, self.params],
                expanded=False,
            )
        )
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.resume_button, self.register_anyway):
            buttons.addWidget(b.native)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.curves)
        layout.addStretch()

        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self.poll)
        self.architecture.changed.connect(self._on_architecture)
        self.init.changed.connect(self._on_init)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.resume_button.changed.connect(self.resume)
        self.register_anyway.changed.connect(self.register_unlearned)
        viewer.layers.events.inserted.connect(self.reset_choices)
        self.refresh_init()

    # -- choices ----------------------------------------------------------------------------

    def reset_choices(self, *_):
        """Refresh the layer pickers (they follow the active layer unless the user chose one)."""
        self.data.follower.reset_choices()

    def refresh_init(self, *_):
        """Re-read the registry for models to start from."""
        current = self.init.value
        choices = [NO_INIT, *init_choices(self.architecture.value)]
        self.init.choices = choices
        self.init.value = current if current in choices else NO_INIT

    def _on_architecture(self, *_):
        arch = self.architecture.value
        self.params.value = json.dumps(DEFAULT_PARAMS.get(arch, {}))
        if self.name.value.startswith("my-"):
            self.name.value = f"my-{arch}"
        self.refresh_init()

    def _on_init(self, *_):
        if self.init.value in (None, NO_INIT):
            self.params.value = json.dumps(DEFAULT_PARAMS.get(self.architecture.value, {}))
            return
        from ...core.models.registry import list_models

        card = next((e.card for e in list_models() if e.name == self.init.value), None)
        if card is not None:
            self.params.value = json.dumps(card.params)  # the weights fit only this network

    # -- start ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a run is going (until its worker has finished)."""
        return self._active

    def prepare(self) -> TrainingRun:
        """Snapshot the data and settings into a :class:`TrainingRun`; raise for bad input."""
        from ...core.models.card import valid_name
        from ...core.models.registry import models_dir
        from ...core.training.run_plumbing import default_run_dir

        sources = self.data.sources or []
        if not sources:
            if self.image.value is None or self.labels.value is None:
                raise MicrosegError(
                    "Choose an image and its labels (or add a dataset folder) to train on."
                )
            sources = [
                {
                    "kind": "layers",
                    "image": self.image.value,
                    "labels": self.labels.value,
                    "role": "train",
                }
            ]
        name = self.name.value.strip()
        if not valid_name(name):
            raise MicrosegError(
                f"{name!r} cannot name a model: use letters, digits, '-', '_' or '.'."
            )
        if (models_dir() / name).exists() and not self.replace.value:
            raise MicrosegError(
                f"A model named {name!r} exists; choose another name or tick 'replace'."
            )
        try:
            params = json.loads(self.params.value or "{}")
        except json.JSONDecodeError as e:
            raise MicrosegError(f"Network settings are not valid JSON ({e.msg}).") from None
        train_im, val_im, folders, val_folders = [], [], [], []
        for s in sources:
            if s["kind"] == "folder":
                (folders if s["role"] == "train" else val_folders).append(s["path"])
                continue
            im = layer_train_image(s["image"], s["labels"])
            (train_im if s["role"] == "train" else val_im).append(im)
        if not train_im and not folders:
            raise MicrosegError(
                "Add at least one pair or folder for training, not only for validation."
            )
        if train_im:
            check_training_data(train_im, int(self.patch.value))
        if val_im:
            check_training_data(val_im, 1, what="validation")
        classes_for(TrainConfig(), train_im + val_im)  # one id named two ways: refused now, not in the worker
        config = TrainConfig(
            name=name,
            architecture=self.architecture.value,
            params=params,
            classes=[],  # named by the core from the layers' class tables (conflicts refused)
            init_model=None if self.init.value in (None, NO_INIT) else self.init.value,
            patch_size=int(self.patch.value),
            batch_size=int(self.batch.value),
            epochs=int(self.epochs.value),
            steps_per_epoch=int(self.steps_per_epoch.value),
            lr=float(self.lr.value),
            val_fraction=float(self.val_share.value),
            patience=int(self.patience.value),
            augment=AugmentConfig() if self.augment.value else AugmentConfig.off(),
            device=self.device.value,
            threads=training_threads(),
            max_minutes=float(self.minutes.value) or None,
            pixel_size_nm=next((im.pixel_size_nm for im in train_im if im.pixel_size_nm), None),
        )
        return TrainingRun(
            config=config,
            images=train_im,
            val_images=val_im,
            folders=folders,
            val_folders=val_folders,
            run_dir=default_run_dir(name),
            source={"layers": [im.name for im in train_im + val_im], "from": "napari Train dock"},
            overwrite=bool(self.replace.value),
            preview_image=self._preview_source() if self.preview_every.value else None,
            preview_every=int(self.preview_every.value),
            register="if-learned",
            register_on_stop=bool(self.register_on_stop.value),
        )

    def _preview_source(self):
        """The visible image the preview is drawn on: the topmost visible grey Image layer."""
        from napari.layers import Image

        for layer in reversed(list(self._viewer.layers)):
            if (
                isinstance(layer, Image)
                and layer.visible
                and not is_helper_layer(layer)
                and not layer.rgb
            ):
                data = layer.data[0] if layer.multiscale else layer.data
                if np.ndim(data) == 2:
                    self._preview_of = layer
                    return np.array(data)
        return None

    def start(self, *_):
        """Check the inputs and start a new run in the background; returns the worker or None."""
        if self.running:
            return None
        try:
            run = self.prepare()
        except MicrosegError as e:
            self._say(str(e))
            show_error(str(e))
            return None
        self.run, self.result, self.error = run, None, None
        if run.preview_image is not None:  # the layer is built now, not in the middle of the run
            self._show_preview(np.zeros((1, *run.preview_image.shape), np.float32))
        self._reset_series()
        self._say(f"Training {run.config.name} ({run.config.architecture}) in {run.run_dir}…")
        return self._launch(resume=False)

    def resume(self, *_):
        """Continue the stopped run from its last checkpoint, with its original settings."""
        if self.running or self.run is None or not self.run.resumable:
            return None
        self.result, self.error = None, None
        self._say(f"Resuming {self.run.run_dir.name}…")
        return self._launch(resume=True)

    def stop(self, *_):
        """Checkpoint and stop after the current step."""
        if self.run is not None and self.running:
            self.run.stop()
            self.stop_button.enabled = False
            self._say("Stopping after this step (a checkpoint is written)…")

    def _launch(self, resume: bool):
        self._active = True
        self.register_anyway.visible = False
        self.start_button.enabled = self.resume_button.enabled = False
        self.stop_button.enabled = True
        self.progress.setFormat("starting…")
        self.run.in_process = self.in_process
        self.run.start(resume=resume)
        self._timer.start()
        return self.run

    # -- progress -----------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if not alive(self.status):  # the dock was closed while a worker ran
            return
        self.status.setText(text)

    def _reset_series(self):
        self.steps = []
        for v in self._series.values():
            v.clear()
        self.progress.setValue(0)
        self._dirty = True
        self._draw(force=True)

    def poll(self):
        """Show the events the run sent since the last poll (GUI thread, on a timer)."""
        if self.run is None:
            return
        last_step, outcome = None, None
        for kind, e in self.run.drain():
            if kind != "event":
                outcome = kind, e
                continue
            if e.kind == "step":
                self.steps.append(e.step)
                self._series["loss"].append(e.loss)
                last_step = e
            elif e.kind == "epoch":
                self._on_epoch(e)
                last_step = e
            elif e.kind == "message":
                self._say(e.text)
        if last_step is not None:
            self.progress.setValue(int(1000 * last_step.fraction))
            self.progress.setFormat(
                f"step {last_step.step}/{last_step.total_steps} · epoch {last_step.epoch} · "
                f"ETA {format_eta(last_step.eta_s)}"
            )
            self._dirty = True
        self._draw()
        if outcome is not None:
            self._end(*outcome)

    def _on_epoch(self, e) -> None:
        s = self._series
        s["epoch"].append(e.epoch)
        s["epoch_step"].append(e.step)
        s["epoch_loss"].append(np.nan if e.loss is None else e.loss)
        s["miou"].append(e.metrics.get("miou", np.nan))
        s["f1"].append(e.metrics.get("f1", np.nan))
        if e.preview is not None:
            self._show_preview(e.preview)

    def _draw(self, force: bool = False):
        now = time.perf_counter()
        if not self._dirty or (not force and now - self._last_draw < REDRAW_S):
            return
        s = self._series
        self.curves.show_history(
            self.steps, s["loss"], s["epoch"], s["epoch_step"], s["epoch_loss"], s["miou"], s["f1"]
        )
        self._dirty, self._last_draw = False, now

    def _show_preview(self, preview) -> None:
        """Foreground probability (or instances) of the current model, as an 8-bit Image layer."""
        arr = np.asarray(preview)
        fg = arr.max(axis=0) if arr.ndim == 3 else (arr > 0)
        data = np.clip(np.asarray(fg, np.float32) * 255, 0, 255).astype(np.uint8)
        if PREVIEW_LAYER in self._viewer.layers:
            self._viewer.layers[PREVIEW_LAYER].data = data
            return
        src = getattr(self, "_preview_of", None)
        kw = {"scale": src.scale[-2:], "translate": src.translate[-2:]} if src is not None else {}
        kw["metadata"] = helper_metadata(src.name if src is not None else None, "training preview")
        self._viewer.add_image(
            data,
            name=PREVIEW_LAYER,
            colormap="magma",
            contrast_limits=(0, 255),
            opacity=0.5,
            blending="additive",
            **kw,
        )

    # -- end ----------------------------------------------------------------------------------

    def _end(self, kind: str, value) -> None:
        if kind == "result":
            self._on_returned(value)
        else:
            self._on_errored(value)
            show_error(f"Training failed: {value}")
        self._on_finished()

    def _on_returned(self, result):
        self.result = result
        if result.stopped:
            step = self.steps[-1] if self.steps else "?"
            if result.model_name:
                self._say(
                    f"Stopped at step {step}; the best weights so far are registered as the "
                    f"partial model {result.model_name!r}. Resume continues {result.run_dir.name}."
                )
                models_changed_event(self._viewer)(name=result.model_name)
                self.refresh_init()
            elif self.run is not None and self.run.register_on_stop:
                self._say(
                    f"Stopped at step {step} before the first validation: nothing to register "
                    f"yet. Resume continues {result.run_dir.name}."
                )
            else:
                self._say(f"Stopped at step {step}; Resume continues {result.run_dir.name}.")
            return
        if result.not_registered:
            text = (
                f"Not registered: {result.not_registered}. Label more objects or train longer; "
                "'Register anyway' keeps it."
            )
            self._say(text)
            show_warning(text)
            self.register_anyway.visible = True
            return
        best = next((h for h in reversed(result.history) if h.get("best")), {})
        score = (
            f" (validation mIoU {best['val_miou']:.2f}, F1 {best['val_f1']:.2f})"
            if "val_f1" in best
            else ""
        )
        self._say(f"Registered model {result.model_name!r}{score}; it is in the Predict dock.")
        models_changed_event(self._viewer)(name=result.model_name)
        self.refresh_init()

    def register_unlearned(self, *_):
        """Register the last run although it learnt nothing (the user asked); returns the worker."""
        from ...core.training.registration import register_run

        if self.result is None or not self.result.not_registered:
            return None
        self.register_anyway.enabled = False
        self._say("Registering…")
        return start_worker(
            register_run,
            self.result.run_dir,
            overwrite=bool(self.replace.value),
            on_returned=self._on_registered,
            on_errored=lambda e: self._say(f"Not registered: {e}"),
            on_finished=self._after_register,
        )

    def _on_registered(self, card):
        self.result.model_name, self.result.card, self.result.not_registered = card.name, card, None
        self.register_anyway.visible = False
        self._say(f"Registered model {card.name!r} (it learnt nothing on validation).")
        models_changed_event(self._viewer)(name=card.name)
        self.refresh_init()

    def _after_register(self, *_):
        self.register_anyway.enabled = True
        self.register_anyway.visible = bool(self.result and self.result.not_registered)

    def _on_errored(self, exc):
        self.error = str(exc)
        self._say(f"Training failed: {exc}")

    def _on_finished(self):
        self._active = False
        self._timer.stop()
        self._draw(force=True)
        stopped = self.result is not None and self.result.stopped
        self.start_button.enabled = True
        self.stop_button.enabled = False
        self.resume_button.enabled = bool(
            self.run is not None and self.run.resumable and (stopped or self.error)
        )
        if self.result is not None and not stopped:
            self.progress.setFormat("done")
        elif stopped:
            self.progress.setFormat("stopped")
        else:
            self.progress.setFormat("failed")
