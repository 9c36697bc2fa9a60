"""A real napari window under a display: dock every widget, save screenshots."""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture
def sample_window(make_napari_viewer):
    """A shown 1600 x 1000 napari window with every widget docked and the TEM sample open."""
    from napari_microseg.gui.launch import dock_all

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    docked = dock_all(viewer)
    viewer.open_sample("napari-microseg", "tem_loops")
    return viewer, docked


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run the suite under xvfb-run)")
def test_real_window_docks_every_widget(make_napari_viewer, qtbot, artifacts_dir):
    from napari_microseg.gui.launch import dock_all, sample_keys, widget_names

    names = widget_names()
    assert names, "the manifest contributes no widgets"
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    docked = dock_all(viewer)
    assert set(docked) == set(names)
    viewer.open_sample("napari-microseg", "tem_loops")
    viewer.reset_view()
    qtbot.wait(300)
    saved = []
    for name, widget in docked.items():
        qwidget = getattr(widget, "native", widget)
        dock = qwidget.parent()
        while dock is not None and not hasattr(dock, "setFloating"):
            dock = dock.parent()
        if dock is not None:
            dock.show()
            dock.raise_()
        qtbot.wait(200)
        assert qwidget.isVisible(), f"{name} is not visible in the window"
        path = artifacts_dir / f"window_{name.lower().replace(' ', '_')}.png"
        viewer.screenshot(str(path), canvas_only=False)
        saved.append(path)
    for key in sample_keys():
        viewer.layers.clear()
        viewer.open_sample("napari-microseg", key)
        viewer.reset_view()
        qtbot.wait(200)
        path = artifacts_dir / f"sample_{key}.png"
        viewer.screenshot(str(path), canvas_only=False)
        saved.append(path)
    for p in saved:
        assert p.stat().st_size > 10_000, f"{p} looks empty"
    print("screenshots written to", artifacts_dir, [p.name for p in saved])


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run the suite under xvfb-run)")
def test_real_window_measure_and_evaluate(sample_window, qtbot, artifacts_dir):
    """Measure the sample's truth, colour by size, evaluate a damaged copy; screenshots."""
    import numpy as np

    viewer, docked = sample_window
    image, truth = viewer.layers
    truth.opacity, truth.visible = 0.8, True  # the sample's truth opens hidden
    viewer.reset_view()
    measure = docked["Measure"]
    measure.reset_choices()
    measure.labels.value, measure.image.value = truth, image
    measure.thickness.value = 80.0
    assert measure.run() is not None
    qtbot.waitUntil(lambda: measure.result is not None, timeout=60000)
    measure.color_by.value = next(c for c in measure.color_by.choices if c.startswith("equivalent_diameter"))
    measure.show_text.value = True
    measure.parent().raise_()
    qtbot.wait(300)
    path = artifacts_dir / "measure_overlay.png"
    viewer.screenshot(str(path), canvas_only=False)
    assert path.stat().st_size > 10_000

    damaged = np.array(truth.data)
    ids = np.unique(damaged)[1:]
    damaged[np.isin(damaged, ids[::4])] = 0  # every fourth object missed
    damaged = np.roll(damaged, 2, axis=1)
    pred = viewer.add_labels(damaged, name="prediction", scale=truth.scale, units=truth.units,
                             metadata=dict(truth.metadata))
    evaluate = docked["Evaluate"]
    evaluate.reset_choices()
    evaluate.pred.value, evaluate.true.value = pred, truth
    assert evaluate.run() is not None
    qtbot.waitUntil(lambda: evaluate.report is not None, timeout=60000)
    assert evaluate.report["detection"]["fn"] >= len(ids[::4]) - 1
    for lyr in (viewer.layers[n] for n in ("prediction", f"{truth.name} values", truth.name)):
        lyr.visible = False
    evaluate.parent().raise_()
    qtbot.wait(300)
    path = artifacts_dir / "evaluate_overlay.png"
    viewer.screenshot(str(path), canvas_only=False)
    assert path.stat().st_size > 10_000


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run the suite under xvfb-run)")
def test_real_window_label_dock(sample_window, qtbot, artifacts_dir):
    """Start labeling on the sample with the best offline backend, click, commit; screenshot."""
    import numpy as np

    viewer, docked = sample_window
    image, truth = viewer.layers
    truth.visible = False
    viewer.reset_view()
    label = docked["Label"]
    label.reset_choices()
    label.image.value = image
    label.model.value = "microseg-promptable"
    label.start()
    qtbot.waitUntil(lambda: label.controller is not None and label.controller.ready, timeout=60000)
    ctl = label.controller
    # click the three largest true objects, committing each
    ids, counts = np.unique(truth.data[truth.data > 0], return_counts=True)
    for i in ids[np.argsort(counts)[::-1][:3]]:
        rr, cc = np.nonzero(truth.data == i)
        ctl.add_click((rr.mean(), cc.mean()), 1)
        qtbot.waitUntil(lambda: not ctl._busy and not ctl._dirty, timeout=20000)
        ctl.commit()
    ctl.add_click((rr.mean(), cc.mean() + 40), 1)  # a pending preview, not committed
    qtbot.waitUntil(lambda: not ctl._busy and not ctl._dirty, timeout=20000)
    assert ctl.labels_layer.data.max() == 3
    label.parent().raise_()
    qtbot.wait(300)
    path = artifacts_dir / "label_dock.png"
    viewer.screenshot(str(path), canvas_only=False)
    assert path.stat().st_size > 10_000
