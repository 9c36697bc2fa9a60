"""Small things a user notices: a steady Measure button, a selection that ends with its object, classes on the canvas."""

from __future__ import annotations

import os

import numpy as np
import pytest
from skimage.draw import disk

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.classes import ClassTable, DefectClass
from napari_microseg.gui.layer_data import labels_layer

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")]
NM = 0.5
CLASSES = ClassTable([DefectClass(1, "loop", "#ff0000"), DefectClass(2, "dot", "#0000ff")])


def scene(viewer):
    lab = np.zeros((120, 160), np.int32)
    lab[disk((40, 40), 15)] = 1   # loop
    lab[disk((80, 110), 20)] = 2  # dot
    lab[disk((90, 30), 10)] = 9   # loop
    data, kw, _ = labels_layer(lab, instance_classes={1: 1, 2: 2, 9: 1}, classes=CLASSES,
                               pixel_size=PixelSize.isotropic(NM, "user"), name="objects")
    return viewer.add_labels(data, opacity=1.0, **kw)


def qt_click(widget):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    native = getattr(widget, "native", widget)
    assert native.isVisible(), "the button is not on screen"
    QTest.mouseClick(native, Qt.LeftButton)


def test_measure_button_stays_put_when_hardening_fields_appear(make_napari_viewer, qtbot):
    from qtpy.QtCore import QPoint

    from napari_microseg.gui.widgets.measure import MeasureWidget

    viewer = make_napari_viewer(show=True)
    scene(viewer)
    w = MeasureWidget(viewer)
    viewer.window.add_dock_widget(w, area="right")
    qtbot.wait(100)

    def where():
        return w.measure_button.native.mapTo(w, QPoint(0, 0))

    before = where()
    w.thickness.native.setValue(80.0)  # as typed: the hardening fields appear
    qtbot.wait(100)
    assert w.taylor.native.isVisible()
    assert where() == before, f"the Measure button jumped from {before} to {where()}"


def test_selection_ends_with_its_object(make_napari_viewer, qtbot):
    from napari_events import click
    from napari_microseg.gui.widgets.correct import CorrectWidget

    viewer = make_napari_viewer(show=True)
    layer = scene(viewer)
    w = CorrectWidget(viewer)
    viewer.window.add_dock_widget(w, area="right")
    w.start()
    qtbot.wait(50)
    delete = w.buttons["delete"]
    assert not delete.enabled, "Delete is enabled with nothing selected"
    click(w.points, (90 * NM, 30 * NM))  # click object 9
    assert w.selection() == [9] and "9" in w.selection_text.text()
    assert delete.enabled
    qt_click(delete)
    assert 9 not in np.unique(layer.data)
    assert w.selection_text.text() == "Selected: nothing"
    assert not delete.enabled and not w.buttons["merge"].enabled
    remaining = set(np.unique(layer.data).tolist())
    qt_click(delete)  # a second press deletes nothing
    assert set(np.unique(layer.data).tolist()) == remaining == {0, 1, 2}
    # a selection by the layer's selected label also ends when the object is erased
    layer.selected_label = 2
    assert "2" in w.selection_text.text() and delete.enabled
    rr, cc = np.nonzero(layer.data == 2)
    layer.data_setitem((rr, cc), 0)  # erased (brush, eraser, another dock)
    qtbot.wait(50)
    assert w.selection_text.text() == "Selected: nothing" and not delete.enabled


def test_classes_shown_by_colour_or_outline(make_napari_viewer, qtbot, artifacts_dir):
    from napari_microseg.gui.widgets.measure import MeasureWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1200, 800)
    layer = scene(viewer)
    w = MeasureWidget(viewer)
    viewer.window.add_dock_widget(w, area="right")
    qtbot.wait(100)  # the canvas takes its size once the dock is laid out
    viewer.reset_view()
    assert set(w.classes_as.choices) == {"off", "colour", "outline"}
    w.classes_as.native.setCurrentText("colour")
    cmap = layer.colormap
    red, blue = (np.asarray(cmap.map(np.array([i])))[0] for i in (1, 2))
    assert red[0] > 0.9 and red[2] < 0.1, red   # loops red
    assert blue[2] > 0.9 and blue[0] < 0.1, blue  # dots blue
    assert np.allclose(np.asarray(cmap.map(np.array([9])))[0], red)
    assert layer.contour == 0
    qtbot.wait(100)
    shot = viewer.screenshot(str(artifacts_dir / "classes_as_colour.png"), canvas_only=False)
    assert shot.shape[0] > 100
    w.classes_as.native.setCurrentText("outline")
    assert layer.contour == 1
    assert np.allclose(np.asarray(layer.colormap.map(np.array([2])))[0], blue)
    qtbot.wait(100)
    viewer.screenshot(str(artifacts_dir / "classes_as_outline.png"), canvas_only=False)
    # a class change (Correct dock's Set class) shows at once
    feats = layer.features.copy()
    feats.loc[feats["index"] == 9, "class_id"] = 2
    layer.features = feats
    assert np.allclose(np.asarray(layer.colormap.map(np.array([9])))[0], blue)
    w.classes_as.native.setCurrentText("off")
    assert layer.contour == 0
    assert not np.allclose(np.asarray(layer.colormap.map(np.array([9])))[0], blue)
