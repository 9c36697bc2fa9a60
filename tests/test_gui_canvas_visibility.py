"""Objects stay visible on the rendered canvas through Measure, colour-by and later edits; mixed units."""

from __future__ import annotations

import os

import numpy as np
import pytest
from skimage.draw import disk

from napari_microseg.core.calibration import PixelSize
from napari_microseg.gui.layer_data import labels_layer

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")]
NM = 0.5


def discs() -> np.ndarray:
    lab = np.zeros((200, 300), np.int32)
    lab[disk((50, 60), 18)] = 1
    lab[disk((120, 200), 25)] = 2
    lab[disk((150, 70), 14)] = 3
    return lab


def lit(viewer, qtbot) -> int:
    """Number of canvas pixels that are not the black background (the image is black)."""
    qtbot.wait(50)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    return int((shot[..., :3].astype(int).sum(-1) > 30).sum())


@pytest.fixture
def scene(make_napari_viewer, qtbot):
    from napari_microseg.gui.widgets.measure import MeasureWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1200, 800)
    ps = PixelSize.isotropic(NM, "user")
    viewer.add_image(np.zeros((200, 300), np.float32), name="micrograph", scale=(NM, NM),
                     units=("nm", "nm"), contrast_limits=(0, 1), metadata={"pixel_size": ps.to_dict()})
    data, kw, _ = labels_layer(discs(), instance_classes={1: 1, 2: 2, 3: 1}, pixel_size=ps, name="objects")
    layer = viewer.add_labels(data, opacity=1.0, **kw)
    w = MeasureWidget(viewer)
    viewer.window.add_dock_widget(w, area="right")
    qtbot.wait(100)  # the canvas takes its size once the dock is laid out
    viewer.reset_view()
    qtbot.wait(200)
    return viewer, w, layer


def measure(qtbot, w):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    QTest.mouseClick(w.measure_button.native, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.result is not None and w.measure_button.enabled, timeout=60000)
    qtbot.wait(200)


def test_objects_stay_on_canvas_after_measure_and_colour_by(scene, qtbot, artifacts_dir):
    viewer, w, layer = scene
    before = lit(viewer, qtbot)
    assert before > 1000, "the objects are not drawn to begin with"
    measure(qtbot, w)
    after = lit(viewer, qtbot)
    assert after > 0.8 * before, f"objects vanished after Measure ({after} lit px, {before} before)"
    w.color_by.value = "equivalent_diameter_nm"
    qtbot.wait(100)
    coloured = lit(viewer, qtbot)
    assert coloured > 0.8 * before
    viewer.screenshot(str(artifacts_dir / "canvas_after_measure_colour_by.png"), canvas_only=False)


def test_object_added_after_colour_by_is_visible(scene, qtbot, artifacts_dir):
    viewer, w, layer = scene
    measure(qtbot, w)
    w.color_by.value = "equivalent_diameter_nm"
    base = lit(viewer, qtbot)
    hidden = layer.visible
    # commit a new object the way the Label and Correct docks do (one undoable data_setitem)
    rr, cc = disk((60, 230), 20)
    layer.data_setitem((rr, cc), 4)
    qtbot.wait(100)
    grown = lit(viewer, qtbot)
    layer.visible = False
    empty = lit(viewer, qtbot)
    layer.visible = hidden
    per_object = (base - empty) / 3  # about one disc's worth of canvas pixels
    assert grown - base > 0.5 * per_object, (
        f"the new object is invisible after colour-by ({grown - base} new lit px, ~{per_object:.0f} expected)")
    viewer.screenshot(str(artifacts_dir / "canvas_new_object_after_colour_by.png"), canvas_only=False)


def test_home_view_with_px_and_nm_layers(make_napari_viewer, qtbot, monkeypatch):
    """px and nm layers together: reset_view works; a px mask takes its image's nm; a px image is named."""
    import napari.utils.notifications as notifications

    from napari_microseg.gui.widgets.measure import MeasureWidget

    said = []
    monkeypatch.setattr(notifications, "show_info", lambda msg: said.append(msg))
    viewer = make_napari_viewer(show=True)
    MeasureWidget(viewer)  # a dock of the plugin is open
    # a px image and nm labels: the image is not recalibrated behind the user's back
    viewer.add_image(np.random.default_rng(0).random((200, 300)), name="raw")  # napari default: px
    data, kw, _ = labels_layer(discs(), pixel_size=PixelSize.isotropic(NM, "user"), name="objects")
    viewer.add_labels(data, **kw)
    viewer.reset_view()  # must not raise
    qtbot.wait(100)
    assert any("raw" in m and "Calibration dock" in m for m in said), said
    # an nm image and a px mask of its size (a mask file, napari's own layer): one unit, one fit
    viewer.layers.clear()
    img = viewer.add_image(np.zeros((50, 60)), name="calibrated", scale=(2.0, 2.0), units=("nm", "nm"),
                           metadata={"pixel_size": PixelSize.isotropic(2.0, "user").to_dict()})
    lab = viewer.add_labels(np.zeros((50, 60), np.int32), name="mask")
    viewer.reset_view()
    assert viewer.layers.extent.units is not None, "inconsistent units across layers"
    assert tuple(lab.scale) == pytest.approx((2.0, 2.0)) and img.units == lab.units
    np.testing.assert_allclose(img.extent.world, lab.extent.world)
    # two images of one size at different magnifications: a px mask is left alone (ambiguous)
    viewer.add_image(np.zeros((50, 60)), name="other magnification", scale=(1.0, 1.0), units=("nm", "nm"),
                     metadata={"pixel_size": PixelSize.isotropic(1.0, "user").to_dict()})
    mask2 = viewer.add_labels(np.zeros((50, 60), np.int32), name="mask 2")
    assert str(mask2.units[-1]) == "pixel"
