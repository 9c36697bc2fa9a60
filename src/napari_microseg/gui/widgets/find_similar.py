"""Find similar dock: label a few objects, get all the others proposed with a score, review them.

Pick the image, the Labels layer holding the objects you committed, and the
class whose committed objects are the exemplars (the layer's class table, as
the Label dock writes it). *Find similar* proposes every other object of that
class (:class:`~napari_microseg.core.fewshot.FindSimilar`, in a worker with
progress and Cancel) into a candidates helper layer: outlines coloured by
score, red (low) to green (high). Review them with
:class:`~napari_microseg.gui.similar_review.CandidateReview`:

* the **score slider** shows only candidates scoring at least its value (live,
  nothing is recomputed);
* **Accept all above** adds the shown candidates to the Labels layer with new
  ids and the class, as one undo step (Ctrl+Z on the Labels layer, or *Undo*);
* **left click** a candidate accepts it (one undo step), **right click** (or
  Alt+click) rejects it; a right click on background is a negative click;
* **Next round** tells the method what was accepted and rejected and proposes
  again.

**search in** another open image applies what was learnt from the exemplars
to that image (:meth:`~napari_microseg.core.fewshot.FindSimilar.propose_on`,
tiled, any size): its candidates are reviewed the same way and accepted into
that image's own Labels layer (``"<image> labels"``, made with the exemplars'
class table when it does not exist). Next round needs the exemplars' image.

Committed pixels are never changed: candidates only fill background.

*Classify like these* learns from the classified objects of the Labels layer
(two classes or more;
:class:`~napari_microseg.core.fewshot.classify.ObjectClassifier`) and shows a
class and a confidence for every object in a table (least confident first;
clicking a row selects that object, for the Correct dock's *Set class*) and as
colours in a helper layer. *Apply classes* writes the predicted classes into
the Labels layer for the objects that are not examples; they are remembered as
predictions (``metadata["microseg_predicted_classes"]``), so that after you
correct some of them a rerun learns from your corrections, not from its own
guesses. *Undo Apply classes* gives the objects their classes from before, as
one step (corrections made since stay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, Container, FloatSlider, PushButton
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from ...core.errors import MicrosegError
from ..layer_data import (
    class_features,
    find_helper,
    helper_metadata,
    is_helper_layer,
    layer_classes,
    layer_pixel_size,
)
from ..layer_follow import LayerFollower, layer_picker
from ..similar_review import CandidateReview, candidate_outlines, present_ids
from ..table_view import DataFrameView
from ..workers import alive, start_worker

if TYPE_CHECKING:
    import napari

#: Labels metadata key: ``{instance id: class id}`` that *Apply classes* wrote (predictions, not examples).
PREDICTED_KEY = "microseg_predicted_classes"
#: Role (and name suffix) of the helper layer showing predicted classes.
PREDICTED_ROLE = "predicted classes"

#: "masks from" choices -> FindSimilar ``backend`` ("default": the promptable model up to
#: 4096², the pixel classifier above; :func:`~napari_microseg.core.fewshot.masks.mask_source`).
MASK_SOURCES = {"pixel classifier": "none", "promptable model": "default"}

HELP = (
    "Candidates are outlined in colours of their score, red (low) to green (high). Slider: show candidates "
    "scoring at least this. Left click a candidate: accept it; right click or Alt+click: reject "
    "it; right click on background: a negative click (the candidates layer must be the active "
    "layer). Every accept is one undo step of the "
    "labels layer (Ctrl+Z there, or Undo here). Next round retrains with your decisions."
)


def make_finder(image, **kwargs):
    """A :class:`~napari_microseg.core.fewshot.FindSimilar` on ``image`` (tests replace this)."""
    from ...core.fewshot import FindSimilar

    return FindSimilar(image, **kwargs)


def make_classifier(image, labels, pixel_size):
    """A :class:`~napari_microseg.core.fewshot.classify.ObjectClassifier` (tests may replace this)."""
    from ...core.fewshot.classify import ObjectClassifier

    return ObjectClassifier(image, labels, pixel_size=pixel_size)


def with_outlines(candidates):
    """``(candidates, their outlines)``: the outlines are drawn in the worker, not the GUI thread."""
    if getattr(candidates, "cancelled", False):
        return candidates, None
    return candidates, candidate_outlines(candidates.labels)


def user_examples(labels_layer) -> dict[int, int]:
    """The Labels layer's classes the user gave: every class except an unchanged *Apply* prediction."""
    inst, _ = layer_classes(labels_layer)
    predicted = {int(k): int(v) for k, v in (labels_layer.metadata.get(PREDICTED_KEY) or {}).items()}
    return {i: c for i, c in inst.items() if predicted.get(i) != c}


class FindSimilarWidget(QWidget):
    """Dock widget: exemplar-driven find similar with review, and classify like these.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose image and Labels layers are used.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.review: CandidateReview | None = None
        self.finder = None
        self.worker = None
        self.prediction: pd.DataFrame | None = None
        self._predicted_for = None
        self._cancel = False
        self._fraction = 0.0
        self.image = layer_picker(viewer, "Image", "image")
        self.search_in = layer_picker(viewer, "Image", "search in", nullable=True)
        self.search_in.tooltip = ("Empty: the exemplars' image. Another open image: search it with what "
                                  "was learnt from the exemplars; accepted objects go to its own labels.")
        #: whether the shown candidates are on another image than the exemplars'
        self.cross_image = False
        self.labels = layer_picker(viewer, "Labels", "labels", nullable=True)
        self.klass = ComboBox(label="class", choices=[])
        self.klass.tooltip = "The committed objects of this class are the exemplars; accepted ones get it."
        self.masks = ComboBox(label="masks from", choices=list(MASK_SOURCES), value="promptable model")
        self.masks.tooltip = ("promptable model (default): the better-ranked candidates redrawn by SAM2 when "
                              "its weights are here, else by the offline promptable model (better masks and "
                              "scores, several times slower); pixel classifier: fast, no model (mosaics).")
        self.find_button = PushButton(text="Find similar")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.score = FloatSlider(label="min score", min=0.0, max=1.0, step=0.01, value=0.5)
        self.accept_button = PushButton(text="Accept all above", enabled=False)
        self.next_button = PushButton(text="Next round", enabled=False)
        self.undo_button = PushButton(text="Undo (Ctrl+Z)", enabled=False)
        self.classify_button = PushButton(text="Classify like these")
        self.apply_button = PushButton(text="Apply classes", enabled=False)
        self.unapply_button = PushButton(text="Undo Apply classes", enabled=False)
        #: ``(labels layer, classes before, predictions before)`` of each Apply classes, last on top
        self._applied: list[tuple] = []
        self.params = Container(widgets=[
            self.image, self.labels, self.klass, self.masks, self.search_in, self.find_button, self.cancel_button, self.score,
            self.accept_button, self.next_button, self.undo_button, self.classify_button, self.apply_button,
            self.unapply_button,
        ])
        for w in (self.find_button, self.score, self.accept_button, self.next_button):
            w.tooltip = HELP
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.status = QLabel("Commit a few objects of one class (Label dock), then press Find similar.")
        self.help = QLabel(HELP)
        self.table = DataFrameView()
        self.table.setMinimumHeight(120)
        self.table.setVisible(False)  # shown with the first classification
        layout = QVBoxLayout(self)
        layout.addWidget(self.params.native)
        layout.addWidget(self.progress)
        for w in (self.status, self.help):
            w.setWordWrap(True)
            layout.addWidget(w)
        layout.addWidget(self.table, 1)
        layout.addStretch(0)  # packs the dock to the top while the table is hidden
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(lambda: self.progress.setValue(int(1000 * self._fraction)))
        self._score_timer = QTimer(self)
        self._score_timer.setSingleShot(True)
        self._score_timer.setInterval(40)
        self._score_timer.timeout.connect(self._apply_score)
        self.find_button.changed.connect(self.find)
        self.cancel_button.changed.connect(self._on_cancel)
        self.score.changed.connect(self._on_score)
        self.accept_button.changed.connect(self.accept_above)
        self.next_button.changed.connect(self.next_round)
        self.undo_button.changed.connect(self.undo)
        self.classify_button.changed.connect(self.classify)
        self.apply_button.changed.connect(self.apply_classes)
        self.unapply_button.changed.connect(self.unapply_classes)
        self.table.row_clicked.connect(self._on_row)
        self.labels.changed.connect(self._refresh_classes)
        self._follow = LayerFollower(viewer, image=self.image, labels=self.labels)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self._on_removed)
        self._refresh_classes()

    # -- layers and classes --------------------------------------------------------------

    def reset_choices(self, *_):
        """Refresh the layer pickers (they follow the active layer unless the user chose one)."""
        self._follow.reset_choices()
        self.search_in.reset_choices()

    def _on_removed(self, event=None):
        layer = getattr(event, "value", None)
        rv = self.review
        if rv is not None and layer is not None and layer is rv.layer:  # the user closed the candidates
            rv.layer, rv.candidates = None, None
            self.accept_button.enabled = False
        elif rv is not None and layer is not None and layer in (rv.image_layer, rv.labels_layer):
            rv.close()
            self.review, self.finder = None, None
            self._enable_review(False)
        if layer is not None and not is_helper_layer(layer):

            helper = find_helper(self._viewer, layer.name, PREDICTED_ROLE)
            if helper is not None:
                self._viewer.layers.remove(helper)
        self.reset_choices()

    def _refresh_classes(self, *_):
        """Offer the Labels layer's classes; default to the class with the most committed objects."""
        layer = self.labels.value
        if layer is None:
            self.klass.choices = []
            return
        inst, classes = layer_classes(layer)
        shown = self.klass.value
        counts = pd.Series(list(inst.values()), dtype=np.int64).value_counts()
        with self.klass.changed.blocked():
            self.klass.choices = [(c.name, c.id) for c in classes]
            if shown not in [c.id for c in classes] and len(classes):
                shown = int(counts.index[0]) if len(counts) else next(iter(classes)).id
            self.klass.value = shown

    def _say(self, text: str, error: bool = False):
        if not alive(self.status):  # the dock was closed while a worker ran
            return
        self.status.setText(text)
        if error:
            from napari.utils.notifications import show_warning

            show_warning(text)

    def _inputs(self):
        """``(image layer, labels layer, class id, exemplar ids)``, or a MicrosegError."""
        image, labels = self.image.value, self.labels.value
        if image is None or labels is None:
            raise MicrosegError("Choose an image and the Labels layer holding your committed objects.")
        if image.rgb or image.multiscale or np.ndim(image.data) != 2:
            raise MicrosegError(f"{image.name}: Find similar works on a single 2-D grey image.")
        if tuple(labels.data.shape) != tuple(image.data.shape):
            raise MicrosegError(f"{labels.name} is {tuple(labels.data.shape)}, {image.name} is "
                                f"{tuple(image.data.shape)}: choose the labels made on this image.")
        self._refresh_classes()
        class_id = self.klass.value
        inst, classes = layer_classes(labels)
        if class_id is None:
            raise MicrosegError(f"{labels.name} has no class table: commit objects with the Label dock first.")
        present = set(present_ids(labels.data).tolist())
        ids = sorted(i for i, c in inst.items() if c == class_id and i in present)
        if not ids:
            raise MicrosegError(f"No committed object of class {classes[class_id].name!r} in {labels.name}: "
                                "commit a few (Label dock) first.")
        return image, labels, int(class_id), ids

    # -- find, review, next round -------------------------------------------------------

    def _on_cancel(self, *_):
        self._cancel = True
        self._say("Cancelling…")

    def _progress(self, fraction):
        self._fraction = float(np.clip(fraction, 0.0, 1.0))

    def _run(self, work, desc: str, on_done):
        """Run ``work`` in a worker with the dock's progress bar and Cancel."""
        self._cancel, self._fraction = False, 0.0
        self.progress.setValue(0)
        self._timer.start()
        for b in (self.find_button, self.next_button, self.accept_button, self.classify_button):
            b.enabled = False
        self.cancel_button.enabled = True

        def finished():
            self._timer.stop()
            self.progress.setValue(int(1000 * self._fraction))
            self.cancel_button.enabled = False
            self.find_button.enabled = self.classify_button.enabled = True
            self._enable_review(self.review is not None and self.review.candidates is not None)
            self.worker = None

        def failed(e):
            self._say(str(e))

        self.worker = start_worker(work, on_returned=on_done, on_finished=finished, on_errored=failed,
                                   progress_bar={"desc": desc})
        return self.worker

    def _enable_review(self, on: bool):
        self.accept_button.enabled = on
        self.next_button.enabled = on and not self.cross_image
        self.undo_button.enabled = self.review is not None

    def _show(self, out):
        cands, outlines = out
        if self._cancel or getattr(cands, "cancelled", False):
            self._say("Cancelled.")
            return
        rv = self.review
        if rv is None:  # its layers were closed meanwhile
            return
        rv.show(cands, outlines)
        lo, hi = rv.score_range()
        value = min(max(self.score.value, lo), hi)
        with self.score.changed.blocked():
            self.score.min, self.score.max = lo, hi
            self.score.value = value
        n = rv.set_threshold(self.score.value)
        self._say(f"{len(rv.scores)} candidates, {n} scoring {self.score.value:.2f} or more. "
                  "Left click accepts one, right click rejects one.")

    def find(self, *_):
        """Propose every object like the committed ones of the chosen class (in a worker)."""
        try:
            image, labels, class_id, ids = self._inputs()
        except MicrosegError as e:
            self._say(str(e), error=True)
            return None
        target = self.search_in.value
        cross = target is not None and target is not image
        if cross:
            try:
                target_labels = self._labels_for_search(target, labels, class_id)
            except MicrosegError as e:
                self._say(str(e), error=True)
                return None
        else:
            target, target_labels = image, labels
        if self.review is not None:
            self.review.close()
        self.cross_image = cross
        self.review = CandidateReview(self._viewer, target, target_labels, class_id)
        self.review.on_status = self.status.setText
        # the images as napari holds them (a lazy array is read tile by tile in the worker)
        data, committed = image.data, np.array(labels.data, copy=True)
        other = target.data
        from ...core.fewshot.masks import mask_source

        backend = MASK_SOURCES[self.masks.value]
        _, note = mask_source(backend, np.shape(other)[:2] if getattr(target, "rgb", False)
                              else np.shape(other)[-2:])
        large = f" {note}" if note else ""

        def work():
            finder = make_finder(data, backend=backend, seed=0)
            finder.set_exemplars(committed, ids=ids)
            self.finder = finder
            if cross:
                return with_outlines(finder.propose_on(other, progress=self._progress,
                                                       cancel=lambda: self._cancel))
            return with_outlines(finder.propose(progress=self._progress, cancel=lambda: self._cancel))

        where = f" in {target.name}" if cross else ""
        self._say(f"Finding objects like the {len(ids)} committed ones{where}…{large}")
        return self._run(work, "Find similar", self._show)

    def _labels_for_search(self, target, labels, class_id: int):
        """``target``'s own Labels layer (made with ``labels``' class table when there is none).

        An existing layer whose class table lacks the exemplars' class gets it.
        """
        from ...core.errors import LabelsError
        from ..layer_data import SOURCE_IMAGE_KEY, labels_layer, own_labels_layer

        if target.rgb or target.multiscale or np.ndim(target.data) != 2:
            raise MicrosegError(f"{target.name}: Find similar searches single 2-D grey images.")
        layer = own_labels_layer(self._viewer, target)
        _, classes = layer_classes(labels)
        if layer is not None:
            _, table = layer_classes(layer)
            if class_id not in [c.id for c in table]:
                try:
                    table.add(classes[class_id])
                except LabelsError as e:
                    raise MicrosegError(f"{layer.name}: cannot take class {classes[class_id].name!r} "
                                        f"({e}).") from None
                layer.metadata["classes"] = table.to_list()
            return layer
        data, kw, _ = labels_layer(np.zeros(target.data.shape, np.int32), classes=classes,
                                   pixel_size=layer_pixel_size(target), name=f"{target.name} labels",
                                   metadata={SOURCE_IMAGE_KEY: target.name})
        return self._viewer.add_labels(data, **kw)

    def _on_score(self, *_):
        """Redraw once the slider rests 40 ms: a drag does not queue a redraw per step."""
        self._score_timer.start()

    def _apply_score(self):
        self._score_timer.stop()
        rv = self.review
        if rv is not None and rv.candidates is not None and rv.threshold != self.score.value:
            n = rv.set_threshold(self.score.value)
            self._say(f"{n} candidates scoring {self.score.value:.2f} or more shown.")

    def accept_above(self, *_):
        """Accept every shown candidate (score at least the slider) as one undo step."""
        if self.review is None:
            return 0
        self._apply_score()  # what the slider shows now, even mid-drag
        try:
            n = self.review.accept_above()
        except MicrosegError as e:
            self._say(str(e), error=True)
            return 0
        if not n:
            self._say("No candidate above the slider to accept.")
        return n

    def next_round(self, *_):
        """Tell the method the decisions so far and propose again (in a worker)."""
        rv, finder = self.review, self.finder
        if rv is None or finder is None:
            self._say("Press Find similar first.")
            return None
        if self.cross_image:
            self._say("Next round learns on the exemplars' image: empty 'search in' and press Find similar.")
            return None
        accept, reject = rv.decisions()
        negatives = np.asarray(rv.negatives, float).reshape(-1, 2)

        def work():
            if len(negatives):
                finder.add_negatives(points=negatives)
            finder.review(accept=accept, reject=reject)
            return with_outlines(finder.propose(progress=self._progress, cancel=lambda: self._cancel))

        self._say(f"Next round with {len(accept)} accepted, {len(reject)} rejected and "
                  f"{len(negatives)} negative clicks…")
        return self._run(work, "Find similar: next round", self._show)

    def undo(self, *_):
        """Undo the last accept (the Labels layer's last undo step)."""
        if self.review is not None:
            self.review.undo()

    # -- classify like these -------------------------------------------------------------

    def classify(self, *_):
        """Learn classes from the user's classified objects; predict every object's (in a worker)."""
        image, labels = self.image.value, self.labels.value
        if image is None or labels is None or np.ndim(image.data) != 2 or image.rgb:
            self._say("Choose a 2-D grey image and its Labels layer.", error=True)
            return None
        examples = user_examples(labels)
        if len(set(examples.values())) < 2:
            self._say("Classify like these needs classified objects of two classes or more "
                      f"({len(examples)} user-classified object(s) in {labels.name}).", error=True)
            return None
        data, lab, ps = image.data, np.array(labels.data, copy=True), layer_pixel_size(labels)

        def work():
            self._fraction = 0.1
            table = make_classifier(data, lab, ps).fit(examples).predict()
            self._fraction = 1.0
            return labels, table

        self._say(f"Learning {len(set(examples.values()))} classes from {len(examples)} examples…")
        return self._run(work, "Classify like these", self._show_prediction)

    def _show_prediction(self, out):
        if self._cancel:
            self._say("Cancelled.")
            return
        labels, table = out
        self.prediction, self._predicted_for = table, labels
        _, classes = layer_classes(labels)
        names = classes.names()
        view = table[["label", "class_id", "confidence", "example"]].copy()
        view.insert(2, "class", [names.get(int(c), "?") for c in view["class_id"]])
        self.table.set_dataframe(view.sort_values(["example", "confidence"]).reset_index(drop=True))
        self.table.setVisible(True)
        inst = dict(zip(table["label"].tolist(), table["class_id"].tolist(), strict=True))
        self._color_predicted(labels, inst, classes)
        self.apply_button.enabled = True
        low = int((~table["example"] & (table["confidence"] < 0.6)).sum())
        self._say(f"Classified {int((~table['example']).sum())} objects ({low} with confidence below 0.6, "
                  "listed first). Apply classes writes them; correct some (Correct dock: Set class) and rerun.")

    def _color_predicted(self, labels, inst, classes):
        """Show predicted classes as colours in a helper layer sharing the labels' pixels."""
        from ...core.measure.colors import class_color_dict
        from ..colormaps import direct_colormap

        name = labels.name
        layer = find_helper(self._viewer, name, PREDICTED_ROLE)
        if layer is None or layer.data is not labels.data:
            if layer is not None:
                self._viewer.layers.remove(layer)
            layer = self._viewer.add_labels(labels.data, name=f"{name} {PREDICTED_ROLE}", opacity=0.5,
                                            scale=labels.scale, translate=labels.translate,
                                            units=labels.units, metadata=helper_metadata(name, PREDICTED_ROLE))
        colors = class_color_dict(inst, inst, {c.id: c.color for c in classes})
        layer.colormap = direct_colormap({k: np.asarray(v, np.float32) for k, v in colors.items()})

    def apply_classes(self, *_):
        """Write the predicted classes into the Labels layer for the objects that are not examples."""
        labels, table = self._predicted_for, self.prediction
        if labels is None or table is None or labels not in self._viewer.layers:
            self._say("Press Classify like these first.")
            return 0
        inst, classes = layer_classes(labels)
        present = set(present_ids(labels.data).tolist())
        examples = user_examples(labels)
        predicted = {int(i): int(c) for i, c, ex in zip(table["label"], table["class_id"], table["example"],
                                                          strict=True)
                     if not ex and int(i) in present and int(i) not in examples}
        self._applied.append((labels, dict(inst), dict(labels.metadata.get(PREDICTED_KEY) or {})))
        inst.update(predicted)
        labels.metadata["classes"] = classes.to_list()
        labels.metadata[PREDICTED_KEY] = {str(k): v for k, v in predicted.items()}
        labels.features = class_features(np.asarray(labels.data), inst, classes)
        self.unapply_button.enabled = True
        self._say(f"Applied classes to {len(predicted)} objects of {labels.name} (Undo Apply classes "
                  "restores the classes before).")
        return len(predicted)

    def unapply_classes(self, *_):
        """Give the objects back the classes they had before the last *Apply classes* (one step).

        Pixels are not touched; objects removed since stay absent, objects added
        since and classes the user corrected since keep their class.
        """
        while self._applied and self._applied[-1][0] not in self._viewer.layers:
            self._applied.pop()  # its layer was closed
        if not self._applied:
            self.unapply_button.enabled = False
            self._say("No Apply classes to undo.")
            return 0
        labels, before, predicted_before = self._applied.pop()
        inst, classes = layer_classes(labels)
        applied = {int(k): int(v) for k, v in (labels.metadata.get(PREDICTED_KEY) or {}).items()}
        changed = 0
        for i in [i for i, c in applied.items() if inst.get(i) == c]:  # a user's correction stays
            if i in before:
                changed += inst[i] != before[i]
                inst[i] = before[i]
            else:
                inst.pop(i)
                changed += 1
        labels.metadata[PREDICTED_KEY] = predicted_before
        labels.features = class_features(np.asarray(labels.data), inst, classes)
        self.unapply_button.enabled = bool(self._applied)
        self._say(f"Classes of {changed} objects of {labels.name} restored.")
        return changed

    def _on_row(self, row):
        """Select the object of a table row (the Correct dock's Set class acts on it)."""
        labels = self._predicted_for
        if labels is None or is_helper_layer(labels) or labels not in self._viewer.layers:
            return
        labels.selected_label = int(row["label"])
        self._viewer.layers.selection.active = labels
