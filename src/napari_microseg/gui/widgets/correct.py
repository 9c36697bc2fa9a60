"""Correct dock: merge, split, delete, classify, fill and renumber objects of any Labels layer.

Changes are computed by :mod:`napari_microseg.core.correct` and written with
napari's ``Labels.data_setitem`` inside ``Labels.block_history()``: each action is
one step of the layer's own undo history (Ctrl+Z / Ctrl+Shift+Z on the layer,
``layer.undo()`` / ``layer.redo()``).

Classes are not pixels, so napari's history cannot carry them. The dock keeps
``layer.features`` consistent itself: after each action it writes the features
and remembers the classes of the new pixel state
(:class:`~napari_microseg.core.correct.ClassStates`, keyed by the ids and their
areas). On the layer's ``set_data`` and ``paint`` events (undo, redo, brush
strokes) it looks the pixel state up and restores the classes it had; an unknown
state keeps the classes of the ids still present, new ids are unclassified.
"Set class" changes no pixels and is not in the undo history.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, PushButton
from qtpy.QtWidgets import QLabel, QScrollArea, QVBoxLayout, QWidget

from ...core import correct as core
from ...core.errors import MicrosegError
from ..layer_data import class_features, helper_metadata, layer_classes, layer_pixel_size
from ..layer_follow import LayerFollower, layer_picker
from ..workers import alive

if TYPE_CHECKING:
    import napari

POINTS_LAYER = "correction points"
LINE_LAYER = "split line"
CLOSED_SHAPES = ("polygon", "rectangle", "ellipse")
#: Actions that work on the selected objects: disabled while nothing is selected.
NEEDS_SELECTION = ("merge", "delete", "set_class")

#: Key -> (method, what it does). Shift+letter because napari's Labels, Points and
#: Shapes layers already use the plain letters (M new label, F fill, X swap, D, R, ...).
SHORTCUTS = {
    "Shift-M": ("merge", "merge the selected objects into the smallest id"),
    "Shift-D": ("delete", "delete the selected objects"),
    "Shift-X": ("split_line", "split the objects crossed by the 'split line' shapes"),
    "Shift-W": ("split_seeds", "watershed split: two or more correction points per object"),
    "Shift-K": ("set_class", "give the selected objects the chosen class"),
    "Shift-F": ("fill_holes", "fill holes in the clicked objects (none clicked: all)"),
    "Shift-S": ("remove_small", "remove objects under the size limit"),
    "Shift-R": ("renumber", "renumber the ids 1..n (classes follow)"),
}
#: Extra keys on the two helper layers (the labels layer has napari's own).
HELPER_KEYS = {"Control-Z": "undo", "Control-Shift-Z": "redo"}
HELP = (
    "Selection: the objects under the points of 'correction points'; with no point on an "
    "object, the layer's selected label. Each action is one undo step of the labels layer "
    "(Ctrl+Z / Ctrl+Shift+Z)."
)


def _editable(layer) -> bool:
    """Whether the dock can edit ``layer``: a single-scale 2-D Labels layer."""
    return layer is not None and not layer.multiscale and layer.ndim == 2


def shortcuts_html() -> str:
    """The dock's help text and key list as HTML."""
    keys = [f"<b>{escape(k)}</b>: {escape(d)}" for k, (_, d) in SHORTCUTS.items()]
    keys.append("<b>Control-Z / Control-Shift-Z</b>: undo / redo (also on the helper layers)")
    return escape(HELP) + "<br>" + "<br>".join(keys)


class CorrectWidget(QWidget):
    """Dock widget: edit the objects of a Labels layer, each edit one napari undo step.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose Labels layers are corrected.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self._target = None
        self._states: dict[int, core.ClassStates] = {}
        self._last_fp: bytes | None = None
        self._busy = False
        self._label_chosen, self._seen_label = False, None
        self.points = self.line = None
        self.labels = layer_picker(viewer, "Labels", "labels", nullable=True)  # "-----" rather than the truth
        self.start_button = PushButton(text="Start correcting (add selection layers)")
        self.start_button.changed.connect(self.start)
        self.image = layer_picker(viewer, "Image", "image (watershed)", nullable=True)
        self.elevation = ComboBox(label="watershed on", choices=list(core.ELEVATIONS),
                                  value="distance")
        self.klass = ComboBox(label="class", choices=[("unclassified", 0)], value=0)
        self.min_area = FloatSpinBox(label="min size (px)", min=0.0, max=1e12, value=20.0)
        names = {"merge": "Merge selected", "split_line": "Split along line",
                 "split_seeds": "Split by seeds (watershed)", "delete": "Delete selected",
                 "set_class": "Set class", "fill_holes": "Fill holes",
                 "remove_small": "Remove smaller objects", "renumber": "Renumber"}
        self.buttons = {m: PushButton(text=t) for m, t in names.items()}
        for m, b in self.buttons.items():
            b.changed.connect(lambda *_, m=m: getattr(self, m)())
        b = self.buttons
        self.params = Container(widgets=[
            self.labels, self.start_button, b["merge"], b["delete"], b["split_line"], self.image, self.elevation,
            b["split_seeds"], self.klass, b["set_class"], b["fill_holes"], self.min_area,
            b["remove_small"], b["renumber"],
        ])
        self.selection_text = QLabel("")
        self.status = QLabel("Choose a Labels layer.")
        self.help = QLabel(shortcuts_html())
        inner = QWidget()  # scrolls as a whole when the dock is short
        layout = QVBoxLayout(inner)
        layout.addWidget(self.params.native)
        for w in (self.selection_text, self.status, self.help):
            w.setWordWrap(True)
            layout.addWidget(w)
        layout.addStretch()
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        QVBoxLayout(self).addWidget(scroll)
        self.labels.changed.connect(self.set_target)
        self._follow = LayerFollower(viewer, image=self.image, labels=self.labels)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        self.set_target(self.labels.value)
        self._show_selection()

    # -- layers ------------------------------------------------------------------------

    def reset_choices(self, *_):
        """Refresh the layer pickers (they follow the active layer unless the user chose one)."""
        self._follow.reset_choices()

    def _on_removed(self, event):
        """The helper layers go with the layer they serve (a removed helper is re-made on demand)."""
        layer = getattr(event, "value", None)
        if layer is None:
            return
        if layer is self.points or layer is self.line:
            self.points = self.line = None
            for name in (POINTS_LAYER, LINE_LAYER):
                if name in self._viewer.layers and self._viewer.layers[name] is not layer:
                    self._viewer.layers.remove(name)
            return
        if layer is self._target:
            for name in (POINTS_LAYER, LINE_LAYER):
                if name in self._viewer.layers:
                    self._viewer.layers.remove(name)
            self.points = self.line = None
            self.set_target(None)

    def set_target(self, layer=None):
        """Correct ``layer``: connect its events, bind the keys, create the helper layers."""
        old = self._target
        if layer is old:
            return
        if old is not None:
            for ev in (old.events.set_data, old.events.paint):
                ev.disconnect(self._sync)
            old.events.features.disconnect(self._refresh_classes)
            old.events.selected_label.disconnect(self._on_selected_label)
            old.events.labels_update.disconnect(self._on_labels_update)
            for key in SHORTCUTS:
                old.bind_key(key, None)
        self._target, self._last_fp = layer, None
        # napari's selected label (1 by default) is a selection only once the user picks one
        self._label_chosen = False
        self._seen_label = None if layer is None else layer.selected_label
        if layer is None:
            self._show_selection()
            return
        for ev in (layer.events.set_data, layer.events.paint):
            ev.connect(self._sync)
        layer.events.features.connect(self._refresh_classes)
        layer.events.selected_label.connect(self._on_selected_label)
        layer.events.labels_update.connect(self._on_labels_update)
        self._bind(layer)
        ps = layer_pixel_size(layer)
        self.min_area.label = f"min size ({'nm²' if ps.calibrated else 'px'})"
        self._refresh_classes()
        self._sync()
        if self.points is not None and POINTS_LAYER in self._viewer.layers:
            self._ensure_helpers()  # already started: move the helpers onto the new target
            self._show_selection()
        self._say(f"{layer.name}: press Start correcting (or use a shortcut) to add the "
                  f"'{POINTS_LAYER}' and '{LINE_LAYER}' layers.")

    def start(self):
        """Add the selection layers for the current target (done lazily, not on docking)."""
        try:
            self._require()
        except MicrosegError as e:
            self._say(str(e), error=True)
            return
        self._show_selection()
        self._say(f"Correcting {self._target.name}: click objects in '{POINTS_LAYER}', draw cuts "
                  f"in '{LINE_LAYER}'.")

    def _bind(self, layer, helper: bool = False):
        for key, (method, _) in SHORTCUTS.items():
            layer.bind_key(key, self._key_action(method), overwrite=True)
        if helper:
            for key, method in HELPER_KEYS.items():
                layer.bind_key(key, self._key_action(method), overwrite=True)

    def _key_action(self, method: str):
        def action(_layer):
            getattr(self, method)()

        action.__doc__ = dict(SHORTCUTS.values()).get(method, method)
        return action

    def _ensure_helpers(self):
        """The 'correction points' and 'split line' layers, on the target's grid."""
        v, t = self._viewer, self._target
        common = dict(scale=t.scale[-2:], translate=t.translate[-2:], units=t.units[-2:])
        md = helper_metadata(t.name, "correction")
        active = v.layers.selection.active
        created = False
        if POINTS_LAYER not in v.layers:
            size = max(3.0, min(t.data.shape[-2:]) / 80)
            v.add_points(name=POINTS_LAYER, ndim=2, size=size, face_color="yellow",
                         border_color="black", metadata=dict(md), **common)
            created = True
        if LINE_LAYER not in v.layers:
            v.add_shapes(name=LINE_LAYER, ndim=2, edge_color="cyan", face_color="transparent",
                         edge_width=max(1.0, min(t.data.shape[-2:]) / 300), metadata=dict(md), **common)
            created = True
        self.points, self.line = v.layers[POINTS_LAYER], v.layers[LINE_LAYER]
        for helper in (self.points, self.line):
            for key, value in common.items():
                setattr(helper, key, value)
            helper.metadata.update(md)  # they now serve this target (and go when it is removed)
            self._bind(helper, helper=True)
        self.points.events.data.connect(self._show_selection)  # napari ignores repeats
        if created:
            self.points.mode, self.line.mode = "add", "add_path"
            v.layers.selection.active = self.points
        elif active is not None:
            v.layers.selection.active = active

    def _require(self):
        layer = self._target
        if layer is None:
            raise MicrosegError("Choose a Labels layer to correct.")
        if not _editable(layer):
            raise MicrosegError(f"{layer.name}: only single-scale 2-D labels can be corrected.")
        if POINTS_LAYER not in self._viewer.layers or LINE_LAYER not in self._viewer.layers:
            self._ensure_helpers()
        return layer

    def _pixels(self, helper, coords) -> np.ndarray:
        """``coords`` of a helper layer as (row, col) pixels of the target."""
        t = self._target
        out = [t.world_to_data(helper.data_to_world(np.asarray(p)))[-2:] for p in coords]
        return np.asarray(out, dtype=float).reshape(-1, 2)

    def _on_selected_label(self, *_):
        """The user picked a label (napari also re-sends the event unchanged: ignored)."""
        t = self._target
        if t is not None and t.selected_label != self._seen_label:
            self._seen_label = t.selected_label
            self._label_chosen = True
        self._show_selection()

    def _on_labels_update(self, *_):
        """Pixels were written (napari's paint event comes before them): is the selection still there?"""
        if self.selection_text.text() != "Selected: nothing":
            self._show_selection()

    def selection(self) -> list[int]:
        """Ids under the correction points, else the label the user picked (if present).

        A picked label counts until an action removes or changes objects (then the
        user picks again); undo, redo and painting re-arm it.
        """
        t = self._target
        data = np.asarray(t.data)
        ids = core.ids_at(data, self._pixels(self.points, self.points.data)) if self.points else []
        if not ids and self._label_chosen and t.selected_label > 0 and np.any(data == t.selected_label):
            ids = [int(t.selected_label)]
        return ids

    def _show_selection(self, *_):
        """Say what is selected; the actions on a selection are enabled only when there is one."""
        ids = self.selection() if _editable(self._target) else []
        self.selection_text.setText(f"Selected: {', '.join(map(str, ids)) or 'nothing'}")
        for name in NEEDS_SELECTION:
            self.buttons[name].enabled = bool(ids)

    # -- classes -----------------------------------------------------------------------

    def _store(self) -> core.ClassStates:
        return self._states.setdefault(id(self._target), core.ClassStates())

    def _refresh_classes(self, *_):
        if self._target is None:
            return
        _, classes = layer_classes(self._target)
        value = self.klass.value
        with self.klass.changed.blocked():
            self.klass.choices = [("unclassified", 0)] + [(c.name, c.id) for c in classes]
            if value in self.klass.choices:
                self.klass.value = value

    def _write_classes(self, instance_classes: dict, data=None):
        layer = self._target
        data = np.asarray(layer.data) if data is None else data
        _, classes = layer_classes(layer)
        feats = class_features(data, instance_classes, classes)
        old = layer.features
        same = ({"index", "class_id"} <= set(old.columns) and len(old) == len(feats)
                and (old["index"].to_numpy() == feats["index"].to_numpy()).all()
                and (old["class_id"].to_numpy() == feats["class_id"].to_numpy()).all())
        if not same:
            layer.features = feats
        self._last_fp = core.fingerprint(data)
        pairs = zip(feats["index"].tolist(), feats["class_id"].tolist(), strict=True)
        self._store().remember(self._last_fp, {i: c for i, c in pairs if i > 0 and c > 0})

    def _sync(self, *_):
        """Bring features in line with the pixels after undo, redo or painting."""
        layer = self._target
        if self._busy or not _editable(layer):
            return
        data = np.asarray(layer.data)
        fp = core.fingerprint(data)
        if fp == self._last_fp:
            return
        known = self._last_fp is not None
        inst = self._store().recall(fp)
        self._write_classes(layer_classes(layer)[0] if inst is None else inst, data)
        if known:
            self._label_chosen = True  # undo/redo/painting: the picked label is the user's again
        self._show_selection()  # an object erased or undone is no longer selected

    # -- actions -----------------------------------------------------------------------

    def _say(self, text: str, error: bool = False):
        if not alive(self.status):  # the dock was closed while a worker ran
            return
        self.status.setText(text)
        if error:
            from napari.utils.notifications import show_warning

            show_warning(text)

    def _run(self, compute, clear=(), select=None):
        """Compute a change from the current pixels and classes; apply it as one undo step."""
        try:
            layer = self._require()
            self._sync()
            change = compute(np.asarray(layer.data), layer_classes(layer)[0])
        except MicrosegError as e:
            self._say(str(e), error=True)
            return None
        if change.n_pixels:
            self._busy = True
            try:
                with layer.block_history():
                    layer.data_setitem(change.index, change.values)
            finally:
                self._busy = False
        self._write_classes(change.instance_classes)
        if change.n_pixels:
            self._label_chosen = False  # used up: a second press must not hit another object
        for helper in clear:
            helper.data = np.zeros((0, 2)) if helper is self.points else []
        if select:
            layer.selected_label = int(select(change))
        self._say(change.message)
        self._show_selection()
        return change

    def merge(self):
        """Merge the selected objects into the smallest of their ids."""
        return self._run(lambda d, inst: core.merge(d, self.selection(), inst), (self.points,),
                         select=lambda ch: min(ch.mapping.values()))

    def delete(self):
        """Delete the selected objects."""
        return self._run(lambda d, inst: core.delete(d, self.selection(), inst), (self.points,))

    def split_line(self):
        """Cut the objects crossed by the shapes of the 'split line' layer."""
        def compute(data, inst):
            if self.line is None or not len(self.line.data):
                raise MicrosegError(f"Draw a path across the object in '{LINE_LAYER}' first.")
            lines, closed = [], []
            for vertices, kind in zip(self.line.data, self.line.shape_type, strict=True):
                if kind == "ellipse":  # napari stores an ellipse as its 4 box corners
                    c = np.asarray(vertices, dtype=float)
                    u, v = (c[1] - c[0]) / 2, (c[3] - c[0]) / 2
                    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)[:, None]
                    vertices = c.mean(0) + np.cos(t) * u + np.sin(t) * v
                lines.append(self._pixels(self.line, vertices))
                closed.append(kind in CLOSED_SHAPES)
            return core.split_along_line(data, lines, inst, closed=closed)

        return self._run(compute, (self.line,))

    def split_seeds(self):
        """Watershed split from the correction points (two or more per object)."""
        def compute(data, inst):
            image = self.image.value
            img = None
            if self.elevation.value != "distance":
                if image is None or image.rgb or np.ndim(image.data) != 2:
                    raise MicrosegError("Intensity watershed needs a 2-D grey image layer.")
                img = np.asarray(image.data)
            seeds = self._pixels(self.points, self.points.data)
            return core.split_by_seeds(data, seeds, inst, elevation=self.elevation.value, image=img)

        return self._run(compute, (self.points,))

    def set_class(self):
        """Give the selected objects the class chosen in the dock (not a pixel edit)."""
        try:
            layer = self._require()
            self._sync()
            ids = self.selection()
            if not ids:
                raise MicrosegError("Select an object to classify.")
        except MicrosegError as e:
            self._say(str(e), error=True)
            return None
        inst = core.set_class(layer_classes(layer)[0], ids, self.klass.value)
        self._write_classes(inst)
        self.points.data = np.zeros((0, 2))
        self._say(f"Set {', '.join(map(str, ids))} to {self.klass.current_choice}.")
        return inst

    def fill_holes(self):
        """Fill holes in the objects under the correction points, or in every object."""
        def compute(data, inst):
            ids = core.ids_at(data, self._pixels(self.points, self.points.data)) or None
            return core.fill_holes(data, inst, ids)

        return self._run(compute, (self.points,))

    def remove_small(self):
        """Remove objects under the size limit (nm² when calibrated, else px)."""
        ps = layer_pixel_size(self._target) if self._target is not None else None
        area = ps.area_nm2 if ps is not None and ps.calibrated else 1.0
        return self._run(lambda d, inst: core.remove_small(d, inst, self.min_area.value,
                                                           pixel_area=area))

    def renumber(self):
        """Renumber the ids 1..n; classes follow."""
        return self._run(core.renumber)

    def undo(self):
        """Undo the last pixel edit of the target layer (napari's history)."""
        if self._target is not None:
            self._target.undo()

    def redo(self):
        """Redo the last undone pixel edit of the target layer."""
        if self._target is not None:
            self._target.redo()
