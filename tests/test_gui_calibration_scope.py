"""Calibration dock: a typed pixel size keeps its digits and belongs to one image and its labels."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.labels_io import read_labels
from napari_microseg.gui.layer_data import labels_layer

pytestmark = pytest.mark.gui
PLUGIN = "napari-microseg"


def add_image(viewer, name, nm):
    ps = PixelSize.isotropic(nm, "imagej", "test")
    return viewer.add_image(np.zeros((48, 64), np.uint8), name=name, scale=ps.scale,
                            metadata={"pixel_size": ps.to_dict(), "unit": "nm"})


def add_labels_of(viewer, image, nm):
    data, kw, _ = labels_layer(np.zeros((48, 64), np.int32), pixel_size=PixelSize.isotropic(nm, "imagej"),
                               name=f"{image.name} labels", metadata={"source_image": image.name})
    return viewer.add_labels(data, **kw)


def type_pixel_size(qtbot, w, text, unit="nm"):
    """Select all in the field and type ``text`` key by key, as a user would."""
    field = w.pixel_size.native
    field.setFocus()
    QTest.keyClick(field, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(field, Qt.Key.Key_Delete)
    qtbot.keyClicks(field, text)
    w.unit.native.setCurrentIndex(w.unit.native.findText(unit))


@pytest.fixture
def two_cameras(make_napari_viewer):
    """Two same-shape images at different magnifications, each with its own labels."""
    viewer = make_napari_viewer()
    low = add_image(viewer, "low mag", 2.0)
    high = add_image(viewer, "high mag", 0.25)
    low_lab = add_labels_of(viewer, low, 2.0)
    high_lab = add_labels_of(viewer, high, 0.25)
    from napari_microseg.gui.widgets.calibration import CalibrationWidget

    w = CalibrationWidget(viewer)
    return viewer, w, (low, high, low_lab, high_lab)


def test_pixel_size_stays_on_its_image_and_labels(two_cameras, qtbot):
    viewer, w, (low, high, low_lab, high_lab) = two_cameras
    w.image.native.setCurrentIndex(w.image.native.findText("high mag"))
    assert w.image.value is high
    assert w.scope.value == "Applies to: high mag, high mag labels"
    type_pixel_size(qtbot, w, "0.390625")
    assert w.parsed.value == "= 0.390625 nm/px"
    QTest.mouseClick(w.set_button.native, Qt.MouseButton.LeftButton)
    for lyr in (high, high_lab):
        assert tuple(lyr.scale) == (0.390625, 0.390625)
        assert lyr.metadata["pixel_size"]["x_nm"] == 0.390625
        assert lyr.metadata["pixel_size"]["source"] == "user"
        assert "0.390625" in lyr.metadata["pixel_size"]["detail"]
    # the other camera image and its labels keep their own calibration
    for lyr in (low, low_lab):
        assert tuple(lyr.scale) == (2.0, 2.0) and lyr.metadata["pixel_size"]["x_nm"] == 2.0
    assert w.pixel_size.value == "0.390625" and "0.390625 nm/px" in w.info.value


def test_also_apply_to_is_explicit(two_cameras, qtbot):
    viewer, w, (low, high, low_lab, high_lab) = two_cameras
    w.image.native.setCurrentIndex(w.image.native.findText("low mag"))
    offered = [w.also.native.item(i).text() for i in range(w.also.native.count())]
    assert offered == ["high mag", "high mag labels"]
    assert w.also.value == []  # nothing else by default
    w.also.native.item(1).setSelected(True)  # the user ticks "high mag labels"
    type_pixel_size(qtbot, w, "4.78516", unit="Å")
    assert w.parsed.value == "= 0.478516 nm/px"
    QTest.mouseClick(w.set_button.native, Qt.MouseButton.LeftButton)
    for lyr in (low, low_lab, high_lab):
        assert lyr.metadata["pixel_size"]["x_nm"] == 0.478516
    assert high.metadata["pixel_size"]["x_nm"] == 0.25


def test_typed_precision_reaches_saved_provenance(make_napari_viewer, qtbot, tmp_path):
    from napari_microseg.gui.widgets.calibration import CalibrationWidget

    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((32, 32), np.uint8), name="tem")
    lab = add_labels_of(viewer, img, 1.0)
    w = CalibrationWidget(viewer)
    type_pixel_size(qtbot, w, "0.000390625 um")  # unit typed in the text wins over the menu
    assert w.parsed.value == "= 0.390625 nm/px"
    QTest.mouseClick(w.set_button.native, Qt.MouseButton.LeftButton)
    assert tuple(img.scale) == (0.390625, 0.390625)
    out = tmp_path / "tem labels.tif"
    lab.save(str(out), plugin=PLUGIN)
    assert read_labels(out).pixel_size.x_nm == 0.390625


def test_unreadable_pixel_size_is_refused(make_napari_viewer, qtbot, monkeypatch):
    from napari_microseg.gui.widgets.calibration import CalibrationWidget

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    viewer = make_napari_viewer()
    img = add_image(viewer, "tem", 2.0)
    w = CalibrationWidget(viewer)
    type_pixel_size(qtbot, w, "0.4 furlong")
    assert "not understood" in w.parsed.value
    QTest.mouseClick(w.set_button.native, Qt.MouseButton.LeftButton)
    assert shown and "furlong" in shown[0]
    assert img.metadata["pixel_size"]["x_nm"] == 2.0


def test_sample_ground_truth_follows_its_image(make_napari_viewer):
    from napari_microseg.gui.widgets.calibration import override_pixel_size

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "stem_loops")
    img = viewer.layers["stem_loops"]
    other = viewer.add_image(np.zeros(img.data.shape), name="other camera")
    other_labels = viewer.add_labels(np.zeros(img.data.shape, np.int32), name="other camera labels")
    changed = override_pixel_size(viewer, img, 0.390625)
    assert {lyr.name for lyr in changed} == {"stem_loops", "stem_loops ground truth"}
    assert "pixel_size" not in other.metadata and "pixel_size" not in other_labels.metadata
    assert tuple(other_labels.scale) == (1.0, 1.0)


def test_saved_and_reopened_labels_stay_with_their_image(make_napari_viewer, tmp_path):
    from napari_microseg.gui.widgets.calibration import override_pixel_size

    viewer = make_napari_viewer()
    img = add_image(viewer, "tem", 2.0)
    lab = add_labels_of(viewer, img, 2.0)
    out = tmp_path / "tem objects.tif"
    lab.save(str(out), plugin=PLUGIN)
    viewer.layers.remove(lab)
    (reopened,) = viewer.open(str(out), plugin=PLUGIN)
    unrelated = viewer.add_labels(np.zeros((48, 64), np.int32), name="unrelated")
    changed = override_pixel_size(viewer, img, 0.390625)
    assert changed == [img, reopened] and "pixel_size" not in unrelated.metadata
