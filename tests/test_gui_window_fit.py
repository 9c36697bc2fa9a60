"""The window `microseg gui` opens fits a 1600 x 1000 screen and names every dock tab in full."""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow,
              pytest.mark.skipif(not os.environ.get("DISPLAY"),
                                 reason="needs a display (run under xvfb-run -s '-screen 0 1600x1000x24')")]


@pytest.fixture
def gui_window(qtbot):
    """The window as ``microseg gui`` opens it (sample micrograph, every dock)."""
    from napari_microseg.gui.launch import open_viewer

    viewer = open_viewer(show=True)
    qtbot.wait(300)
    yield viewer
    viewer.close()


def _dock_tab_bars(window):
    from qtpy.QtWidgets import QTabBar

    return [b for b in window.findChildren(QTabBar) if b.parent() is window and b.isVisible()]


def test_window_fits_the_screen(gui_window, qtbot, artifacts_dir):
    from napari_microseg.gui.launch import widget_names

    window = gui_window.window._qt_window
    avail = window.screen().availableGeometry()
    frame = window.frameGeometry()
    assert frame.height() <= avail.height(), f"window frame {frame.height()} px > screen {avail.height()} px"
    assert frame.width() <= avail.width()
    assert avail.contains(frame), f"window {frame} reaches outside the screen {avail}"
    # the status bar is on screen
    status = window.statusBar()
    bottom = status.mapToGlobal(status.rect().bottomLeft()).y()
    assert bottom <= avail.bottom() + 1
    # the tallest dock (Train) in front must not push the window past the screen
    for name in ("Train", "Label", "Measure"):
        dock = gui_window.window._wrapped_dock_widgets[f"{name} (napari-microseg)"]
        dock.raise_()
        qtbot.wait(100)
        assert window.frameGeometry().height() <= avail.height(), f"{name} in front grows the window"
        assert window.minimumSizeHint().height() <= avail.height()
    assert len(widget_names()) >= 9
    # no dock scrolls sideways: content scrolls up and down only
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QScrollBar

    for name in widget_names():
        dock = gui_window.window._wrapped_dock_widgets[f"{name} (napari-microseg)"]
        dock.raise_()
        qtbot.wait(50)
        bars = [b.maximum() for b in dock.findChildren(QScrollBar)
                if b.orientation() == Qt.Orientation.Horizontal and b.isVisible() and b.maximum() > 0]
        assert not bars, f"the {name} dock scrolls sideways by {bars} px"
    gui_window.window._wrapped_dock_widgets["Train (napari-microseg)"].raise_()  # the tallest dock in front
    qtbot.wait(100)
    assert window.frameGeometry().height() <= avail.height()
    path = artifacts_dir / "window_fit_1600x1000.png"
    window.grab().save(str(path))
    assert path.stat().st_size > 10_000


def test_dock_tabs_read_in_full(gui_window, qtbot):
    from napari_microseg.gui.launch import widget_names

    window = gui_window.window._qt_window
    bars = _dock_tab_bars(window)
    assert bars, "the docks are not tabified"
    texts = {}
    for bar in bars:
        fm = bar.fontMetrics()
        vertical = bar.shape() in (bar.RoundedWest, bar.RoundedEast, bar.TriangularWest, bar.TriangularEast)
        for i in range(bar.count()):
            text, rect = bar.tabText(i), bar.tabRect(i)
            room = rect.height() if vertical else rect.width()
            assert "…" not in text and "..." not in text, text
            assert fm.horizontalAdvance(text) <= room, f"tab {text!r} is elided ({room} px for its name)"
            texts[text] = room
    for name in widget_names():
        assert name in texts, f"no dock tab reads {name!r}: {sorted(texts)}"


def test_dock_content_scrolls_and_widget_stays_reachable(gui_window):
    """Tall docks scroll inside themselves; ``dock_widgets`` still gives the plugin's widget."""
    from qtpy.QtWidgets import QScrollArea

    from napari_microseg.gui.widgets.measure import MeasureWidget
    from napari_microseg.gui.widgets.train import TrainWidget

    docks = gui_window.window.dock_widgets
    measure = docks["Measure (napari-microseg)"]
    train = docks["Train (napari-microseg)"]
    assert isinstance(measure, MeasureWidget) and isinstance(train, TrainWidget)
    for w in (measure, train):
        assert w.findChild(QScrollArea) is not None
        assert w.minimumSizeHint().height() < 300
        assert hasattr(w.parent(), "setFloating"), "the widget's parent is no longer its dock"
