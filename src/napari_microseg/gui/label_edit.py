"""Label dock: edit an existing object, and scribble / lasso prompts.

:class:`EditStrokeMixin` is part of
:class:`~napari_microseg.gui.labeling.LabelingController` (kept apart so each
module stays small). It adds

* **edit an object**: Control+click (or :meth:`~EditStrokeMixin.pick_next` then
  a click) on an object of the target labels layer, of a model's labels layer
  or of a ground-truth layer makes its mask the starting mask
  (:meth:`PromptSession.start_from <napari_microseg.core.prompting.session.PromptSession.start_from>`);
  corrective clicks, strokes or a box change it; commit replaces it (same id
  and class in the target layer, one undo step) or, for an object of another
  layer, writes it into the target and leaves the source untouched; Escape
  cancels;
* **strokes**: Shift+drag draws a positive scribble (Shift+Alt+drag or
  Shift+right-drag a negative one) or, with :attr:`stroke_tool` ``"lasso"``, a
  lasso; the preview comes from
  :func:`~napari_microseg.core.prompting.strokes.predict_with_strokes`, which
  follows the image's edges. Drawn strokes are shown in the image's
  ``"<image> strokes"`` helper layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.annotate import commit_mask
from ..core.errors import LabelsError
from ..core.prompting.base import Prediction, RegionMask
from ..core.prompting.object_edit import object_region, replace_object
from ..core.prompting.strokes import Strokes
from .layer_data import find_helper, helper_metadata, is_helper_layer, layer_classes

STROKES_LAYER = "strokes"
STROKE_COLORS = {"positive": "#00ff00", "negative": "#ff3030", "lasso": "#ffd700"}


def click_label(event) -> int:
    """1 for a positive click, 0 for a negative one (right button or Alt)."""
    return 0 if event.button == 2 or "Alt" in {str(m) for m in event.modifiers} else 1


@dataclass
class EditTarget:
    """The object being edited: where it comes from and what it was."""

    layer: object
    label: int
    class_id: int
    class_name: str | None
    region: RegionMask


def _modifiers(event) -> set[str]:
    return {str(m) for m in getattr(event, "modifiers", ())}


class EditStrokeMixin:
    """Object editing and freehand prompts for the labeling controller (see the module docstring)."""

    #: What Shift+drag draws: ``"scribble"`` or ``"lasso"``.
    stroke_tool = "scribble"
    #: Called with every new :attr:`status` text (the dock shows it), or None.
    on_status = None

    @property
    def status(self) -> str:
        """The last message for the user."""
        return getattr(self, "_status", "")

    @status.setter
    def status(self, text: str):
        self._status = str(text)
        if self.on_status is not None:
            self.on_status(self._status)

    def _init_edit_state(self):
        self.strokes = Strokes()
        self.editing: EditTarget | None = None
        self._pick_next = False
        self.stroke_layer = None
        self._stroke_common = {}

    # -- layers --------------------------------------------------------------------------

    def _ensure_stroke_layer(self, common: dict):
        """Reuse this image's strokes layer, if any (emptied); else it is made at the first stroke."""

        self._stroke_common = common
        layer = find_helper(self.viewer, self.image_layer.name, STROKES_LAYER)
        if layer is not None and layer.ndim != 2:
            self.viewer.layers.remove(layer)
            layer = None
        if layer is not None:
            layer.scale, layer.translate = common["scale"], common["translate"]
            self._bind_keys(layer)
        self.stroke_layer = layer
        self._clear_strokes()

    def _stroke_layer(self):
        """The strokes helper layer, made now if needed (the prompts layer stays active)."""
        if self.stroke_layer is None or self.stroke_layer not in self.viewer.layers:
            img = self.image_layer
            self.stroke_layer = self.viewer.add_shapes(
                ndim=2, name=f"{img.name} {STROKES_LAYER}", face_color="transparent", edge_width=2,
                metadata=helper_metadata(img.name, STROKES_LAYER), **self._stroke_common)
            self._bind_keys(self.stroke_layer)
            self.viewer.layers.selection.active = self.points
        return self.stroke_layer

    def _clear_strokes(self):
        self.strokes = Strokes()
        layer = getattr(self, "stroke_layer", None)
        if layer is not None and len(layer.data):
            layer.data = []

    # -- mouse ---------------------------------------------------------------------------

    def _on_mouse(self, layer, event):
        """Click: prompt (Control: pick an object to edit); Shift+drag: a stroke or a lasso."""
        mods = _modifiers(event)
        drawing = "Shift" in mods
        start = np.asarray(event.position)
        path = [layer.world_to_data(event.position)[-2:]]
        if drawing:
            layer.mouse_pan = False
        yield
        moved = False
        while event.type == "mouse_move":
            moved = moved or np.linalg.norm(np.asarray(event.position) - start) > 0
            if drawing:
                path.append(layer.world_to_data(event.position)[-2:])
            yield
        if drawing:
            layer.mouse_pan = True
        if drawing and moved:
            path.append(layer.world_to_data(event.position)[-2:])
            negative = event.button == 2 or "Alt" in mods
            kind = "lasso" if self.stroke_tool == "lasso" and not negative else (
                "negative" if negative else "positive")
            self.add_stroke(path, kind)
            return
        if moved:
            return
        rowcol = layer.world_to_data(event.position)[-2:]
        if "Control" in mods or self._pick_next:
            self._pick_next = False
            self.edit_object_at(rowcol)
        else:
            self.add_click(rowcol, click_label(event))

    # -- strokes -------------------------------------------------------------------------

    def add_stroke(self, path, kind: str = "positive"):
        """Add a freehand stroke (``"positive"``, ``"negative"``) or a ``"lasso"`` in image pixels."""
        if not self.ready:
            self.status = "The image is still being prepared; try again in a moment."
            return
        h, w = self.preview.data.shape
        path = np.clip(np.asarray(path, float).reshape(-1, 2), 0, [h - 1, w - 1])
        if kind == "lasso":
            self.strokes.lasso = path
        elif kind in ("positive", "negative"):
            getattr(self.strokes, kind).append(path)
        else:
            raise ValueError(f"unknown stroke kind {kind!r}")
        shape_type = "polygon" if kind == "lasso" and len(path) >= 3 else "path"
        if len(path) < 2:
            path = np.vstack([path, path + 0.5])
        layer = self._stroke_layer()
        layer.add(path, shape_type=shape_type, edge_color=STROKE_COLORS[kind], edge_width=2)
        self.request_preview()

    # -- editing -------------------------------------------------------------------------

    def source_layers(self) -> list:
        """Labels layers an object can be picked from: the target first, then the others, top first."""
        from napari.layers import Labels

        shape = tuple(self.preview.data.shape)
        others = [lyr for lyr in reversed(self.viewer.layers)
                  if isinstance(lyr, Labels) and lyr is not self.labels_layer and not is_helper_layer(lyr)
                  and lyr.visible and lyr.ndim == 2 and tuple(lyr.data.shape) == shape]
        return [self.labels_layer, *others]

    def pick_next(self):
        """Make the next plain click pick an object to edit."""
        self._pick_next = True
        self.status = "Click an object to edit it (target layer first, then model or ground-truth layers)."

    def edit_object_at(self, rowcol, layer=None):
        """Start editing the object under ``(row, col)`` image pixels (in ``layer`` or the first that has one)."""
        if not self.ready:
            self.status = "The image is still being prepared; try again in a moment."
            return None
        h, w = self.preview.data.shape
        r, c = (int(round(float(v))) for v in rowcol[:2])
        if not (0 <= r < h and 0 <= c < w):
            return None
        for src in [layer] if layer is not None else self.source_layers():
            label = int(np.asarray(src.data[r, c]))
            if label > 0:
                return self.edit_object(src, label)
        self.status = "No object under that point to edit."
        return None

    def edit_object(self, layer, label: int):
        """Start editing object ``label`` of ``layer``: its mask becomes the starting mask."""
        region = object_region(np.asarray(layer.data), label)
        if not region.any():
            self.status = f"{layer.name} has no object {label}."
            return None
        inst, classes = layer_classes(layer)
        class_id = int(inst.get(int(label), 0))
        try:
            class_name = classes[class_id].name if class_id else None
        except LabelsError:
            class_name = None
        self._drop_prompts()
        self.session.reset()
        self.session.start_from(region)
        self.editing = EditTarget(layer, int(label), class_id, class_name, region)
        where = "" if layer is self.labels_layer else f" of {layer.name} (commit copies it into {self.labels_layer.name})"
        self.status = (f"Editing object {label}{where}: click, scribble or draw a box to correct it; "
                       "C commits, Escape cancels.")
        self._show(Prediction(region.full(self.preview.data.shape), 1.0, None))
        return self.editing

    def cancel_edit(self):
        """Stop editing without changing anything."""
        was = self.editing is not None
        self._drop_prompts()
        self.session.reset()
        self.editing = None
        self._show(None)
        self.status = "Edit cancelled; the object is unchanged." if was else self.status

    def _commit_edit(self):
        """Write the edited object: replace it in the target, or copy it there from another layer."""
        target, ed = self.labels_layer, self.editing
        mask = self._last_pred.mask if self._last_pred is not None else ed.region.full(target.data.shape)
        inst, classes = self._classes()
        if ed.layer is target:
            edit = replace_object(target.data, mask, inst, label=ed.label, class_id=ed.class_id,
                                  overwrite=self.overwrite)
        else:
            class_id = self.class_for_commit(classes)
            if ed.class_name is not None:
                try:
                    class_id = classes.id_of(ed.class_name)
                except LabelsError:
                    pass
            edit = commit_mask(target.data, mask, inst, class_id=class_id, overwrite=self.overwrite)
        if edit is None:
            self.status = "The edited object would be empty (or lies under other objects); nothing changed."
            return None
        self.history.append([edit])
        self._write_back(inst, classes)
        self.session.note_committed(np.count_nonzero(mask), key=edit.class_id)  # undo forgets it
        self.status = f"Replaced object {edit.label}." if ed.layer is target else (
            f"Copied object {ed.label} of {ed.layer.name} into {target.name} as {edit.label}.")
        self.editing = None
        self._drop_prompts()
        self.session.reset()
        self._show(None)
        return edit

    def _drop_prompts(self):
        """Remove the clicks and strokes of the current object (boxes stay, as before)."""
        self.points.data = np.zeros((0, 2))
        self._clear_strokes()
