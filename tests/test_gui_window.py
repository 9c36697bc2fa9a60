"""A real napari window under a display: dock every widget, save screenshots."""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]


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
        dock = widget.native.parent()
        while dock is not None and not hasattr(dock, "setFloating"):
            dock = dock.parent()
        if dock is not None:
            dock.show()
            dock.raise_()
        qtbot.wait(200)
        assert widget.native.isVisible(), f"{name} is not visible in the window"
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
