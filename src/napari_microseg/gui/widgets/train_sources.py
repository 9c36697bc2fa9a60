"""The Train dock's "Data" section: what a run trains and validates on.

:class:`TrainSources` holds the image/labels pickers (they follow the active
layer and never offer helper layers), the list of added (image, labels) pairs
and dataset folders with their role (training or validation), and the
validation share. The dock reads :attr:`TrainSources.sources` when a run starts.
"""

from __future__ import annotations

from magicgui.widgets import Container, FloatSpinBox, PushButton
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QFileDialog, QLabel, QListWidget
from superqt import QCollapsible

from ..layer_follow import LayerFollower, layer_picker


def section(title: str, widgets, expanded: bool = True) -> QCollapsible:
    """A collapsible section holding magicgui ``widgets`` in a form."""
    box = QCollapsible(title)
    box.addWidget(Container(widgets=widgets).native)
    if expanded:
        box.expand(animate=False)
    return box


class TrainSources:
    """Layer pairs and folders to train on, with their pickers; ``widget`` is the section."""

    def __init__(self, viewer, parent=None):
        self._parent = parent
        #: Added sources: ``{"kind": "layers", "image", "labels", "role"}`` or
        #: ``{"kind": "folder", "path", "role"}``; ``role`` is "train" or "validation".
        self.sources: list[dict] = []
        # no helper layers offered; both follow the active layer unless the user chose one
        self.image = layer_picker(viewer, "Image", "image")
        self.labels = layer_picker(viewer, "Labels", "labels", nullable=True)  # never the truth by default
        self.add_train = PushButton(text="+ training")
        self.add_val = PushButton(text="+ validation")
        self.add_folder = PushButton(text="+ folder…")
        self.remove = PushButton(text="Remove")
        self.add_train.tooltip = "Add the image and labels above as a training pair."
        self.add_val.tooltip = "Add the image and labels above as a validation pair."
        self.add_folder.tooltip = "Add a dataset folder: images/ with masks/, boxes/ or a COCO .json."
        self.remove.tooltip = "Remove the selected entries."
        self.source_list = QListWidget()
        self.source_list.setMaximumHeight(72)
        self.source_list.setToolTip(
            "What the run trains on. Empty: the image and labels chosen above. "
            "Folders: images/ with masks/, boxes/ or a COCO .json."
        )
        self.source_hint = QLabel("Nothing added: Start trains on the image and labels above.")
        self.source_hint.setWordWrap(True)
        self.source_hint.setStyleSheet("color: #9a9a9a;")
        self.val_share = FloatSpinBox(label="validation share", min=0.0, max=0.9, step=0.05, value=0.2)
        self.val_share.tooltip = "Share of the training images held out, when no validation pair is added."

        self.widget = section("Data", [self.image, self.labels])
        row = Container(
            widgets=[self.add_train, self.add_val, self.add_folder, self.remove],
            layout="horizontal",
            labels=False,
        )
        row.margins = (0, 0, 0, 0)
        self.widget.addWidget(row.native)
        self.widget.addWidget(self.source_hint)
        self.widget.addWidget(self.source_list)
        self.widget.addWidget(Container(widgets=[self.val_share]).native)
        self.source_list.hide()

        self.add_train.changed.connect(lambda *_: self.add_pair("train"))
        self.add_val.changed.connect(lambda *_: self.add_pair("validation"))
        self.add_folder.changed.connect(self._on_add_folder)
        self.remove.changed.connect(self._on_remove)
        self.follower = LayerFollower(viewer, image=self.image, labels=self.labels)
        viewer.layers.events.removed.connect(self._on_layer_removed)

    def add_pair(self, role: str = "train") -> None:
        """Add the chosen (image, labels) pair as training or validation data."""
        img, lab = self.image.value, self.labels.value
        if img is None or lab is None:
            show_error("Choose an image and a Labels layer to add.")
            return
        self._add(
            {"kind": "layers", "image": img, "labels": lab, "role": role},
            f"{role}: {img.name}  ↔  {lab.name}",
        )

    def add_folder_source(self, path, role: str = "train") -> None:
        """Add a dataset folder (see :func:`~napari_microseg.core.training.load_folder`)."""
        self._add({"kind": "folder", "path": str(path), "role": role}, f"{role}: folder {path}")

    def _add(self, src: dict, text: str) -> None:
        self.sources.append(src)
        self.source_list.addItem(text)
        self._changed()

    def _changed(self) -> None:
        self.source_list.setVisible(bool(self.sources))
        self.source_hint.setVisible(not self.sources)

    def _on_add_folder(self, *_):
        path = QFileDialog.getExistingDirectory(
            self._parent, "Dataset folder (images/ with masks/, boxes/ or COCO)"
        )
        if path:
            self.add_folder_source(path)

    def _on_remove(self, *_):
        for row in sorted((i.row() for i in self.source_list.selectedIndexes()), reverse=True):
            self.source_list.takeItem(row)
            del self.sources[row]
        self._changed()

    def _on_layer_removed(self, event):
        layer = event.value
        for row in range(len(self.sources) - 1, -1, -1):
            s = self.sources[row]
            if s["kind"] == "layers" and (s["image"] is layer or s["labels"] is layer):
                self.source_list.takeItem(row)
                del self.sources[row]
        self._changed()
        self.follower.reset_choices()
