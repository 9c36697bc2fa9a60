"""Label dock as a new user drives it: the shown class is stored, the dock follows the image.

Everything goes through the dock's Qt widgets (buttons clicked, combos changed as a
user would) and napari's mouse dispatch for the clicks on the canvas.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from skimage.draw import disk

from napari_events import click
from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.labels_io import read_labels, sidecar_path
from napari_microseg.gui.layer_data import is_helper_layer, layer_classes

pytestmark = pytest.mark.gui
PLUGIN = "napari-microseg"
NM = 0.5
OBJECTS = [(40, 50, 12), (100, 140, 15), (120, 40, 9)]


def micrograph(seed=0):
    img = np.full((160, 200), 200, np.uint8)
    for r, c, rad in OBJECTS:
        img[disk((r, c), rad)] = 60
    return (img + np.random.default_rng(seed).normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)


def add_micrograph(viewer, name, seed=0):
    ps = PixelSize.isotropic(NM, "user")
    return viewer.add_image(micrograph(seed), name=name, scale=ps.scale, units=("nm", "nm"),
                            metadata={"pixel_size": ps.to_dict(), "unit": "nm"})


def press_button(button):
    QTest.mouseClick(button.native, Qt.MouseButton.LeftButton)


def choose(combo, text):
    combo.native.setCurrentIndex(combo.native.findText(text))


def start(w, qtbot):
    choose(w.model, "otsu-flood")
    press_button(w.start_button)
    qtbot.waitUntil(lambda: w.controller is not None and w.controller.ready, timeout=20000)
    return w.controller


def click_object(qtbot, ctl, rc):
    click(ctl.points, (rc[0] * NM, rc[1] * NM))  # world coordinates in nm
    qtbot.waitUntil(lambda: not ctl._busy and not ctl._dirty and ctl.preview.data.any(), timeout=20000)


@pytest.fixture
def dock(make_napari_viewer):
    from napari_microseg.gui.widgets.label import LabelWidget

    viewer = make_napari_viewer()
    add_micrograph(viewer, "tem")
    w = LabelWidget(viewer)
    viewer.window.add_dock_widget(w)
    return viewer, w


def test_clicked_objects_get_the_class_shown_on_start(dock, qtbot, tmp_path):
    viewer, w = dock
    assert w.klass.value == "<111> loop"  # what the user sees; never touched
    ctl = start(w, qtbot)
    target = viewer.layers["tem labels"]
    for r, c, _ in OBJECTS[:2]:
        click_object(qtbot, ctl, (r, c))
        press_button(w.commit_button)
    inst, classes = layer_classes(target)
    assert set(np.unique(target.data)) == {0, 1, 2}
    assert inst == {1: classes.id_of("<111> loop"), 2: classes.id_of("<111> loop")}
    assert list(target.features["class_name"]) == ["background", "<111> loop", "<111> loop"]
    # a class picked later applies from the next commit on
    choose(w.klass, "black dot")
    click_object(qtbot, ctl, OBJECTS[2][:2])
    press_button(w.commit_button)
    assert layer_classes(target)[0][3] == classes.id_of("black dot")
    # saving writes the classes into the sidecar
    out = tmp_path / "tem labels.tif"
    target.save(str(out), plugin=PLUGIN)
    side = json.loads(sidecar_path(out).read_text())
    assert side["instance_classes"] == {"1": 1, "2": 1, "3": 3}
    assert read_labels(out).instance_classes == {1: 1, 2: 1, 3: 3}


def test_box_batch_gets_the_class_shown_on_start(dock, qtbot, tmp_path):
    viewer, w = dock
    ctl = start(w, qtbot)
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("".join(f"{r - rad - 2} {c - rad - 2} {r + rad + 2} {c + rad + 2}\n" for r, c, rad in OBJECTS))
    assert ctl.load_boxes(boxes) == 3
    press_button(w.boxes_button)
    qtbot.waitUntil(lambda: "Committed 3 objects" in w.status.text(), timeout=20000)
    inst, classes = layer_classes(viewer.layers["tem labels"])
    assert inst == {1: 1, 2: 1, 3: 1} and classes[1].name == "<111> loop"


def test_dock_follows_the_active_image_and_never_offers_helpers(make_napari_viewer, qtbot):
    from napari_microseg.gui.widgets.label import LabelWidget

    viewer = make_napari_viewer()
    one = add_micrograph(viewer, "one", seed=1)
    two = add_micrograph(viewer, "two", seed=2)
    w = LabelWidget(viewer)
    viewer.window.add_dock_widget(w)
    viewer.layers.selection.active = one  # the user clicks "one" in the layer list
    assert w.image.value is one and w.labels.value is None
    ctl = start(w, qtbot)
    assert w.labels.value is viewer.layers["one labels"]
    click_object(qtbot, ctl, OBJECTS[0][:2])
    press_button(w.commit_button)
    helpers = [lyr.name for lyr in viewer.layers if is_helper_layer(lyr)]
    assert sorted(helpers) == ["one box prompts", "one preview", "one prompts"]
    # helper layers are never offered as image or target
    assert [c.name for c in w.labels.choices if c is not None] == ["one labels"]
    assert [c.name for c in w.image.choices] == ["one", "two"]

    viewer.layers.selection.active = two  # the user moves on to image two
    assert w.image.value is two and w.labels.value is None
    ctl2 = start(w, qtbot)
    assert ctl2.image_layer is two and ctl2.labels_layer is viewer.layers["two labels"]
    click_object(qtbot, ctl2, OBJECTS[1][:2])
    press_button(w.commit_button)
    assert viewer.layers["one labels"].data.max() == 1 and viewer.layers["two labels"].data.max() == 1
    assert viewer.layers["two labels"].metadata["source_image"] == "two"

    viewer.layers.selection.active = one  # back to one: its own labels again
    assert w.image.value is one and w.labels.value is viewer.layers["one labels"]
    n_layers = len(viewer.layers)
    ctl3 = start(w, qtbot)  # the prompt, box and preview layers of "one" are reused
    assert len(viewer.layers) == n_layers and ctl3.points is viewer.layers["one prompts"]
    click_object(qtbot, ctl3, OBJECTS[2][:2])
    assert len(ctl.points.data) == 1  # one click, handled by the current controller only
    press_button(w.commit_button)
    assert viewer.layers["one labels"].data.max() == 2 and viewer.layers["two labels"].data.max() == 1
    assert len(viewer.layers) == 2 + 2 + 6

    viewer.layers.selection.active = viewer.layers["two labels"]  # a labels layer brings its image
    assert w.image.value is two and w.labels.value is viewer.layers["two labels"]
    viewer.layers.selection.active = viewer.layers["one preview"]  # a helper layer changes nothing
    assert w.image.value is two and w.labels.value is viewer.layers["two labels"]

    viewer.layers.remove(two)  # closing an image drops its helpers, keeps its labels
    assert sorted(lyr.name for lyr in viewer.layers if is_helper_layer(lyr)) == [
        "one box prompts", "one preview", "one prompts"]
    assert "two labels" in viewer.layers
