"""Predict dock: run a registered model on an image, at any size, as layers.

The network runs once, in a worker with progress and cancel; its probabilities
are kept so that thresholds, minimum size and clean-up re-run live without the
network. Cancelling leaves every existing layer untouched: layers are written
only when a run succeeds.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    PushButton,
    SpinBox,
)
from qtpy.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget

from ...core.errors import MicrosegError
from ..layer_data import labels_layer, layer_pixel_size
from ..layer_follow import LayerFollower, layer_picker
from ..model_events import models_changed_event
from ..workers import start_worker

if TYPE_CHECKING:
    import napari


def model_choices() -> tuple[list[str], str]:
    """Registered semantic/instance models, and a note on broken ones."""
    from ...core.models.registry import list_models

    entries = list_models(include_broken=True)
    good = [e.name for e in entries if e.card is not None and e.card.task in ("semantic", "instance")]
    broken = [f"{e.name}: {e.error}" for e in entries if e.card is None]
    return good, "; ".join(broken)


def run_model(name: str, image, pixel_size, *, tile=None, halo=None, tta=False, progress=None, cancel=None):
    """Load ``name`` and predict ``image``; returns ``(card, probabilities or InstancePrediction)``.

    The network runs through :func:`napari_microseg.core.batch.process.predict`, as in a batch.
    """
    from ...core.batch.process import predict
    from ...core.models.registry import load_model

    model, card = load_model(name)
    return card, predict(model, card, image, pixel_size, tile=tile, halo=halo, tta=tta,
                         progress=progress, cancel=cancel)


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as uint16 when its ids fit in half that range, else unchanged.

    napari puts uint8/uint16 labels into its texture as they are, but hashes wider
    integers to uint16 on every refresh (about 0.1 s per 2048² slice, in the GUI thread).
    Half the range stays free for ids added by corrections.
    """
    if labels.dtype.kind not in "iu" or labels.dtype.itemsize <= 2:
        return labels
    if labels.size and (labels.min() < 0 or labels.max() >= 2**15):
        return labels
    return labels.astype(np.uint16)


class PredictWidget(QWidget):
    """Dock widget: model → probability, semantic and instance layers."""

    #: Widget label of each post-processing field, for the validator's messages.
    SETTING_NAMES = {"thresholds": "threshold", "min_size": "min size", "instances": "instances",
                     "fill_holes": "fill holes", "open_radius": "opening radius",
                     "smooth_sigma": "smooth boundaries σ"}

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self._cancel = False
        self.card = self.prob = self.instances = None
        self._image_layer = None
        self.thresholds: dict[int, float] = {}
        self._post_busy = self._post_dirty = self._post_probabilities = False
        #: Number of times the output layers were (re)written.
        self.updates = 0
        names, broken = model_choices()
        self.image = layer_picker(viewer, "Image", "image")  # no helper layers; follows the active image
        self.model = ComboBox(label="model", choices=names or ["(no model registered)"])
        self.import_button = PushButton(text="Import model file…")
        self.tile = SpinBox(label="tile (0 = model card)", min=0, max=8192, step=64, value=0)
        self.halo = SpinBox(label="halo (0 = model card)", min=0, max=1024, value=0)
        self.tta = CheckBox(text="test-time augmentation (8 flips/rotations)", value=False)
        self.run_button = PushButton(text="Run model")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.klass = ComboBox(label="threshold of class", choices=[])
        self.threshold = FloatSpinBox(label="threshold", min=0.0, max=1.0, step=0.05, value=0.5)
        self.min_size = FloatSpinBox(label="min size (nm², px if uncalibrated)", min=0, max=1e9, value=0)
        self.method = ComboBox(label="instances", choices=["cc", "watershed"], value="cc")
        self.fill = CheckBox(text="fill holes", value=False)
        self.open_r = SpinBox(label="opening radius (px)", min=0, max=20, value=0)
        self.smooth = FloatSpinBox(label="smooth boundaries (σ px)", min=0, max=10, step=0.5, value=0)
        self.recipe_button = PushButton(text="Save batch recipe…", enabled=False)
        #: Tile, halo and TTA of the run whose outputs are shown (recorded in recipes).
        self.inference: dict = {}
        self.params = Container(widgets=[
            self.image, self.model, self.import_button, self.tile, self.halo, self.tta, self.run_button,
            self.cancel_button, self.klass, self.threshold, self.min_size, self.method, self.fill,
            self.open_r, self.smooth, self.recipe_button,
        ])
        self.status = QLabel(("Broken models: " + broken) if broken else "")
        #: The warning of the last run when its image had no pixel size, else None.
        self.uncalibrated_warning: str | None = None
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.params.native)
        layout.addWidget(self.status)
        layout.addStretch()
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self._on_cancel)
        self.import_button.changed.connect(self._on_import)
        self.recipe_button.changed.connect(self._on_save_recipe)
        self.klass.changed.connect(self._on_class)
        self.threshold.changed.connect(self._on_threshold)
        for w in (self.min_size, self.method, self.fill, self.open_r, self.smooth):
            w.changed.connect(self.update_outputs)
        self._follow = LayerFollower(viewer, image=self.image)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        # A model trained (or imported) by another dock of this viewer appears at once.
        models_changed_event(viewer).connect(self.refresh_models)

    def reset_choices(self, *_):
        """Refresh the image picker (it follows the active layer unless the user chose one)."""
        self._follow.reset_choices()

    def refresh_models(self, *_):
        """Re-read the model registry, keeping the chosen model when it is still there."""
        names, broken = model_choices()
        current = self.model.value
        self.model.choices = names or ["(no model registered)"]
        if current in names:
            self.model.value = current
        self.status.setText(("Broken models: " + broken) if broken else "")

    def showEvent(self, event):
        """Re-read the registry whenever the dock comes into view (e.g. after ``microseg train``)."""
        self.refresh_models()
        super().showEvent(event)

    def _on_import(self, *_):
        path, _ = QFileDialog.getOpenFileName(self, "Import a model", "", "napari-microseg model (*.zip)")
        if path:
            from ...core.models.registry import import_model

            try:
                card = import_model(path)
            except MicrosegError as e:
                self.status.setText(str(e))
                return
            self.refresh_models()
            self.model.value = card.name

    def _on_cancel(self, *_):
        self._cancel = True

    def run(self, *_):
        """Run the chosen model on the chosen image in a worker."""
        from napari.utils.notifications import show_error

        layer = self.image.value
        if layer is None or self.model.value not in model_choices()[0]:
            show_error("Choose an image and a registered model.")
            return None
        from ...core.models.inference import check_inference_args

        try:  # 0 = the card's
            check_inference_args(self.tile.value or None, self.halo.value or None,
                                 names={"tile": "tile", "halo": "halo"})
        except MicrosegError as e:
            self.status.setText(str(e))
            show_error(str(e))
            return None
        data = layer.data
        ps = layer_pixel_size(layer)
        self._cancel = False
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.setText(f"Running {self.model.value} on {layer.name}…")
        if not ps.calibrated:
            from napari.utils.notifications import show_warning

            self.uncalibrated_warning = (
                f"{layer.name} has no pixel size: it is not resampled to the model's scale and "
                "sizes come out in px. Set the pixel size in the Calibration dock."
            )
            show_warning(self.uncalibrated_warning)
            self.status.setText(self.uncalibrated_warning)
        else:
            self.uncalibrated_warning = None
        inference = {"tile": self.tile.value or None, "halo": self.halo.value or None,
                     "tta": bool(self.tta.value)}

        def done(out):
            self._image_layer = layer
            self.inference = inference
            self.recipe_button.enabled = True
            self.card, result = out
            self.thresholds = {int(k): float(v) for k, v in (self.card.thresholds or {}).items()}
            if self.card.task == "instance":
                self.prob, self.instances = None, result
            else:
                self.prob, self.instances = result, None
            with self.klass.changed.blocked():
                self.klass.choices = [(c["name"], int(c["id"])) for c in self.card.classes]
            self._on_class()
            self.update_outputs(probabilities=True)
            self.status.setText(
                f"{self.card.name} on {layer.name}: done"
                + (" (uncalibrated: sizes in px)." if self.uncalibrated_warning else ".")
            )

        def finished():
            self.run_button.enabled, self.cancel_button.enabled = True, False

        def failed(e):
            self.status.setText(str(e))

        worker = start_worker(
            run_model, self.model.value, data, ps, tile=self.tile.value, halo=self.halo.value,
            tta=self.tta.value, cancel=lambda: self._cancel, on_returned=done, on_finished=finished,
            on_errored=failed, progress_bar={"desc": f"Predicting with {self.model.value}"},
        )
        return worker

    def recipe(self):
        """A batch :class:`~napari_microseg.core.batch.Recipe` of the shown run and settings."""
        from ...core.batch import InferenceSettings, Recipe

        if self.card is None:
            raise MicrosegError("Run the model first: a recipe records the model and settings of a run.")
        return Recipe.for_model(self.card.name, inference=InferenceSettings(**self.inference),
                                postprocess=self.postprocess_settings(),
                                provenance={"saved_from": "Predict dock"})

    def _on_save_recipe(self, *_):
        from .batch import save_recipe_dialog

        save_recipe_dialog(self, self.recipe)

    def _on_class(self, *_):
        if self.klass.value is None:
            return
        with self.threshold.changed.blocked():
            self.threshold.value = self.thresholds.get(int(self.klass.value), 0.5)

    def _on_threshold(self, *_):
        if self.klass.value is None:
            return
        self.thresholds[int(self.klass.value)] = float(self.threshold.value)
        self.update_outputs()

    def postprocess_settings(self):
        """The post-processing settings gathered from the widgets."""
        from ...core.models.postprocess import PostprocessSettings

        s = PostprocessSettings()
        ps = layer_pixel_size(self._image_layer) if self._image_layer is not None else None
        s.thresholds = dict(self.thresholds) if self.thresholds else 0.5
        s.min_size = float(self.min_size.value)
        s.min_size_unit = "nm2" if ps is not None and ps.calibrated else "px"
        s.instances, s.fill_holes = self.method.value, bool(self.fill.value)
        s.open_radius, s.smooth_sigma = int(self.open_r.value), float(self.smooth.value)
        return s

    def update_outputs(self, *_, probabilities: bool = False):
        """Re-run post-processing on the kept probabilities (in a worker; no network run).

        Changes made while one update runs are coalesced into one more update.
        Returns the worker, or ``None`` when nothing was started.
        """
        if self.card is None or self._image_layer is None:
            return None
        if self._post_busy:
            self._post_dirty = True
            self._post_probabilities |= probabilities
            return None
        from ...core.models.postprocess import postprocess

        img, card = self._image_layer, self.card
        ps = layer_pixel_size(img)
        settings = self.postprocess_settings()
        shape = self.prob.shape[1:] if self.prob is not None else self.instances.labels.shape
        try:
            settings.validate(where="", names=self.SETTING_NAMES, image_shape=shape)
        except MicrosegError as e:  # shown instead of running; the layers stay as they are
            self.status.setText(str(e))
            return None
        self._post_busy = True

        def work():
            if self.instances is not None:
                out = self.instances.labels, self.instances.instance_classes, None
            else:
                res = postprocess(self.prob, card.class_ids, settings, ps)
                out = res.labels, res.instance_classes, res.semantic
            # Layer data (features tables included) is built here, off the GUI thread.
            return self._layer_data(*out, settings=settings, probabilities=probabilities)

        result = []

        def finished():
            # Layers are written a step per event-loop turn; the update ends after the last.
            if result:
                self._write_layers(result[0], then=self._end_update)
            else:
                self._end_update(written=False)

        return start_worker(work, on_returned=result.append, on_finished=finished)

    def _end_update(self, written: bool = True):
        if written:
            self.updates += 1
        self._post_busy = False
        if self._post_dirty:
            again, self._post_dirty, self._post_probabilities = self._post_probabilities, False, False
            self.update_outputs(probabilities=again)

    def _layer_data(self, labels, inst, semantic, *, settings, probabilities: bool) -> list[tuple]:
        """``LayerDataTuple`` items for the outputs (pure numpy/pandas: worker-safe)."""
        img, card = self._image_layer, self.card
        ps = layer_pixel_size(img)
        classes = card.class_table()
        prov = {"model": {"name": card.name, "version": card.version, "architecture": card.architecture},
                "postprocess": settings.to_dict(), "inference": dict(self.inference), "image": img.name}
        labels = compact_labels(labels)
        out = [labels_layer(labels, instance_classes=inst, classes=classes, pixel_size=ps,
                            name=f"{img.name} {card.name} instances", metadata={"provenance": prov})]
        if semantic is not None:
            semantic = compact_labels(semantic)
            out.append(labels_layer(semantic, pixel_size=ps, classes=classes,
                                    instance_classes={int(c): int(c) for c in np.unique(semantic) if c},
                                    name=f"{img.name} {card.name} classes"))
        if probabilities and self.prob is not None:
            for k, c in enumerate(card.classes):
                out.append((self.prob[k], dict(name=f"{img.name} P({c['name']})", scale=img.scale[-2:],
                                               translate=img.translate[-2:], colormap="magma",
                                               contrast_limits=(0.0, 1.0), opacity=0.5, visible=False,
                                               metadata={"probability": True, "source_image": img.name}),
                            "image"))
        return out

    def _write_layers(self, layer_data: list[tuple], then) -> None:
        """Write ``layer_data`` into the viewer, one short step per event-loop turn, then ``then()``.

        Adding a 2048² layer costs napari about 100 ms of GUI-thread work on software
        OpenGL (vispy visuals, overlay visuals, layer controls), so each layer is its own
        turn: an existing layer gets its data replaced; a new one is built in one turn, added
        in the next, and the visuals of its overlays (the Labels paint and polygon tools,
        which napari creates only once an overlay is visible) follow one per turn.
        """
        from qtpy.QtCore import QTimer

        queue = deque(partial(self._write_layer, *item) for item in layer_data)

        def step():
            if not queue:
                then()
                return
            more = queue.popleft()()
            queue.extendleft(reversed(more or []))
            QTimer.singleShot(0, step)

        step()

    def _write_layer(self, data, kwargs: dict, kind: str) -> list | None:
        """Replace the data of the layer named ``kwargs["name"]``, or build it: returns further steps."""
        from napari.layers import Layer

        if kwargs["name"] in self._viewer.layers:
            layer = self._viewer.layers[kwargs["name"]]
            layer.data = data
            for key in ("features", "metadata"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            return None
        layer = Layer.create(data, dict(kwargs), kind)
        deferred = [o for o in layer._overlays.values() if o.visible]
        for overlay in deferred:
            overlay.visible = False

        def show(overlay):
            overlay.visible = True

        return [partial(self._viewer.layers.append, layer)] + [partial(show, o) for o in deferred]
