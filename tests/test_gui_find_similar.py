"""Find similar dock in a real napari window: find -> slider -> accept/reject -> next round -> undo.

The review logic is checked against exact truth with a scripted finder (its
candidates are known pixel for pixel); one test runs the real
:class:`~napari_microseg.core.fewshot.FindSimilar` and one the real classifier on a
small synthetic scene. Screenshots go to ``test-artifacts/find_similar/``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import pytest
from skimage.draw import disk, rectangle

from napari_events import click, press
from napari_microseg.core.calibration import PixelSize
from napari_microseg.gui.layer_data import (
    SOURCE_IMAGE_KEY,
    is_helper_layer,
    labels_layer,
    layer_classes,
)
from napari_microseg.gui.similar_review import candidate_outlines

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")]

PS = PixelSize.isotropic(0.5, "user")
DOT = 3  # "black dot" in the default class table
WAIT = 60_000


def make_scene(seed: int = 0):
    """Dark dots (class DOT, ids 1..12) and two bright squares (not alike), 160 x 200 px."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((160, 200), np.int32)
    centres = [(20 + 40 * (i // 4), 25 + 50 * (i % 4)) for i in range(12)]
    for i, (r, c) in enumerate(centres, start=1):
        truth[disk((r, c), 7 + (i % 3), shape=truth.shape)] = i
    squares = np.zeros_like(truth)
    squares[rectangle((140, 20), extent=(12, 12))] = 1
    squares[rectangle((140, 150), extent=(12, 12))] = 2
    img = np.full(truth.shape, 180.0)
    img[truth > 0] = 70
    img[squares > 0] = 250
    img = (img + rng.normal(0, 6, img.shape)).clip(0, 255).astype(np.uint8)
    return img, truth, squares, centres


@dataclass
class Candidates:
    """FindSimilar's candidates as the dock reads them (``labels``, ``scores`` of id ``i + 1``)."""

    labels: np.ndarray
    scores: np.ndarray
    cancelled: bool = False

    def __len__(self):
        return len(self.scores)


class ScriptedFinder:
    """FindSimilar's contract with known answers: the uncommitted dots, then the squares (low score).

    Round 1 scores dot ``k`` as ``0.3 + 0.05 k`` and the squares 0.1 and 0.2; a next
    round proposes whatever was neither committed, accepted nor rejected, with scores + 0.1.
    """

    calls: list = []
    #: whether each propose ran on the main thread
    threads: list = []
    #: propose waits half way until this is set (the test checks the GUI meanwhile)
    gate = threading.Event()

    def __init__(self, image, **kwargs):
        self.image = image
        self.kwargs = kwargs
        self.round = 0
        self.excluded = set()  # ("dot", k) or ("square", k)
        ScriptedFinder.calls, ScriptedFinder.threads = [("init", kwargs)], []

    def set_exemplars(self, labels, ids=None, committed=None):
        self.committed = np.asarray(labels).copy()
        ScriptedFinder.calls.append(("set_exemplars", sorted(ids)))

    def propose(self, progress=None, cancel=None):
        ScriptedFinder.threads.append(threading.current_thread() is threading.main_thread())
        for step in range(4):
            if cancel is not None and cancel():  # as the core: an empty, cancelled result
                return Candidates(np.zeros(self.image.shape, np.int32), np.zeros(0), cancelled=True)
            if progress is not None:
                progress((step + 1) / 4)
            if step == 1:  # half way, wait until the test has checked the GUI meanwhile
                assert ScriptedFinder.gate.wait(30), "the test never let the finder go on"
        ScriptedFinder.gate.set()
        _, truth, squares, _ = make_scene()
        out = np.zeros(truth.shape, np.int32)
        scores, self.keys = [], []
        for k in range(1, 13):
            if np.any(self.committed[truth == k]) or ("dot", k) in self.excluded:
                continue
            out[truth == k] = len(scores) + 1
            scores.append(0.3 + 0.05 * k + 0.1 * self.round)
            self.keys.append(("dot", k))
        for k in (1, 2):
            if ("square", k) in self.excluded:
                continue
            out[squares == k] = len(scores) + 1
            scores.append(0.1 * k + 0.1 * self.round)
            self.keys.append(("square", k))
        ScriptedFinder.calls.append(("propose", self.round))
        self.last = Candidates(labels=out, scores=np.asarray(scores))
        return self.last

    def add_negatives(self, points=None, mask=None):
        ScriptedFinder.calls.append(("add_negatives", np.asarray(points).round().astype(int).tolist()))

    def review(self, accept=(), reject=()):
        ScriptedFinder.calls.append(("review", sorted(accept), sorted(reject)))
        for i in [*accept, *reject]:
            self.excluded.add(self.keys[int(i) - 1])
        self.round += 1


@pytest.fixture
def window(make_napari_viewer, qtbot):
    """A shown viewer with the scene, three committed dots (ids 1..3, class DOT) and the dock."""
    from napari_microseg.gui.widgets.find_similar import FindSimilarWidget

    img, truth, squares, centres = make_scene()
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    image = viewer.add_image(img, name="scene", scale=PS.scale, units=("nm", "nm"),
                             metadata={"pixel_size": PS.to_dict()})
    committed = np.where(np.isin(truth, [1, 2, 3]), truth, 0).astype(np.int32)
    data, kw, _ = labels_layer(committed, instance_classes={1: DOT, 2: DOT, 3: DOT}, pixel_size=PS,
                               name="scene labels", metadata={SOURCE_IMAGE_KEY: "scene"})
    labels = viewer.add_labels(data, **kw)
    dock = FindSimilarWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Find similar")
    dock.image.value, dock.labels.value = image, labels
    dock.klass.value = DOT
    qtbot.waitExposed(viewer.window._qt_window)
    qtbot.wait(50)
    viewer.reset_view()
    return viewer, dock, image, labels, (img, truth, squares, centres)


def wait_idle(qtbot, dock, timeout=WAIT):
    qtbot.waitUntil(lambda: dock.worker is None, timeout=timeout)


def shot(viewer, qtbot, artifacts_dir, name):
    out = artifacts_dir / "find_similar"
    out.mkdir(parents=True, exist_ok=True)
    qtbot.wait(50)
    viewer.screenshot(str(out / f"{name}.png"), canvas_only=False)


def set_score(qtbot, dock, value):
    """Move the score slider and wait for the (debounced) recolour."""
    dock.score.value = value
    qtbot.waitUntil(lambda: dock.review.threshold == dock.score.value, timeout=5000)


def shown(rv, ids) -> list[bool]:
    """Whether each candidate id is drawn: its outline is on the layer's pixels, in a visible colour."""
    data = np.asarray(rv.layer.data)
    drawn = set(rv.drawn_ids().tolist())
    out = []
    for i in ids:
        levels = np.unique(data[rv._outlines == i]) if i in drawn else []
        out.append(bool(len(levels)) and all(float(rv.layer.colormap.map(np.array([v]))[0][3]) > 0 for v in levels))
    return out


def drawn_outlines(rv, labels) -> np.ndarray:
    """What the candidates layer should hold: the shown candidates' outlines of ``labels``, each at its
    score level (the higher the score, the higher the level)."""
    from napari_microseg.gui.similar_review import score_levels

    outlines = candidate_outlines(labels)
    level = np.zeros(int(labels.max()) + 1, np.uint8)
    level[1:len(rv.scores) + 1] = score_levels(rv.scores, *rv.score_range())
    return np.where(np.isin(outlines, rv.visible_ids()), level[outlines], 0)


def test_find_slider_accept_reject_next_round_undo(window, qtbot, monkeypatch, artifacts_dir):
    from qtpy.QtCore import QTimer

    import napari_microseg.gui.widgets.find_similar as fsw

    viewer, dock, image, labels, (img, truth, squares, centres) = window
    monkeypatch.setattr(fsw, "make_finder", ScriptedFinder)
    committed0 = np.asarray(labels.data).copy()
    # the Correct dock also keeps the classes of this layer through undo/redo: both must agree
    from napari_microseg.gui.widgets.correct import CorrectWidget

    correct = CorrectWidget(viewer)
    correct.labels.value = labels
    assert correct._target is labels

    # Find: runs in a worker; while it works the event loop runs (timers tick, the progress bar moves)
    ScriptedFinder.gate.clear()
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    dock.find_button.native.click()
    assert dock.worker is not None and dock.cancel_button.enabled and not dock.find_button.enabled
    qtbot.waitUntil(lambda: dock.progress.value() == 500, timeout=WAIT)  # the finder is half way
    qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=WAIT)
    assert dock.worker is not None and dock.review.candidates is None  # still working, GUI alive
    timer.stop()
    ScriptedFinder.gate.set()
    wait_idle(qtbot, dock)
    assert ScriptedFinder.threads == [False]
    assert ScriptedFinder.calls[:3] == [("init", {"backend": "default", "seed": 0}), ("set_exemplars", [1, 2, 3]), ("propose", 0)]
    rv = dock.review
    cand = rv.layer
    assert is_helper_layer(cand) and cand.name == "scene similar candidates"
    # candidates 1..9 are dots 4..12 (scores 0.5..0.9), 10 and 11 the squares (0.1, 0.2)
    expect = np.zeros_like(truth)
    for j, k in enumerate(range(4, 13), start=1):
        expect[truth == k] = j
    expect[squares == 1], expect[squares == 2] = 10, 11
    np.testing.assert_array_equal(rv.candidates.labels, expect)
    np.testing.assert_array_equal(cand.data, drawn_outlines(rv, expect))  # drawn as outlines
    np.testing.assert_allclose(rv.scores, [0.3 + 0.05 * k for k in range(4, 13)] + [0.1, 0.2])
    assert dock.progress.value() == 1000
    assert labels not in dock.labels.choices or dock.labels.value is labels  # the helper is never offered
    assert all(c is None or not is_helper_layer(c) for c in dock.labels.choices)

    # slider: live show/hide, no recomputation
    n_calls = len(ScriptedFinder.calls)
    set_score(qtbot, dock, 0.0)
    assert shown(rv, range(1, 12)) == [True] * 11
    shot(viewer, qtbot, artifacts_dir, "01_candidates_all")
    set_score(qtbot, dock, 0.72)  # dots 9..12 (0.75, 0.8, 0.85, 0.9) -> candidates 6..9
    assert shown(rv, range(1, 12)) == [False] * 5 + [True] * 4 + [False] * 2
    assert len(ScriptedFinder.calls) == n_calls
    shot(viewer, qtbot, artifacts_dir, "02_slider_0.72")

    # accept all above: dots 9..12 get ids 4..7 and the class, one undo step
    dock.accept_button.native.click()
    after_all = np.asarray(labels.data).copy()
    want = committed0.copy()
    for new, k in enumerate(range(9, 13), start=4):
        want[truth == k] = new
    np.testing.assert_array_equal(after_all, want)
    assert layer_classes(labels)[0] == {i: DOT for i in range(1, 8)}
    assert shown(rv, range(1, 12)) == [False] * 11  # accepted ones are no longer candidates

    # click-accept dot 4 (candidate 1) and click-reject square 1 (candidate 10), through napari's dispatch
    set_score(qtbot, dock, 0.0)
    viewer.layers.selection.active = cand
    r, c = centres[3]
    click(cand, (r * 0.5, c * 0.5), button=1)
    np.testing.assert_array_equal(np.asarray(labels.data)[truth == 4], 8)
    assert dock.status.text() == "Accepted 1 candidate (ids 8–8)."
    # within a round, undo makes the accept a candidate again and redo accepts it again
    dock.undo_button.native.click()
    assert not np.asarray(labels.data)[truth == 4].any()
    assert 1 not in rv.accepted and shown(rv, [1]) == [True]
    labels.redo()
    np.testing.assert_array_equal(np.asarray(labels.data)[truth == 4], 8)
    assert rv.accepted[1] == 8 and shown(rv, [1]) == [False]
    sq_r, sq_c = 146, 26
    click(cand, (sq_r * 0.5, sq_c * 0.5), button=2)
    assert rv.decisions() == ([1, 6, 7, 8, 9], [10])
    click(cand, (100 * 0.5, 2 * 0.5), button=2)  # right click on background: a negative click
    assert rv.negatives == [(100.0, 2.0)]
    assert not np.asarray(labels.data)[squares == 1].any()  # a rejection writes nothing
    assert layer_classes(labels)[0] == {i: DOT for i in range(1, 9)}
    np.testing.assert_array_equal(np.asarray(labels.data)[committed0 > 0], committed0[committed0 > 0])
    shot(viewer, qtbot, artifacts_dir, "03_accepted_rejected")

    # next round: the method hears the decisions and proposes the rest
    dock.next_button.native.click()
    wait_idle(qtbot, dock)
    assert ScriptedFinder.calls[-3:-1] == [("add_negatives", [[100, 2]]), ("review", [1, 6, 7, 8, 9], [10])]
    assert ScriptedFinder.calls[-1] == ("propose", 1)
    expect2 = np.zeros_like(truth)
    for j, k in enumerate(range(5, 9), start=1):  # dots 5..8, then square 2
        expect2[truth == k] = j
    expect2[squares == 2] = 5
    np.testing.assert_array_equal(rv.candidates.labels, expect2)
    np.testing.assert_array_equal(rv.layer.data, drawn_outlines(rv, expect2))
    assert rv.decisions() == ([], [])
    shot(viewer, qtbot, artifacts_dir, "04_next_round")

    # undo: exactly the last accept (the click on dot 4) goes, classes follow
    dock.undo_button.native.click()
    np.testing.assert_array_equal(np.asarray(labels.data), after_all)
    assert layer_classes(labels)[0] == {i: DOT for i in range(1, 8)}
    assert rv.accepted == {} and shown(rv, range(1, 6)) == [True] * 5  # round 2's candidates stay
    labels.redo()  # and back
    assert np.all(np.asarray(labels.data)[truth == 4] == 8)
    assert layer_classes(labels)[0] == {i: DOT for i in range(1, 9)}
    assert rv.accepted == {} and shown(rv, range(1, 6)) == [True] * 5
    press(rv.layer, "Ctrl+Z")  # Ctrl+Z on the (active) candidates layer undoes the last accept
    np.testing.assert_array_equal(np.asarray(labels.data), after_all)
    labels.undo()  # the accept-all step as one
    np.testing.assert_array_equal(np.asarray(labels.data), committed0)
    assert layer_classes(labels)[0] == {1: DOT, 2: DOT, 3: DOT}
    shot(viewer, qtbot, artifacts_dir, "05_undone")


def test_cancel_and_bad_input(window, qtbot, monkeypatch):
    import napari_microseg.gui.widgets.find_similar as fsw

    viewer, dock, image, labels, _ = window
    monkeypatch.setattr(fsw, "make_finder", ScriptedFinder)
    before = np.asarray(labels.data).copy()
    ScriptedFinder.gate.clear()
    dock.find_button.native.click()
    qtbot.waitUntil(lambda: dock.progress.value() == 500, timeout=WAIT)  # half way
    dock.cancel_button.native.click()
    ScriptedFinder.gate.set()
    wait_idle(qtbot, dock)
    assert dock.review.layer is None and dock.status.text() == "Cancelled."
    assert not dock.accept_button.enabled and not dock.next_button.enabled and dock.find_button.enabled
    # Find again, twice: one candidates layer, the last one
    for _ in range(2):
        dock.find_button.native.click()
        wait_idle(qtbot, dock)
    cands = [lyr for lyr in viewer.layers if is_helper_layer(lyr)]
    assert cands == [dock.review.layer] and dock.accept_button.enabled
    # the dock asks core for its default; above the promptable model's size the status says
    # the pixel classifier draws the masks (core decides: test_fewshot_find)
    import napari_microseg.core.fewshot.masks as fsm

    monkeypatch.setattr(fsm, "PROMPTABLE_MAX_PIXELS", image.data.size // 2)
    dock.find_button.native.click()
    assert "masks from the pixel classifier" in dock.status.text()
    wait_idle(qtbot, dock)
    assert ScriptedFinder.calls[0] == ("init", {"backend": "default", "seed": 0})
    monkeypatch.setattr(fsm, "PROMPTABLE_MAX_PIXELS", image.data.size)
    dock.find_button.native.click()
    assert "pixel classifier" not in dock.status.text()
    wait_idle(qtbot, dock)
    assert ScriptedFinder.calls[0] == ("init", {"backend": "default", "seed": 0})
    dock.masks.value = "pixel classifier"
    dock.find_button.native.click()
    wait_idle(qtbot, dock)
    assert ScriptedFinder.calls[0] == ("init", {"backend": "none", "seed": 0})
    dock.masks.value = "promptable model"
    # no exemplar of the chosen class: a clear message, nothing runs
    dock.klass.value = 1
    assert dock.find() is None and "No committed object" in dock.status.text()
    # the labels are never changed by any of it
    np.testing.assert_array_equal(np.asarray(labels.data), before)
    # closing the labels ends the review and takes the candidates with it
    viewer.layers.remove(labels)
    assert dock.review is None and not any(map(is_helper_layer, viewer.layers))
    assert not dock.accept_button.enabled


@pytest.mark.slow
def test_classify_like_these_real_classifier(window, qtbot):
    """Two kinds of objects, two examples each: every object gets its kind; a correction retrains."""
    viewer, dock, image, labels, (img, truth, squares, centres) = window
    # the committed layer: dots 1..12 and the two squares (13, 14); examples: dots 1, 2 and square 13
    allobj = truth.copy()
    allobj[squares == 1], allobj[squares == 2] = 13, 14
    labels.data = allobj
    from napari_microseg.gui.layer_data import class_features

    _, classes = layer_classes(labels)
    labels.features = class_features(allobj, {1: DOT, 2: DOT, 13: 6}, classes)
    dock.classify_button.native.click()
    # one square example is one class example: two classes are given, so it runs
    wait_idle(qtbot, dock)
    table = dock.prediction
    assert table is not None and len(table) == 14
    got = dict(zip(table["label"], table["class_id"], strict=True))
    assert all(got[k] == DOT for k in range(1, 13)) and got[13] == 6 and got[14] == 6
    assert dock.apply_button.enabled
    n = dock.apply_classes()
    assert n == 11
    inst, _ = layer_classes(labels)
    assert inst == {**{k: DOT for k in range(1, 13)}, 13: 6, 14: 6}
    np.testing.assert_array_equal(np.asarray(labels.data), allobj)  # classes only; no pixel changes
    # Undo Apply classes: one step back to the user's classes, a correction made since stays
    labels.features = class_features(allobj, {**inst, 14: DOT}, classes)
    assert dock.unapply_button.enabled and dock.unapply_classes() == 10
    assert layer_classes(labels)[0] == {1: DOT, 2: DOT, 13: 6, 14: DOT}
    assert not dock.unapply_button.enabled
    labels.features = class_features(allobj, {1: DOT, 2: DOT, 13: 6}, classes)
    assert dock.apply_classes() == 11
    inst, _ = layer_classes(labels)
    # a correction (as the Correct dock's Set class would write it) becomes an example on rerun
    from napari_microseg.gui.widgets.find_similar import user_examples

    labels.features = class_features(allobj, {**inst, 7: 1}, classes)
    assert user_examples(labels) == {1: DOT, 2: DOT, 13: 6, 7: 1}
    dock.classify_button.native.click()  # rerun: learns from the correction too
    wait_idle(qtbot, dock)
    row = dock.prediction.set_index("label").loc[7]
    assert bool(row["example"]) and int(row["class_id"]) == 1 and float(row["confidence"]) == 1.0
    dock.apply_classes()
    assert layer_classes(labels)[0][7] == 1  # the user's correction stays
    assert any(is_helper_layer(lyr) and lyr.name.endswith("predicted classes") for lyr in viewer.layers)


@pytest.mark.slow
def test_real_core_find_accept_next_round_undo(make_napari_viewer, qtbot, torch_one_thread):
    """The real FindSimilar behind the dock, on a synthetic TEM image: the dock's promises hold."""
    from napari_microseg.core.synth.generator import generate
    from napari_microseg.gui.widgets.find_similar import FindSimilarWidget

    sample = generate("tem-loops", shape=(256, 256), seed=2)
    truth, inst = sample.labels, sample.instance_classes
    klass = max(set(inst.values()), key=list(inst.values()).count)
    exemplars = sorted(i for i, c in inst.items() if c == klass)[:5]
    committed0 = np.where(np.isin(truth, exemplars), truth, 0).astype(np.int32)
    viewer = make_napari_viewer(show=True)
    ps = sample.pixel_size
    image = viewer.add_image(sample.image, name="tem", scale=ps.scale, units=(ps.unit,) * 2,
                             metadata={"pixel_size": ps.to_dict()})
    data, kw, _ = labels_layer(committed0.copy(), instance_classes={i: klass for i in exemplars},
                               classes=sample.classes, pixel_size=ps, name="tem labels",
                               metadata={SOURCE_IMAGE_KEY: "tem"})
    labels = viewer.add_labels(data, **kw)
    dock = FindSimilarWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Find similar")
    dock.image.value, dock.labels.value = image, labels
    dock.klass.value = klass
    dock.find_button.native.click()
    wait_idle(qtbot, dock, timeout=180_000)
    rv = dock.review
    cand = np.asarray(rv.candidates.labels)
    n = len(rv.scores)
    assert n >= 1, dock.status.text()
    assert not np.any(cand[committed0 > 0]), "a candidate overlaps a committed object"
    assert np.all((rv.scores >= 0) & (rv.scores <= 1)) and set(np.unique(cand)) == set(range(n + 1))
    # everything above 0 accepted: exactly the candidates' pixels, new ids, the class
    dock.score.value = 0.0
    assert dock.accept_above() == n
    after = np.asarray(labels.data).copy()
    np.testing.assert_array_equal(after[committed0 > 0], committed0[committed0 > 0])
    np.testing.assert_array_equal(after > 0, (committed0 > 0) | (cand > 0))
    new_ids = np.unique(after[cand > 0])
    assert len(new_ids) == n and new_ids.min() == committed0.max() + 1
    assert layer_classes(labels)[0] == {i: klass for i in [*exemplars, *new_ids.tolist()]}
    # next round with the real core: nothing proposed over what is committed now
    dock.next_button.native.click()
    wait_idle(qtbot, dock, timeout=180_000)
    assert dock.review.candidates is not None
    assert not np.any(np.asarray(dock.review.candidates.labels)[after > 0])
    # one undo removes the whole accept
    dock.undo_button.native.click()
    np.testing.assert_array_equal(np.asarray(labels.data), committed0)
    assert layer_classes(labels)[0] == {i: klass for i in exemplars}


def test_search_another_open_image_accepts_into_its_own_labels(make_napari_viewer, qtbot, torch_one_thread):
    """Exemplars on one image, candidates on another open image, accepted into that image's labels."""
    from napari_microseg.core.evaluate.matching import match_instances
    from napari_microseg.core.synth.generator import generate
    from napari_microseg.gui.widgets.find_similar import FindSimilarWidget

    first, second = (generate("sem-pits", shape=(256, 256), seed=s, n_objects=25, nuisances=False)
                     for s in (3, 4))
    inst = first.instance_classes
    klass = max(set(inst.values()), key=list(inst.values()).count)
    exemplars = sorted(i for i, c in inst.items() if c == klass)[:5]
    committed0 = np.where(np.isin(first.labels, exemplars), first.labels, 0).astype(np.int32)
    viewer = make_napari_viewer(show=True)
    ps = first.pixel_size
    image = viewer.add_image(first.image, name="sem", scale=ps.scale, metadata={"pixel_size": ps.to_dict()})
    other = viewer.add_image(second.image, name="sem 2", scale=ps.scale,
                             metadata={"pixel_size": ps.to_dict()})
    data, kw, _ = labels_layer(committed0.copy(), instance_classes={i: klass for i in exemplars},
                               classes=first.classes, pixel_size=ps, name="sem labels",
                               metadata={SOURCE_IMAGE_KEY: "sem"})
    labels = viewer.add_labels(data, **kw)
    dock = FindSimilarWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Find similar")
    dock.image.value, dock.labels.value = image, labels
    dock.klass.value = klass
    dock.search_in.value = other
    dock.find_button.native.click()
    wait_idle(qtbot, dock, timeout=180_000)
    rv = dock.review
    assert rv.image_layer is other and rv.labels_layer.name == "sem 2 labels"
    assert not dock.next_button.enabled  # next round needs the exemplars' image
    n = len(rv.scores)
    assert n >= 3, dock.status.text()
    dock.score.value = 0.0
    assert dock.accept_above() == n
    target = viewer.layers["sem 2 labels"]
    got = np.asarray(target.data)
    assert layer_classes(target)[0] == {i: klass for i in range(1, n + 1)}
    assert klass in [c.id for c in layer_classes(target)[1]]
    np.testing.assert_array_equal(np.asarray(labels.data), committed0)  # the exemplars' layer untouched
    want = [i for i, c in second.instance_classes.items() if c == klass]
    truth = np.where(np.isin(second.labels, want), second.labels, 0)
    m = match_instances(got, truth, 0.3)
    assert m.tp >= 0.5 * n, (m.tp, n, len(want))  # most candidates are objects of the class
    dock.next_round()
    assert "exemplars' image" in dock.status.text()


def test_candidate_outlines_are_a_band_inside_each_object():
    lab = np.zeros((40, 60), np.int32)
    lab[5:25, 5:25] = 1
    lab[5:25, 25:45] = 2  # touching 1
    lab[30:40, 50:60] = 3  # cut by the image corner
    out = candidate_outlines(lab, width=2)
    assert set(np.unique(out)) == {0, 1, 2, 3} and np.all((out == 0) | (out == lab))
    assert out[15, 15] == 0 and out[15, 5] == 1 and out[15, 6] == 1 and out[15, 7] == 0  # 2 px band
    assert out[15, 23] == 1 and out[15, 24] == 1 and out[15, 25] == 2  # the shared border, both sides
    assert out[39, 55] == 3 and out[35, 59] == 3 and out[35, 55] == 0  # outlined along the image edge


def test_candidate_outlines_are_narrow_so_a_redraw_skips_napari_remapping():
    """8- or 16-bit outlines when the ids fit (napari then draws them as they are), ids kept exactly."""
    from napari_microseg.gui.similar_review import display_dtype

    assert [display_dtype(n) for n in (0, 255, 256, 65535, 65536, 2**31)] == [
        np.uint8, np.uint8, np.uint16, np.uint16, np.int32, np.int64]
    lab = np.zeros((30, 30), np.int32)
    lab[2:10, 2:10], lab[12:20, 12:20] = 300, 70000
    out16 = candidate_outlines(np.where(lab == 300, lab, 0))
    assert out16.dtype == np.uint16 and set(np.unique(out16)) == {0, 300}
    out32 = candidate_outlines(lab)
    assert out32.dtype == np.int32 and set(np.unique(out32)) == {0, 300, 70000}


def test_score_levels_and_the_fixed_colour_table():
    """Scores map to levels 1..255 over the round's range; level 1 is drawn red, 255 green, 0 not at all."""
    from napari_microseg.gui.similar_review import HIGH, LOW, score_colormap, score_levels

    np.testing.assert_array_equal(score_levels([0.0, 0.5, 1.0, 2.0, -1.0], 0.0, 1.0), [1, 128, 255, 255, 1])
    np.testing.assert_array_equal(score_levels([0.3, 0.9], 0.5, 0.5), [128, 128])  # no range: the middle
    cmap = score_colormap()
    np.testing.assert_allclose(cmap.map(np.array([1]))[0], LOW, atol=1e-6)
    np.testing.assert_allclose(cmap.map(np.array([255]))[0], HIGH, atol=1e-6)
    assert cmap.map(np.array([0]))[0][3] == 0
