"""Label dock: click, box, scribble and lasso prompts to classed instance labels; edit objects.

A thin shell around :class:`~napari_microseg.gui.labeling.LabelingController`:
it picks the image, the target Labels layer, the model and the class, and
offers commit/undo, box batches, segment-everything and the adaptation of the
live promptable model to the committed objects (:mod:`..label_adapt`). The model list holds
only models that can really run: SAM2 when its weights are found, the offline
promptable model when installed, fine-tuned promptable and SAM2 models from
the model folder (``microseg train --arch promptable|sam2``; a SAM2 one when
its base weights are here), and the classical Otsu-flood baseline. Random
weights are never offered.

The dock follows the layer the user works on: selecting an image picks it and
its own labels (``"<image> labels"``, made at Start when it does not exist yet);
helper layers (prompts, previews, candidates) are never offered as image or
target. New objects get the class shown in the class menu at the moment they
are committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    LineEdit,
    PushButton,
)
from qtpy.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget

from ...core.classes import DEFAULT_CLASSES
from ...core.errors import MicrosegError
from ..label_adapt import AdaptationPanel
from ..labeling import LabelingController, shortcuts_html
from ..layer_data import (
    SOURCE_IMAGE_KEY,
    is_ground_truth,
    is_helper_layer,
    labels_layer,
    layer_choices,
    layer_classes,
    layer_pixel_size,
    own_labels_layer,
    remove_helpers,
    source_image_name,
)
from ..model_events import models_changed_event
from ..workers import alive, start_worker

if TYPE_CHECKING:
    import napari

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


def usable_backends() -> tuple[list[str], str]:
    """Backends that can run here, best first, and a note on what is missing."""
    from ...core.weights import MODELS, find_weights, missing_weights_message

    names, notes = [], []
    try:
        import sam2  # noqa: F401

        have_sam2 = True
    except ImportError:
        have_sam2 = False
        notes.append("SAM2 is not installed.")
    if have_sam2:
        for model_id in MODELS:
            if find_weights(model_id) is not None:
                names.append(model_id)
        if not names:
            notes.append("No SAM2 weights found. " + missing_weights_message("sam2.1-tiny"))
    try:
        from ...core.promptable import load_default  # noqa: F401

        names.append("microseg-promptable")
    except ImportError:
        notes.append("The offline promptable model is not installed.")
    names.extend(usable_finetuned(have_sam2))
    names.append("otsu-flood")
    return names, " ".join(notes)


def usable_finetuned(have_sam2: bool) -> list[str]:
    """Fine-tuned prompt models that can run here (a SAM2 delta needs its real base weights)."""
    from ...core.models.registry import list_prompt_models
    from ...core.prompting.registry import finetuned_names
    from ...core.weights import find_weights

    names = set(finetuned_names())
    out = []
    for e in list_prompt_models():
        if e.name not in names:
            continue
        base = e.card.get("base") or {}
        if e.backend == "sam2" and not (
            have_sam2
            and not str(base.get("weights", "random")).startswith("random")
            and find_weights(base.get("model", "sam2.1-tiny")) is not None
        ):
            continue
        out.append(e.name)
    return out


def build_backend(name: str, checkpoint=None):
    """The backend called ``name`` (real weights only; ``checkpoint`` for SAM2)."""
    from ...core.prompting.registry import make_backend

    return make_backend(name, checkpoint=checkpoint) if checkpoint else make_backend(name)


class LabelWidget(QWidget):
    """Dock widget: interactive labeling with point and box prompts."""

    def __init__(self, viewer: napari.viewer.Viewer):
        from napari.layers import Image, Labels

        super().__init__()
        self._viewer = viewer
        self.controller: LabelingController | None = None
        names, note = usable_backends()
        self.image = ComboBox(label="image", choices=layer_choices(viewer, Image))
        self.labels = ComboBox(label="labels", choices=layer_choices(viewer, Labels), nullable=True)
        self.model = ComboBox(label="model", choices=names, value=names[0])
        from ...core.weights import MODELS

        self._checkpoints: dict[str, str] = {}
        self.sam2_model = ComboBox(label="SAM2 weights for", choices=list(MODELS), value="sam2.1-tiny")
        self.weights_file_button = PushButton(text="Use a SAM2 weights file…")
        self.download_button = PushButton(text="Download SAM2 weights (unverified checksum)")
        self.start_button = PushButton(text="Start labeling (prepare image)")
        self.cancel_button = PushButton(text="Cancel preparation", enabled=False)
        self.klass = ComboBox(label="class", choices=[c.name for c in DEFAULT_CLASSES])
        self.new_class = LineEdit(label="new class", value="")
        self.add_class_button = PushButton(text="Add class")
        self.overwrite = CheckBox(text="paint over existing objects", value=False)
        self.size_prior = CheckBox(text="size first clicks like my objects", value=True,
                                   tooltip="Once the image holds five objects of a class (committed "
                                   "or already in the labels layer), the offline model looks "
                                   "at a first click through a window sized for their median "
                                   "area (BENCHMARKS.md)")
        self.commit_button = PushButton(text="Commit (C)")
        self.undo_button = PushButton(text="Undo (Ctrl+Z)")
        self.clear_button = PushButton(text="Clear prompts (Shift+C)")
        self.stroke_tool = ComboBox(label="Shift+drag draws", choices=["scribble", "lasso"], value="scribble")
        self.edit_button = PushButton(text="Edit an object (or Ctrl+click it)")
        self.cancel_edit_button = PushButton(text="Cancel edit (Esc)")
        self.load_boxes_button = PushButton(text="Load box file…")
        self.boxes_button = PushButton(text="Segment every box")
        self.spacing = FloatSpinBox(label="grid spacing (px)", min=4, max=512, value=32)
        self.min_area = FloatSpinBox(label="min size (nm²)", min=0, max=1e9, value=4.0)
        self.everything_button = PushButton(text="Segment everything")
        self.accept_button = PushButton(text="Accept candidates")
        self.reject_button = PushButton(text="Reject candidates")
        self.adaptation = AdaptationPanel(lambda: self.controller, self._say)
        self.params = Container(widgets=[
            self.image, self.labels, self.model, self.sam2_model, self.weights_file_button,
            self.download_button, self.start_button, self.cancel_button, self.klass, self.new_class,
            self.add_class_button, self.overwrite, self.size_prior, self.commit_button, self.undo_button,
            self.clear_button, self.stroke_tool, self.edit_button, self.cancel_edit_button,
            self.load_boxes_button, self.boxes_button, self.spacing,
            self.min_area, self.everything_button, self.accept_button, self.reject_button,
            *self.adaptation.widgets,
        ])
        self.status = QLabel(note or "Pick an image and press Start.")
        self.status.setWordWrap(True)
        self.help = QLabel(shortcuts_html())
        self.help.setWordWrap(True)
        layout = QVBoxLayout(self)
        for w in (self.params.native, self.status, self.help):
            layout.addWidget(w)
        self.start_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self._on_cancel)
        self.weights_file_button.changed.connect(self._on_weights_file)
        self.download_button.changed.connect(self._on_download)
        self.klass.changed.connect(self._on_class)
        self.add_class_button.changed.connect(self._on_add_class)
        self.overwrite.changed.connect(self._on_overwrite)
        self.size_prior.changed.connect(self._on_size_prior)
        self.commit_button.changed.connect(lambda: self._call("commit"))
        self.undo_button.changed.connect(lambda: self._call("undo"))
        self.clear_button.changed.connect(lambda: self._call("clear"))
        self.stroke_tool.changed.connect(self._on_stroke_tool)
        self.edit_button.changed.connect(lambda: self._call("pick_next"))
        self.cancel_edit_button.changed.connect(lambda: self._call("cancel_edit"))
        self.load_boxes_button.changed.connect(self._on_load_boxes)
        self.boxes_button.changed.connect(self._on_boxes)
        self.everything_button.changed.connect(self._on_everything)
        self.accept_button.changed.connect(lambda: self._call("accept_candidates"))
        self.reject_button.changed.connect(lambda: self._call("reject_candidates"))
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.layers.selection.events.active.connect(self._on_active)
        models_changed_event(viewer).connect(self.refresh_models)
        self.reset_choices()
        self.follow(viewer.layers.selection.active)

    def reset_choices(self, *_):
        """Refresh the layer pickers (helper layers are never listed)."""
        self.image.reset_choices()
        self.labels.reset_choices()

    def _on_removed(self, event=None):
        from napari.layers import Image

        layer = getattr(event, "value", None)
        if isinstance(layer, Image) and not is_helper_layer(layer):
            remove_helpers(self._viewer, layer.name)
            if self.controller is not None and self.controller.image_layer is layer:
                self.controller = None
                self._say(f"{layer.name} was closed; pick an image and press Start.")
        self.reset_choices()

    def _on_active(self, event=None):
        self.follow(self._viewer.layers.selection.active)

    def labels_for(self, image):
        """The Labels layer the dock writes ``image``'s objects into, or ``None`` (made at Start)."""
        if image is None:
            return None
        own = own_labels_layer(self._viewer, image)
        if own is not None:
            return own
        shape = tuple(image.data.shape[:2])
        named = [c for c in self.labels.choices if c is not None and c.name == f"{image.name} labels"
                 and tuple(c.data.shape) == shape]
        return named[0] if named else None

    def follow(self, layer):
        """Make the dock work on ``layer``: an image and its labels, or a labels layer and its image."""
        from napari.layers import Image, Labels

        if layer is None or is_helper_layer(layer):
            return
        self.reset_choices()
        if isinstance(layer, Image) and layer in self.image.choices:
            if self.image.value is not layer:
                self.image.value = layer
            self.labels.value = self.labels_for(layer)
        elif isinstance(layer, Labels) and layer in self.labels.choices and not is_ground_truth(layer):
            source = source_image_name(layer)
            img = next((c for c in self.image.choices if source and c.name == source), None)
            if img is not None:
                self.image.value = img
            self.labels.value = layer
        else:
            return
        ctl = self.controller
        if ctl is not None and ctl.image_layer is not None and ctl.image_layer is not self.image.value:
            image, target = self.image.value, self.labels.value
            into = target.name if target is not None else f"{image.name} labels"
            self._say(f"Now on {image.name}: press Start to label it (objects go into {into}).")

    def refresh_models(self, *_):
        """Re-read the usable prompt models (e.g. a fine-tune the Train dock just registered).

        Weights files chosen in this session stay listed; the chosen model stays chosen.
        """
        names, _ = usable_backends()
        extra = [m for m in self.model.choices if m in self._checkpoints and m not in names]
        current = self.model.value
        self.model.choices = [*extra, *names]
        if current in self.model.choices:
            self.model.value = current

    def _say(self, text: str):
        if not alive(self.status):  # the dock was closed while a worker ran
            return
        self.status.setText(text)

    def start(self, *_):
        """Build the model, create the target layer if needed, prepare the image."""
        from napari.utils.notifications import show_error

        image = self.image.value
        if image is None:
            show_error("Open a micrograph first.")
            return None
        try:
            backend = build_backend(self.model.value, self._checkpoints.get(self.model.value))
        except MicrosegError as e:
            show_error(str(e))
            return None
        target = self.labels.value
        if target is None or tuple(target.data.shape) != tuple(image.data.shape[:2]):
            target = self.labels_for(image)
        if target is None:
            data, kw, _ = labels_layer(np.zeros(image.data.shape[:2], np.int32),
                                       pixel_size=layer_pixel_size(image), name=f"{image.name} labels",
                                       metadata={SOURCE_IMAGE_KEY: image.name})
            target = self._viewer.add_labels(data, **kw)
        self.reset_choices()
        self.image.value = image
        self.labels.value = target
        from ...core.prompting.embedding_cache import EmbeddingCache

        cache = EmbeddingCache() if getattr(backend, "needs_embedding", False) else None
        self.controller = LabelingController(self._viewer, backend, cache)
        self.controller.current_class = lambda: self.klass.value
        self.controller.on_status = self._say
        self.controller.on_labels_changed = self.adaptation.labels_changed
        self.adaptation.reset(target)
        self._on_overwrite()
        self._on_size_prior()
        self._on_stroke_tool()
        self._say(f"Preparing {image.name} with {backend.name}…")
        self.cancel_button.enabled = True

        def ready(status):
            self.cancel_button.enabled = False
            self._say(status + " — click on objects.")

        try:
            worker = self.controller.set_target(image, target, on_ready=ready)
        except MicrosegError as e:
            self.cancel_button.enabled = False
            show_error(str(e))
            return None
        self._sync_classes(target)
        worker.finished.connect(lambda: setattr(self.cancel_button, "enabled", False))
        return worker

    def _on_cancel(self, *_):
        if self.controller is not None:
            self.controller.cancel_preparation()
            self._say("Preparation cancelled; press Start to try again.")

    def _add_model(self, model_id: str):
        names = list(self.model.choices)
        if model_id not in names:
            self.model.choices = [model_id, *names]
        self.model.value = model_id

    def _on_weights_file(self, *_):
        path, _ = QFileDialog.getOpenFileName(self, "SAM2 checkpoint", "", "PyTorch checkpoint (*.pt *.pth)")
        if path:
            self.use_weights_file(self.sam2_model.value, path)

    def use_weights_file(self, model_id: str, path: str):
        """Use ``path`` as the checkpoint of ``model_id`` in this session."""
        self._checkpoints[model_id] = str(path)
        self._add_model(model_id)
        self._say(f"{model_id} will use {path}. Press Start.")

    def _on_download(self, *_):
        from ...core.weights import download

        model_id = self.sam2_model.value
        self._say(f"Downloading {model_id}… (no official checksum is published; the file's SHA-256 "
                  "is recorded after download)")

        def done(path):
            self._checkpoints[model_id] = str(path)
            self._add_model(model_id)
            self._say(f"Downloaded {path}.")

        return start_worker(download, model_id, verify=False, progress=False, on_returned=done,
                            progress_bar={"desc": f"Downloading {model_id}"})

    def _sync_classes(self, target):
        """Offer ``target``'s classes, keeping the shown class when the target has it."""
        _, classes = layer_classes(target)
        names = [c.name for c in classes]
        shown = self.klass.value
        with self.klass.changed.blocked():
            self.klass.choices = names
            self.klass.value = shown if shown in names else (names[0] if names else None)
        self._on_class()

    def _on_class(self, *_):
        if self.controller is None or self.controller.labels_layer is None or self.klass.value is None:
            return
        _, classes = layer_classes(self.controller.labels_layer)
        self.controller.class_id = classes.id_of(self.klass.value)

    def _on_add_class(self, *_):
        from napari.utils.notifications import show_error

        name = self.new_class.value.strip()
        if not name or self.controller is None:
            return
        try:
            n = len(self.klass.choices)
            self.controller.add_class(name, PALETTE[n % len(PALETTE)])
        except MicrosegError as e:
            show_error(str(e))
            return
        self._sync_classes(self.controller.labels_layer)
        self.klass.value = name
        self.new_class.value = ""

    def _on_stroke_tool(self, *_):
        if self.controller is not None:
            self.controller.stroke_tool = self.stroke_tool.value

    def _on_overwrite(self, *_):
        if self.controller is not None:
            self.controller.overwrite = self.overwrite.value

    def _on_size_prior(self, *_):
        if self.controller is not None:
            self.controller.size_prior = self.size_prior.value

    def _call(self, method: str):
        if self.controller is None:
            self._say("Press Start first.")
            return None
        out = getattr(self.controller, method)()
        self._say(self.controller.status)
        return out

    def _on_load_boxes(self, *_):
        if self.controller is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Boxes (ymin xmin ymax xmax per line)", "", "Text (*.txt)")
        if path:
            try:
                self._say(f"Loaded {self.controller.load_boxes(path)} boxes.")
            except MicrosegError as e:
                self._say(str(e))

    def _on_boxes(self, *_):
        if self.controller is None:
            return None
        try:
            return self.controller.segment_all_boxes(on_done=lambda n: self._say(f"Committed {n} objects from boxes."))
        except MicrosegError as e:
            self._say(str(e))
            return None

    def _on_everything(self, *_):
        if self.controller is None:
            return None
        self._say("Segmenting everything…")
        return self.controller.find_candidates(
            spacing=self.spacing.value, min_area_nm2=self.min_area.value,
            on_done=lambda n: self._say(f"{n} candidates: erase the wrong ones, then Accept or Reject."),
        )
