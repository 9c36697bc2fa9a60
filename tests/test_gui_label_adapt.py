"""Label dock in a real viewer: adapt the live promptable model to the committed objects (issue 16).

The user labels objects with clicks and Commit, then presses "Adapt the model
to my objects" (or lets it start after N new objects). The live model changes
only when the adaptation says the adapted model is better on held-out committed
objects; the labels, the undo steps and the target stay.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_events import click
from test_prompt_strokes import disc_scene

pytestmark = pytest.mark.gui

DISCS = [(40, 40, 9), (40, 110, 11), (40, 180, 8), (110, 40, 12), (110, 110, 9), (110, 180, 10),
         (180, 40, 8), (180, 110, 11), (180, 180, 9), (60, 150, 7)]


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    from napari_microseg.gui.widgets.label import LabelWidget

    img, truth = disc_scene((220, 220), DISCS, bright=200.0, dark=60.0, noise=10.0)
    viewer = make_napari_viewer()
    viewer.add_image(img.clip(0, 255).astype(np.uint8), name="tem")
    w = LabelWidget(viewer)
    viewer.window.add_dock_widget(w, name="Label")
    w.reset_choices()
    w.image.value = viewer.layers["tem"]
    w.model.value = "microseg-promptable"
    w.start()
    qtbot.waitUntil(lambda: w.controller is not None and w.controller.ready, timeout=30000)
    return viewer, w, truth


def label_by_clicks(w, qtbot, centres):
    """Click each centre, wait for the preview, press Commit."""
    ctl = w.controller
    for r, c, _ in centres:
        click(ctl.points, (r, c))
        qtbot.waitUntil(lambda: not ctl._busy and not ctl._dirty and ctl._last_pred is not None,
                        timeout=20000)
        w.commit_button.clicked.emit()


def test_adapt_button_runs_in_the_background_and_switches_only_on_a_win(dock, qtbot, artifacts_dir,
                                                                         monkeypatch):
    from napari_microseg.core.promptable import adaptation

    monkeypatch.setattr(adaptation, "MIN_CHECK_OBJECTS", 3)  # six objects: the real fine-tune and check run
    viewer, w, truth = dock
    label_by_clicks(w, qtbot, DISCS[:6])
    ctl, target = w.controller, viewer.layers["tem labels"]
    assert len(ctl.history) == 6 and len(np.unique(target.data)) == 7
    before_backend, labels_before = ctl.session.backend, target.data.copy()
    w.adaptation.seconds.value = 10
    w.adaptation.adapt_button.clicked.emit()
    assert w.adaptation.worker is not None and w.adaptation.stop_button.enabled
    qtbot.waitUntil(lambda: w.adaptation.worker is None, timeout=120000)
    res = w.adaptation.result
    assert res is not None and res.reason in w.status.text()
    assert res.steps > 0 and "held-out objects" in res.details["check"]
    if res.accepted:  # switched: the adapted weights, same labels and undo steps
        qtbot.waitUntil(lambda: ctl.session.backend is not before_backend, timeout=30000)
        assert ctl.session.backend.source == res.weights
        assert ctl.session.backend.name == "microseg-promptable (adapted)"
        assert res.after > res.before
    else:  # kept: the very same model
        assert ctl.session.backend is before_backend
    np.testing.assert_array_equal(target.data, labels_before)
    assert len(ctl.history) == 6
    label_by_clicks(w, qtbot, DISCS[6:7])  # prompting goes on with the live model
    assert len(np.unique(target.data)) == 8
    (artifacts_dir / "label_adapt").mkdir(parents=True, exist_ok=True)
    qtbot.wait(100)
    viewer.screenshot(str(artifacts_dir / "label_adapt" / "after_adaptation.png"),
                      canvas_only=False, flash=False)


def _stub(accepted, weights=None, calls=None):
    from napari_microseg.core.promptable.adaptation import AdaptationResult

    def adapt(samples, **kw):
        if calls is not None:
            calls.append(sum(len(np.unique(s.target)) - 1 for s in samples))
        return AdaptationResult(accepted, weights, 0.60, 0.70 if accepted else 0.55,
                                "adapted (stub)" if accepted else "kept the live model (stub)", 1.0)

    return adapt


def test_a_worse_adaptation_never_replaces_the_live_model(dock, qtbot, monkeypatch):
    from napari_microseg.core.promptable import adaptation

    viewer, w, truth = dock
    label_by_clicks(w, qtbot, DISCS[:4])
    live = w.controller.session.backend
    monkeypatch.setattr(adaptation, "adapt_to_objects", _stub(False))
    w.adaptation.adapt_button.clicked.emit()
    qtbot.waitUntil(lambda: w.adaptation.worker is None, timeout=30000)
    qtbot.wait(200)
    assert w.controller.session.backend is live
    assert "kept the live model (stub)" in w.status.text()


def test_automatic_adaptation_after_n_new_objects_then_switch(dock, qtbot, monkeypatch, tmp_path):
    from importlib import resources

    from napari_microseg.core.promptable import adaptation
    from napari_microseg.core.promptable.backend import CARD_FILE, RESOURCE, WEIGHTS_FILE

    viewer, w, truth = dock
    shipped = resources.files("napari_microseg").joinpath(*RESOURCE)
    for name in (WEIGHTS_FILE, CARD_FILE):
        with resources.as_file(shipped.joinpath(name)) as p:
            shutil.copy(p, tmp_path / name)
    calls = []
    monkeypatch.setattr(adaptation, "adapt_to_objects", _stub(True, tmp_path / WEIGHTS_FILE, calls))
    w.adaptation.auto.value = True
    w.adaptation.every.value = 4
    label_by_clicks(w, qtbot, DISCS[:3])
    assert calls == [] and w.adaptation.worker is None  # 3 new objects: not yet
    label_by_clicks(w, qtbot, DISCS[3:4])  # the 4th starts it by itself
    qtbot.waitUntil(lambda: calls == [4], timeout=30000)
    ctl = w.controller
    qtbot.waitUntil(lambda: ctl.session.backend.name == "microseg-promptable (adapted)",
                    timeout=30000)
    assert ctl.session.backend.source == tmp_path / WEIGHTS_FILE
    assert "Now prompting with microseg-promptable (adapted)" in w.status.text()
    w.undo_button.clicked.emit()  # the undo steps survived the switch
    assert len(np.unique(viewer.layers["tem labels"].data)) == 4
    label_by_clicks(w, qtbot, DISCS[4:8])  # 3 net new since the run (one undone): not yet
    assert len(calls) == 1
    first_adapted = ctl.session.backend
    label_by_clicks(w, qtbot, DISCS[8:9])
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=30000)
    qtbot.waitUntil(lambda: ctl.session.backend is not first_adapted, timeout=30000)  # switched again


def test_stop_leaves_the_live_model(dock, qtbot, monkeypatch):
    from napari_microseg.core.promptable import adaptation

    monkeypatch.setattr(adaptation, "MIN_CHECK_OBJECTS", 3)  # six objects are enough to start
    viewer, w, truth = dock
    label_by_clicks(w, qtbot, DISCS[:6])
    live = w.controller.session.backend
    w.adaptation.seconds.value = 600
    w.adaptation.adapt_button.clicked.emit()
    w.adaptation.stop_button.clicked.emit()
    qtbot.waitUntil(lambda: w.adaptation.worker is None, timeout=120000)
    assert w.adaptation.result.reason == "stopped by the user"
    assert not w.adaptation.result.accepted and w.controller.session.backend is live
    assert not w.adaptation.stop_button.enabled


def test_label_dock_closed_while_a_model_is_being_swapped_in(dock, qtbot):
    """The adaptation's model switch prepares the image in a worker; the user closes the dock meanwhile."""
    from qtpy import sip

    viewer, w, _ = dock
    ctl, live = w.controller, w.controller.session.backend
    said = []
    ctl.swap_backend(live, on_ready=said.append)  # its result is queued until the event loop runs
    sip.delete(w)  # the dock's widgets are gone; the controller still reports to it
    qtbot.waitUntil(lambda: bool(said), timeout=30000)  # the switch completed, no error raised
    assert said[0].startswith(live.name)
