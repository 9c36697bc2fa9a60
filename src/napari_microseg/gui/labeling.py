"""The Label dock's logic: prompt layers, live preview, commit/undo, box batches.

:class:`LabelingController` owns one :class:`PromptSession` and the three helper
layers (clicks, boxes, preview) of its image. Helper layers are kept per image
and reused (``"<image> prompts"``, ``"<image> box prompts"``, ``"<image> preview"``),
marked with ``metadata["microseg_helper"]`` so that no dock offers them as data;
:func:`~.layer_data.remove_helpers` drops them with their image. The controller has no widgets,
so tests drive it with a viewer and simulated mouse events. Editing existing objects and
scribble/lasso prompts live in :mod:`.label_edit` (:class:`~.label_edit.EditStrokeMixin`). Model work (embedding, predictions, box
batches, segment-everything) runs in worker threads; the GUI thread only
updates layers.
"""

from __future__ import annotations

import weakref
from html import escape

import numpy as np
import pandas as pd

from ..core.annotate import commit_mask, mask_window, read_box_file, undo_edit
from ..core.classes import ClassTable, DefectClass
from ..core.correct import id_areas
from ..core.errors import LabelsError, MicrosegError
from ..core.prompting.base import Prediction
from ..core.prompting.everything import segment_everything
from ..core.prompting.session import PromptSession
from ..core.prompting.strokes import predict_with_strokes
from .label_edit import EditStrokeMixin
from .layer_data import (
    class_features,
    find_helper,
    helper_metadata,
    layer_class_table,
    layer_classes,
    layer_pixel_size,
)
from .workers import start_worker

#: Roles (and name suffixes) of the per-image helper layers.
POINTS_LAYER = "prompts"
BOXES_LAYER = "box prompts"
PREVIEW_LAYER = "preview"
CANDIDATES_LAYER = "candidates"

#: Which controller currently drives each reused helper layer (to unhook the previous one).
_OWNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

POSITIVE, NEGATIVE = "#00ff00", "#ff3030"

SHORTCUTS = {
    "C": "commit the preview as a new object (then start the next one)",
    "N": "next object: drop the current clicks without committing",
    "Shift-C": "clear every click and box",
    "Control-Z": "undo the last commit (or box batch)",
    "left click": "positive click (object)",
    "right click / Alt+click": "negative click (background)",
    "draw a rectangle": "box prompt (in the image's 'box prompts' layer)",
    "Shift+drag": "positive scribble inside the object (or a lasso around it, when chosen)",
    "Shift+Alt+drag / Shift+right-drag": "negative scribble across background or a neighbour",
    "Control+click": "edit the object under the cursor (target, model or ground-truth layer)",
    "Escape": "cancel the edit (the object stays as it was)",
}


def prompt_image(image_layer) -> tuple:
    """``(data, contrast limits)`` a prompt session is prepared on (a lazy array stays lazy)."""
    data = image_layer.data
    return (data if hasattr(data, "chunks") else np.asarray(data)), tuple(image_layer.contrast_limits)


class LabelingController(EditStrokeMixin):
    """Interactive prompting on one image into one Labels layer.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    backend : PromptBackend
        Model to prompt (never random weights: build it with
        :func:`~napari_microseg.core.prompting.registry.make_backend`).
    cache : EmbeddingCache, optional
        Disk cache for embeddings.
    """

    def __init__(self, viewer, backend, cache=None):
        self.viewer = viewer
        self.session = PromptSession(backend, cache)
        self.image_layer = None
        self.labels_layer = None
        self.class_id = 0
        #: Optional callable giving the class name to commit now (the dock's class menu);
        #: read at every commit, so what the user sees is what is stored.
        self.current_class = None
        self.overwrite = False
        self.history: list[list] = []
        #: Size a first click like the committed objects of its class (the dock's check box).
        self.size_prior = True
        self.ready = False
        self._busy = False
        self._dirty = False
        self._preview_window = None  # the preview mask's bounding box (what the next preview clears)
        self._last_pred = None
        self._cancel = False
        self.status = ""
        #: Optional callable run after every change of the labels (commit, edit, undo, batch);
        #: the dock's automatic adaptation counts the objects there.
        self.on_labels_changed = None
        self._init_edit_state()

    # -- set up ----------------------------------------------------------------------

    def set_target(self, image_layer, labels_layer, *, on_ready=None, progress=None):
        """Use ``image_layer`` for prompting and write objects into ``labels_layer``.

        The embedding (if the backend needs one) is computed or read from the
        cache in a worker; clicks are accepted once it is ready.
        """
        data, contrast = prompt_image(image_layer)
        if image_layer.rgb or np.ndim(data) != 2:
            raise MicrosegError(f"{image_layer.name}: prompting needs a 2-D grey image.")
        if tuple(labels_layer.data.shape) != tuple(data.shape):
            raise MicrosegError(f"{labels_layer.name} is {labels_layer.data.shape}, {image_layer.name} is {data.shape}.")
        self.image_layer, self.labels_layer = image_layer, labels_layer
        self.history.clear()
        self.ready = False
        self.editing = None
        self._ensure_layers()
        self._cancel = False
        labels, (inst, _) = labels_layer.data, self._classes()

        def work():
            status = self.session.set_image(data, contrast_limits=contrast, progress=progress,
                                            cancel=lambda: self._cancel)
            # objects already in the labels size first clicks too (core.prompting.size_prior);
            # a lazy (chunked) layer is not read whole for it
            if isinstance(labels, np.ndarray):
                for i, area in zip(*id_areas(labels), strict=True):
                    self.session.note_committed(int(area), key=inst.get(int(i), 0))
            return status

        def done(status):
            self.ready = True
            self.status = f"{self.session.backend.name}: {status}"
            if on_ready is not None:
                on_ready(self.status)

        return start_worker(work, on_returned=done, progress_bar={"desc": "Preparing image"})

    def cancel_preparation(self):
        """Stop a running embedding between two tiles."""
        self._cancel = True

    def _ensure_layers(self):
        """Reuse (or make) this image's prompts, box prompts and preview layers, emptied."""
        v, img = self.viewer, self.image_layer
        common = dict(scale=img.scale[-2:], translate=img.translate[-2:], units=img.units[-2:])
        shape = tuple(img.data.shape[:2])

        def helper(role, make):
            layer = find_helper(v, img.name, role)
            if layer is not None and layer.ndim == 2 and (role != PREVIEW_LAYER or layer.data.shape == shape):
                layer.scale, layer.translate = common["scale"], common["translate"]
                return layer
            if layer is not None:
                v.layers.remove(layer)
            return make(name=f"{img.name} {role}", metadata=helper_metadata(img.name, role), **common)

        self.preview = helper(PREVIEW_LAYER, lambda **kw: v.add_labels(np.zeros(shape, np.uint8), opacity=0.6, **kw))
        self.boxes = helper(BOXES_LAYER, lambda **kw: v.add_shapes(face_color="transparent", edge_color="yellow",
                                                                 edge_width=2, ndim=2, **kw))
        self.points = helper(POINTS_LAYER, lambda **kw: v.add_points(
            ndim=2, size=max(4.0, shape[0] / 100), border_width=0,
            features=pd.DataFrame({"positive": pd.Series([], dtype=bool)}), **kw))
        self._ensure_stroke_layer(common)
        for layer in (self.points, self.boxes, self.preview):
            old = _OWNERS.get(layer)
            if old is not None and old is not self:
                old._release(layer)
            _OWNERS[layer] = self
            self._bind_keys(layer)
        if self._on_mouse not in self.points.mouse_drag_callbacks:
            self.points.mouse_drag_callbacks.append(self._on_mouse)
        self.boxes.events.data.disconnect(self._on_boxes_changed)
        self.boxes.events.data.connect(self._on_boxes_changed)
        self.points.data = np.zeros((0, 2))
        with self.boxes.events.data.blocker():
            self.boxes.data = []
        self.preview.data = np.zeros(shape, np.uint8)
        self._preview_window = None
        v.layers.selection.active = self.points

    def _release(self, layer):
        """Stop reacting to ``layer`` (another controller took it over)."""
        if self._on_mouse in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._on_mouse)
        layer.events.data.disconnect(self._on_boxes_changed)

    def _bind_keys(self, layer):
        layer.bind_key("c", lambda _l: self.commit(), overwrite=True)
        layer.bind_key("n", lambda _l: self.next_object(), overwrite=True)
        layer.bind_key("Shift-C", lambda _l: self.clear(), overwrite=True)
        layer.bind_key("Control-Z", lambda _l: self.undo(), overwrite=True)
        if layer is not getattr(self, "boxes", None):  # a Shapes layer's Escape finishes a drawing
            layer.bind_key("Escape", lambda _l: self.cancel_edit(), overwrite=True)

    # -- prompts -----------------------------------------------------------------------

    def add_click(self, rowcol, label: int = 1):
        """Add a click at ``(row, col)`` image pixels and update the preview."""
        if not self.ready:
            self.status = "The image is still being prepared; try again in a moment."
            return
        h, w = self.preview.data.shape
        r, c = float(rowcol[0]), float(rowcol[1])
        if not (0 <= r <= h - 1 and 0 <= c <= w - 1):
            return
        from napari.utils.colormaps.standardize_color import transform_color

        self.points.feature_defaults = {"positive": bool(label)}
        self.points.add([[r, c]])
        colors = np.array(self.points.face_color)
        colors[-1] = transform_color(POSITIVE if label else NEGATIVE)[0]
        self.points.face_color = colors
        self.request_preview()

    def prompts(self) -> dict:
        """Current clicks and the last box, in image pixels."""
        pts = np.asarray(self.points.data, dtype=float).reshape(-1, 2)
        feats = self.points.features
        labels = (feats["positive"].astype(bool).to_numpy().astype(int) if "positive" in feats
                  else np.ones(len(pts), int))
        box = None
        if len(self.boxes.data):
            corners = np.asarray(self.boxes.data[-1])
            box = np.array([*corners.min(0), *corners.max(0)])
        return {"points": pts, "labels": labels[: len(pts)], "box": box}

    def _on_boxes_changed(self, event=None):
        if getattr(event, "action", "added") in ("added", "changed"):
            self.request_preview()

    def request_preview(self):
        """Predict from the current prompts in a worker; coalesce clicks made meanwhile."""
        p = self.prompts()
        if len(p["points"]) == 0 and p["box"] is None and self.strokes.empty:
            start = self.editing.region.full(self.preview.data.shape) if self.editing is not None else None
            self._show(None if start is None else Prediction(start, 1.0, None))
            return None
        if self._busy:
            self._dirty = True
            return None
        self._busy = True

        def finished():
            self._busy = False
            if self._dirty:
                self._dirty = False
                self.request_preview()

        # A box not seen by the last preview outlines an object afresh: refining from the
        # previous mask (another box's object) would give an empty or wrong preview.
        fresh = p["box"] is not None and not np.array_equal(p["box"], getattr(self, "_preview_box", None))
        self._preview_box = p["box"]
        # a first click is sized like the committed objects of the class (core.prompting.size_prior)
        self.session.size_prior = self.size_prior
        self.session.size_key = self.class_for_commit(layer_class_table(self.labels_layer))
        strokes = self.strokes
        return start_worker(_predict_in_window, self.session, strokes, p["points"], p["labels"], p["box"],
                            use_previous=not fresh, on_returned=lambda out: self._show(*out),
                            on_finished=finished)

    def _show(self, pred, window=None):
        """Show ``pred`` as the preview (None: no preview).

        Only the pixels that change are written, within the previous and the new
        mask's bounding boxes (``window``, computed in the worker), so that a click
        costs the GUI thread the same on a 512² and an 8192² image.
        """
        self._last_pred = pred
        if pred is not None and window is None:
            window = mask_window(pred.mask)
        old, self._preview_window = self._preview_window, window
        region = _union(old, window)
        if region is None:
            return
        want = np.zeros(tuple(r.stop - r.start for r in region), np.uint8)
        if pred is not None:
            want[np.asarray(pred.mask[region], bool)] = 1
        changed = np.nonzero(want != np.asarray(self.preview.data[region]))
        if changed[0].size:
            with self.preview.block_history():
                self.preview.data_setitem(tuple(ix + r.start for ix, r in zip(changed, region, strict=True)),
                                          want[changed])

    # -- edits -------------------------------------------------------------------------

    def _classes(self) -> tuple[dict, ClassTable]:
        return layer_classes(self.labels_layer)

    def class_for_commit(self, classes: ClassTable) -> int:
        """The class id new objects get: the dock's shown class when known, else :attr:`class_id`."""
        name = self.current_class() if self.current_class is not None else None
        if name is not None:
            try:
                self.class_id = classes.id_of(name)
            except LabelsError:
                pass
        return self.class_id

    def _write_back(self, inst: dict, classes: ClassTable):
        layer = self.labels_layer
        layer.metadata["classes"] = classes.to_list()
        layer.features = class_features(layer.data, inst, classes)
        layer.refresh()
        if self.on_labels_changed is not None:
            self.on_labels_changed()

    def swap_backend(self, backend, *, on_ready=None):
        """Prompt with ``backend`` from now on, keeping the target, the prompts and the undo steps.

        The image is prepared for it in a worker; the old backend answers clicks
        until the new one is ready.
        """
        session = PromptSession(backend, self.session.cache)
        data, contrast = prompt_image(self.image_layer)

        def done(status):
            for key, area in self.session.committed:  # what sizes first clicks goes along
                session.note_committed(area, key=key)
            self.session = session
            self.status = f"{backend.name}: {status}"
            if on_ready is not None:
                on_ready(self.status)

        return start_worker(session.set_image, data, contrast_limits=contrast, on_returned=done,
                            progress_bar={"desc": "Preparing image"})

    def commit(self):
        """Write the preview into the labels layer as a new instance of the current class.

        When an object is being edited, replace it instead (see :mod:`.label_edit`).
        """
        if self.editing is not None:
            return self._commit_edit()
        if self._last_pred is None or not self._last_pred.mask.any():
            self.status = "Nothing to commit: click on an object first."
            return None
        inst, classes = self._classes()
        edit = commit_mask(self.labels_layer.data, self._last_pred.mask, inst,
                           class_id=self.class_for_commit(classes), overwrite=self.overwrite)
        if edit is None:
            self.status = "The object lies under existing labels (tick 'overwrite' to replace them)."
        else:
            self.history.append([edit])
            self._write_back(inst, classes)
            self.session.note_committed(len(edit.index[0]), key=edit.class_id)
            self.status = f"Committed object {edit.label}.{self._hint_note()}"
        self._drop_used_prompts()
        return edit

    def _hint_note(self) -> str:
        """What sizes the next first click (the offline model uses it), for the status line."""
        hint = self.session.size_hint_for(self.class_id)
        if hint is None or not self.size_prior or not getattr(self.session.backend, "uses_size_hint", False):
            return ""
        return f" First clicks now look for objects of about {hint:.0f} px (the median of this class)."

    def _drop_used_prompts(self):
        self._drop_prompts()
        if len(self.boxes.data):
            with self.boxes.events.data.blocker():
                self.boxes.data = self.boxes.data[:-1]
        self.session.reset()
        self._show(None)

    def next_object(self):
        """Start a new object without committing the current one (an edit is cancelled)."""
        self._drop_prompts()
        self.editing = None
        self.session.reset()
        self._show(None)

    def clear(self):
        """Remove every click, stroke and box (an edit is cancelled)."""
        self._drop_prompts()
        self.editing = None
        with self.boxes.events.data.blocker():
            self.boxes.data = []
        self.session.reset()
        self._show(None)

    def undo(self):
        """Undo the last commit or box batch."""
        if not self.history:
            self.status = "Nothing to undo."
            return False
        inst, classes = self._classes()
        edits = self.history.pop()
        for edit in reversed(edits):
            undo_edit(self.labels_layer.data, inst, edit)
        self.session.forget_committed(len(edits))
        self._write_back(inst, classes)
        self.status = "Undone."
        return True

    # -- batches -----------------------------------------------------------------------

    def load_boxes(self, path):
        """Add the boxes of a ``ymin xmin ymax xmax`` file as rectangles."""
        boxes = read_box_file(path, self.preview.data.shape)
        rects = [np.array([[b[0], b[1]], [b[2], b[3]]]) for b in boxes]
        with self.boxes.events.data.blocker():
            self.boxes.add_rectangles(rects) if rects else None
        return len(rects)

    def segment_all_boxes(self, on_done=None, progress=None):
        """One object per rectangle, predicted in a worker, committed as one undo step."""
        boxes = [np.array([*np.asarray(r).min(0), *np.asarray(r).max(0)]) for r in self.boxes.data]
        if not boxes:
            raise MicrosegError("Draw or load some boxes first.")

        def work():
            masks = []
            for i, b in enumerate(boxes):
                self.session.reset()
                masks.append(self.session.predict(box=b).mask)
                if progress is not None:
                    progress((i + 1) / len(boxes))
            self.session.reset()
            return masks

        def done(masks):
            n = self.commit_masks(masks)
            with self.boxes.events.data.blocker():
                self.boxes.data = []
            self._show(None)  # the boxes are used up: no stale preview of the last one
            if on_done is not None:
                on_done(n)

        return start_worker(work, on_returned=done, progress_bar={"desc": "Segmenting boxes"})

    def commit_masks(self, masks) -> int:
        """Commit several masks as one undo step; return how many were written."""
        inst, classes = self._classes()
        class_id = self.class_for_commit(classes)
        edits = [e for m in masks if (e := commit_mask(self.labels_layer.data, m, inst,
                                                      class_id=class_id, overwrite=self.overwrite))]
        if edits:
            self.history.append(edits)
            self._write_back(inst, classes)
            for e in edits:
                self.session.note_committed(len(e.index[0]), key=e.class_id)
        return len(edits)

    def find_candidates(self, *, spacing: float = 32.0, min_area_nm2: float = 0.0, on_done=None, progress=None):
        """Segment everything into a 'candidates' layer to accept or reject in bulk."""
        ps = layer_pixel_size(self.image_layer)
        min_px = int(np.ceil(min_area_nm2 / ps.area_nm2)) if ps.calibrated and min_area_nm2 else 10

        def done(cand):
            if CANDIDATES_LAYER in self.viewer.layers:
                self.viewer.layers.remove(CANDIDATES_LAYER)
            img = self.image_layer
            self.viewer.add_labels(cand, name=CANDIDATES_LAYER, opacity=0.5, scale=img.scale[-2:],
                                   translate=img.translate[-2:], units=img.units[-2:],
                                   metadata=helper_metadata(img.name, CANDIDATES_LAYER))
            if on_done is not None:
                on_done(int(cand.max()))

        return start_worker(segment_everything, self.session, spacing=spacing, min_area_px=min_px,
                            progress=progress, on_returned=done,
                            progress_bar={"desc": "Segmenting everything"})

    def accept_candidates(self) -> int:
        """Commit every remaining candidate (erase unwanted ones first) as one undo step."""
        if CANDIDATES_LAYER not in self.viewer.layers:
            return 0
        cand = np.asarray(self.viewer.layers[CANDIDATES_LAYER].data)
        masks = [cand == i for i in np.unique(cand) if i > 0]
        n = self.commit_masks(masks)
        self.viewer.layers.remove(CANDIDATES_LAYER)
        return n

    def reject_candidates(self):
        """Drop every candidate."""
        if CANDIDATES_LAYER in self.viewer.layers:
            self.viewer.layers.remove(CANDIDATES_LAYER)

    # -- classes -----------------------------------------------------------------------

    def add_class(self, name: str, color: str) -> int:
        """Add a class to the target layer's class table; return its id."""
        inst, classes = self._classes()
        new_id = max((c.id for c in classes), default=0) + 1
        classes.add(DefectClass(new_id, name, color))
        self._write_back(inst, classes)
        return new_id


def shortcuts_html() -> str:
    """The keyboard shortcuts as an HTML list for the dock."""
    return "<br>".join(f"<b>{escape(k)}</b>: {escape(v)}" for k, v in SHORTCUTS.items())


def _predict_in_window(*args, **kwargs):
    """:func:`predict_with_strokes` and the bounding box of its mask (in the worker, not the GUI thread)."""
    pred = predict_with_strokes(*args, **kwargs)
    return pred, mask_window(pred.mask)


def _union(a, b):
    """The smallest window holding windows ``a`` and ``b`` (either may be None)."""
    if a is None or b is None:
        return a if b is None else b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True))
