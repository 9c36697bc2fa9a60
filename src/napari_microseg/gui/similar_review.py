"""Review "find similar" candidates in napari: colour by score, threshold, accept, reject, undo.

:class:`CandidateReview` owns the candidates helper layer of one image (a Labels
layer marked with ``metadata["microseg_helper"]``, outlines coloured from red,
low score, to green, high score) and writes accepted candidates into the user's Labels
layer. It has no widgets, so tests drive it with a viewer and simulated mouse
events; the Find similar dock is a thin shell around it.

* The score threshold only redraws the layer: its data holds, on the outlines
  of the shown candidates (undecided, scoring at least the threshold) only,
  each one's score level (1-255, :func:`score_levels`), drawn through one
  fixed 8-bit colour table (:func:`score_colormap`). Nothing is recomputed,
  and napari never rebuilds a colour table for a slider move, accept, undo
  or round. Which candidate is where is read from the candidates' own
  labels, not from the layer.
* An accept writes the candidates' pixels with new ids and the chosen class,
  only where the labels layer is background (committed pixels are never
  changed), with napari's ``Labels.data_setitem`` inside
  ``Labels.block_history()``: one accept, whatever its number of objects, is
  one step of the layer's own undo history (Ctrl+Z on the layer).
* Classes are not pixels: they are kept in ``layer.features`` and the class
  table in ``layer.metadata["classes"]`` as the Label dock writes them, and
  remembered per pixel state (:class:`~napari_microseg.core.correct.ClassStates`)
  so that undo and redo bring them back. An undone accept makes its candidates
  undecided (visible) again; a redo accepts (hides) them again.
* Left click on a candidate accepts it, right click (or Alt+click) rejects it;
  a right click on background is a negative click for the next round.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..core.correct import ClassStates, areas_fingerprint, fingerprint, id_areas, id_counts
from ..core.errors import LabelsError, MicrosegError
from .clicks import click_callback
from .colormaps import direct_colormap
from .label_edit import click_label
from .layer_data import class_features, find_helper, helper_metadata, layer_classes

#: Role (and name suffix) of the candidates helper layer.
CANDIDATES_ROLE = "similar candidates"
LOW, HIGH = np.array([0.9, 0.1, 0.1, 1.0], np.float32), np.array([0.1, 0.9, 0.2, 1.0], np.float32)
MID = np.array([1.0, 0.85, 0.0, 1.0], np.float32)
#: Outline width (px) of the candidates.
CONTOUR = 2


def candidate_outlines(labels: np.ndarray, width: int = CONTOUR) -> np.ndarray:
    """``labels`` kept only on a band of ``width`` px inside each object's border.

    The candidates layer holds these outlines as its data (napari's own
    ``contour`` would recompute them over the whole image at every redraw,
    i.e. at every slider move); compute them in the worker for large images.
    The outlines come as the smallest type that holds the ids
    (:func:`display_dtype`): the review keeps them for every redraw.
    """
    labels = np.asarray(labels)
    size = 2 * int(width) + 1
    edge = (ndi.minimum_filter(labels, size=size, mode="nearest") != labels)
    edge |= ndi.maximum_filter(labels, size=size, mode="nearest") != labels
    border = np.zeros(labels.shape, bool)  # objects cut by the image edge are outlined there too
    border[:width], border[-width:], border[:, :width], border[:, -width:] = True, True, True, True
    out = np.where((edge | border) & (labels > 0), labels, 0)
    return out.astype(display_dtype(int(out.max()) if out.size else 0), copy=False)


def display_dtype(max_id: int) -> np.dtype:
    """uint8 or uint16 when ``max_id`` fits, else int32 or int64: the narrowest type for ids up to ``max_id``.

    The review keeps every candidate's outline for its redraws (a table
    look-up over the whole image at every slider move, accept and undo):
    16 bits instead of 32 halve what each redraw reads.
    """
    for dtype in (np.uint8, np.uint16, np.int32):
        if max_id <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def present_ids(data: np.ndarray) -> np.ndarray:
    """The ids (0 included) occurring in ``data``, sorted; a linear count, not a sort, when it can."""
    counts = id_counts(data)
    return np.flatnonzero(counts) if counts is not None else np.unique(np.asarray(data))


#: Score levels the candidates layer draws (its data is uint8: 0 is nothing drawn).
LEVELS = 255


def score_levels(scores, lo: float, hi: float) -> np.ndarray:
    """uint8 level 1..:data:`LEVELS` of each score in ``[lo, hi]`` (the middle one when ``hi <= lo``)."""
    scores = np.asarray(scores, float)
    t = np.full(scores.shape, 0.5) if hi <= lo else np.clip((scores - lo) / (hi - lo), 0.0, 1.0)
    return (1 + np.round(t * (LEVELS - 1))).astype(np.uint8)


def score_colormap():
    """The candidates layer's colour table: level ``k`` coloured like the score ``(k - 1) / 254``."""
    clear = np.zeros(4, np.float32)
    colors = {None: clear, 0: clear}
    colors.update({k: score_color((k - 1) / (LEVELS - 1)) for k in range(1, LEVELS + 1)})
    return direct_colormap(colors)


def score_color(score: float, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """RGBA float32 for ``score``: red (``lo``) through yellow to green (``hi``)."""
    t = 0.5 if hi <= lo else float(np.clip((score - lo) / (hi - lo), 0.0, 1.0))
    if t < 0.5:
        return LOW + (MID - LOW) * (2 * t)
    return MID + (HIGH - MID) * (2 * t - 1)


class CandidateReview:
    """Candidates of one image, reviewed into one Labels layer.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    image_layer : napari.layers.Image
        The image the candidates were proposed on (the helper layer's grid).
    labels_layer : napari.layers.Labels
        The user's committed objects; accepted candidates are added to it.
    class_id : int
        Class given to accepted candidates (0 = unclassified).
    """

    def __init__(self, viewer, image_layer, labels_layer, class_id: int = 0):
        self.viewer = viewer
        self.image_layer = image_layer
        self.labels_layer = labels_layer
        self.class_id = int(class_id)
        self.candidates = None
        self.layer = None
        self._outlines, self._levels = None, None  # every candidate's outline, and its score level
        self.threshold = 0.0
        #: candidate id -> committed id of the current round's accepted candidates
        self.accepted: dict[int, int] = {}
        #: :attr:`accepted` per pixel state of this round (labels fingerprint), for undo and redo;
        #: the same bounded memory as the classes' (int -> int maps)
        self._accepted_at = ClassStates()
        self.rejected: set[int] = set()
        #: negative clicks (row, col) on background since the last round
        self.negatives: list[tuple[float, float]] = []
        #: called with the status text after every decision (the dock shows it)
        self.on_status = None
        self._status = ""
        self._states = ClassStates()
        self._on_mouse = click_callback(self._on_click)
        self._writing = False
        self._remember(layer_classes(labels_layer)[0])
        labels_layer.events.set_data.connect(self._on_labels_changed)
        labels_layer.events.paint.connect(self._on_labels_changed)

    @property
    def status(self) -> str:
        """What the last action did, in words."""
        return self._status

    @status.setter
    def status(self, text: str) -> None:
        self._status = text
        if self.on_status is not None:
            self.on_status(text)

    # -- candidates ----------------------------------------------------------------------

    def show(self, candidates, outlines=None) -> None:
        """Show a new round of ``candidates`` (decisions start afresh).

        ``outlines``: :func:`candidate_outlines` of the candidates, when the
        caller computed them in its worker (else they are computed here).
        """
        self.candidates = candidates
        self.accepted, self.rejected, self.negatives = {}, set(), []
        self._accepted_at = ClassStates()
        self._accepted_at.remember(self._last_fp, {})
        data = candidate_outlines(candidates.labels) if outlines is None else np.asarray(outlines)
        top = max(len(candidates.scores), int(data.max()) if data.size else 0)
        self._outlines, self._levels = data, np.zeros(top + 1, np.uint8)
        self._levels[1:len(self.scores) + 1] = score_levels(self.scores, *self.score_range())
        data = self._drawn()
        img = self.image_layer
        layer = find_helper(self.viewer, img.name, CANDIDATES_ROLE)
        if layer is not None and tuple(layer.data.shape) == data.shape:
            layer.data = data
            layer.colormap = score_colormap()  # 256 colours: a few ms
        else:
            if layer is not None:
                self.viewer.layers.remove(layer)
            layer = self.viewer.add_labels(
                data, name=f"{img.name} {CANDIDATES_ROLE}", opacity=0.9, scale=img.scale[-2:],
                translate=img.translate[-2:], units=img.units[-2:], colormap=score_colormap(),
                metadata=helper_metadata(img.name, CANDIDATES_ROLE))
        # outlines (the data): candidates read apart from the committed (filled) objects under them
        layer.contour = 0
        layer.editable = False  # a review layer: clicks decide, no brush changes the candidates
        self.layer = layer
        if self._on_mouse not in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.append(self._on_mouse)
        # the candidates layer is the active one while reviewing: its Ctrl+Z undoes the last accept
        layer.bind_key("Control-Z", lambda _layer: self.undo(), overwrite=True)
        self.viewer.layers.selection.active = layer

    @property
    def scores(self) -> np.ndarray:
        """Score of candidate ``i + 1`` at ``[i]`` (empty before the first round)."""
        return np.zeros(0) if self.candidates is None else np.asarray(self.candidates.scores, dtype=float)

    def score_range(self) -> tuple[float, float]:
        """``(low, high)`` for the slider: [0, 1] widened to the scores."""
        s = self.scores[np.isfinite(self.scores)]
        return (min(0.0, float(s.min())) if s.size else 0.0, max(1.0, float(s.max())) if s.size else 1.0)

    def undecided(self) -> np.ndarray:
        """Ids of the candidates neither accepted nor rejected."""
        decided = np.zeros(len(self.scores) + 1, bool)
        decided[[i for i in (*self.accepted, *self.rejected) if 0 < i < decided.size]] = True
        return np.flatnonzero(~decided[1:]) + 1

    def visible_ids(self) -> np.ndarray:
        """Undecided candidates scoring at least the threshold (those shown)."""
        ids = self.undecided()
        return ids[self.scores[ids - 1] >= self.threshold] if ids.size else ids

    def set_threshold(self, value: float) -> int:
        """Show only candidates scoring ``value`` or more; return how many are shown."""
        self.threshold = float(value)
        return self.recolor()

    def _drawn(self, shown=None) -> np.ndarray:
        """Score levels on the outlines of the ``shown`` candidates (default: :meth:`visible_ids`), others 0."""
        shown = self.visible_ids() if shown is None else shown
        keep = np.zeros(len(self._levels), np.uint8)
        keep[shown] = self._levels[shown]
        return keep[self._outlines]

    def drawn_ids(self) -> np.ndarray:
        """Ids of the candidates the layer draws now (read back from its pixels)."""
        if self.layer is None or self._outlines is None:
            return np.zeros(0, int)
        ids = np.unique(self._outlines[np.asarray(self.layer.data) > 0])
        return ids[ids > 0]

    def recolor(self) -> int:
        """Draw the shown candidates (coloured by score), not the others; return how many are shown."""
        if self.layer is None or self._outlines is None:
            return 0
        shown = self.visible_ids()
        self.layer.data = self._drawn(shown)
        return len(shown)

    def id_at(self, rowcol) -> int:
        """The shown candidate at ``(row, col)`` image pixels, or 0."""
        if self.layer is None or self.candidates is None:
            return 0
        data = np.asarray(self.candidates.labels)  # not the layer's pixels: a brush may have touched them
        r, c = int(round(float(rowcol[0]))), int(round(float(rowcol[1])))
        if not (0 <= r < data.shape[0] and 0 <= c < data.shape[1]):
            return 0
        i = int(data[r, c])
        return i if i in set(self.visible_ids().tolist()) else 0

    # -- decisions -----------------------------------------------------------------------

    def accept(self, ids) -> int:
        """Add candidates ``ids`` to the labels layer as one undo step; return how many were added.

        Each gets a new id (above every id in use) and :attr:`class_id`; only
        background pixels are written, so committed objects never change. A
        candidate whose pixels are all taken is skipped.
        """
        if self.candidates is None:
            return 0
        ids = [int(i) for i in ids if int(i) not in self.accepted and int(i) not in self.rejected]
        if not ids:
            return 0
        layer = self.labels_layer
        labels = np.asarray(layer.data)
        cand = np.asarray(self.candidates.labels)
        if cand.shape != labels.shape:
            raise LabelsError(f"The candidates ({cand.shape}) do not fit {layer.name} ({labels.shape}).")
        wanted = np.zeros(int(cand.max()) + 1, bool)
        wanted[[i for i in ids if i < wanted.size]] = True
        free = wanted[cand] & (labels == 0)
        index = np.nonzero(free)
        present = np.unique(cand[index])
        if not present.size:
            self.status = "Those candidates lie under committed objects: nothing added."
            return 0
        base = int(labels.max()) + 1 if labels.size else 1
        top = base + len(present) - 1
        if top > np.iinfo(labels.dtype).max:
            raise LabelsError(f"{layer.name} holds {labels.dtype} ids: {top} does not fit; convert the layer "
                              "to a wider type.")
        lut = np.zeros(int(cand.max()) + 1, dtype=labels.dtype)
        new = np.arange(base, top + 1)
        lut[present] = new
        inst, classes = layer_classes(layer)
        step = {int(c): int(n) for c, n in zip(present, new, strict=True)}
        if self.class_id:
            inst.update({n: self.class_id for n in step.values()})
        # classes first: whoever listens to the paint event (the Correct dock) sees the new ones
        self._write_classes(inst, classes, np.union1d(present_ids(labels), new))
        self._writing = True
        try:
            with layer.block_history():
                layer.data_setitem(index, lut[cand[index]])
        finally:
            self._writing = False
        self._remember(inst)
        self.accepted.update(step)
        self._accepted_at.remember(self._last_fp, self.accepted)
        self.recolor()
        self.status = f"Accepted {len(step)} candidate{'s' * (len(step) != 1)} (ids {min(new)}–{max(new)})."
        return len(step)

    def accept_above(self) -> int:
        """Accept every shown candidate (undecided, score at least the threshold) as one undo step."""
        return self.accept(self.visible_ids())

    def reject(self, ids) -> int:
        """Reject undecided candidates ``ids`` (hidden; told to the next round); return how many."""
        ids = {int(i) for i in ids} - set(self.accepted) - self.rejected
        ids &= set(range(1, len(self.scores) + 1))
        self.rejected |= ids
        self.recolor()
        self.status = f"Rejected {len(ids)} candidate{'s' * (len(ids) != 1)}."
        return len(ids)

    def add_negative(self, rowcol) -> bool:
        """A negative click on background (no candidate there): told to the next round."""
        h, w = self.labels_layer.data.shape[-2:]
        r, c = float(rowcol[0]), float(rowcol[1])
        if not (0 <= r < h and 0 <= c < w):
            return False
        self.negatives.append((r, c))
        self.status = f"Negative click at ({r:.0f}, {c:.0f}): the next round learns it is background."
        return True

    def decisions(self) -> tuple[list[int], list[int]]:
        """``(accepted, rejected)`` candidate ids of the current round."""
        return sorted(self.accepted), sorted(self.rejected)

    def undo(self) -> bool:
        """Undo the last pixel edit of the labels layer (napari's history)."""
        if not self.labels_layer._undo_history:
            self.status = "Nothing to undo."
            return False
        self.labels_layer.undo()
        self.status = "Undone."
        return True

    # -- the labels layer ----------------------------------------------------------------

    def _write_classes(self, inst: dict, classes, ids: np.ndarray) -> None:
        """Features for the objects ``ids`` (``class_features`` needs only the ids, not the pixels)."""
        layer = self.labels_layer
        layer.metadata["classes"] = classes.to_list()
        layer.features = class_features(ids, inst, classes)

    def _remember(self, inst: dict) -> None:
        """``inst`` are the classes of the labels' pixel state now (for undo and redo)."""
        self._last_fp = fingerprint(np.asarray(self.labels_layer.data))
        self._states.remember(self._last_fp, inst)

    def _on_labels_changed(self, *_):
        """After undo, redo or painting: classes and accepts of that pixel state.

        An undone accept makes its candidates undecided (shown) again, and a
        redo hides them again; after painting, an accepted candidate whose
        object is gone is undecided again.
        """
        if self._writing:
            return
        layer = self.labels_layer
        data = np.asarray(layer.data)
        ids, counts = id_areas(data)  # one count serves the fingerprint and the present ids
        fp = areas_fingerprint(ids, counts)
        if fp == self._last_fp:
            return
        inst, classes = layer_classes(layer)
        remembered = self._states.recall(fp)
        present = set(ids.tolist())
        inst = remembered if remembered is not None else {i: c for i, c in inst.items() if i in present}
        self._write_classes(inst, classes, ids)
        self._last_fp = fp
        self._states.remember(fp, inst)
        known = self._accepted_at.recall(fp)  # undo or redo to a state of this round: its accepts
        if known is None:  # a new state (painting): accepts whose object is gone are undecided again
            known = {c: n for c, n in self.accepted.items() if n in present}
            self._accepted_at.remember(fp, known)
        if known != self.accepted:
            self.accepted = known
            self.recolor()

    def _on_click(self, layer, rowcol, event):
        cid = self.id_at(rowcol)
        positive = click_label(event)
        try:
            if cid:
                self.accept([cid]) if positive else self.reject([cid])
            elif not positive:
                self.add_negative(rowcol)
        except MicrosegError as e:
            self.status = str(e)

    def close(self) -> None:
        """Stop listening to the labels layer and remove the candidates layer."""
        for ev in (self.labels_layer.events.set_data, self.labels_layer.events.paint):
            ev.disconnect(self._on_labels_changed)
        layer, self.layer = self.layer, None
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
