"""Correct dock on a real viewer: every action, its napari undo/redo, classes and shortcuts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_events import click as dispatch_click
from napari_events import press
from napari_microseg.core.calibration import PixelSize
from napari_microseg.gui.layer_data import labels_layer, layer_classes

pytestmark = pytest.mark.gui
PX = 0.5  # nm per pixel


def click(layer, rowcol):
    """Click at pixel ``(row, col)`` (given in world nm) through napari's mouse dispatch."""
    dispatch_click(layer, (rowcol[0] * PX, rowcol[1] * PX))


def feature_classes(layer) -> dict:
    """``{id: class_id}`` of every row of the features table, background included."""
    f = layer.features
    return dict(zip(f["index"].tolist(), f["class_id"].tolist(), strict=True))


def scene() -> tuple[np.ndarray, dict]:
    lab = np.zeros((40, 60), np.int32)
    lab[4:12, 4:12] = 2        # 64 px, class 1
    lab[4:12, 20:28] = 5       # 64 px, class 3
    lab[20:30, 4:50] = 7       # 460 px, class 2
    lab[34:36, 54:56] = 9      # 4 px = 1 nm², unclassified
    return lab, {2: 1, 5: 3, 7: 2}


@pytest.fixture
def dock(make_napari_viewer):
    from napari_microseg.gui.widgets.correct import CorrectWidget

    viewer = make_napari_viewer()
    lab, inst = scene()
    data, kw, _ = labels_layer(lab.copy(), instance_classes=inst, pixel_size=PixelSize.isotropic(PX, "user"),
                               name="objects")
    layer = viewer.add_labels(data, **kw)
    w = CorrectWidget(viewer)
    assert "correction points" not in viewer.layers  # docking alone adds no layers
    w.start()
    return viewer, w, layer, lab, inst


def assert_restored(layer, lab, inst):
    np.testing.assert_array_equal(layer.data, lab)
    assert layer_classes(layer)[0] == inst
    assert sorted(layer.features["index"]) == [0, *np.unique(lab[lab > 0]).tolist()]


def test_dock_sets_up_helpers_pickers_and_units(dock):
    viewer, w, layer, lab, inst = dock
    assert w.labels.value is layer
    assert "correction points" in viewer.layers and "split line" in viewer.layers
    assert w.points.mode == "add" and w.line.mode == "add_path"
    assert tuple(w.points.scale) == (PX, PX)
    assert w.min_area.label == "min size (nm²)"
    assert list(w.klass.choices) == [0, 1, 2, 3, 4, 5, 6]
    other = viewer.add_labels(np.zeros((5, 5), np.int32), name="other")
    assert other in w.labels.choices  # picker refreshed on insert


def test_merge_by_clicks_then_undo_redo(dock):
    viewer, w, layer, lab, inst = dock
    click(w.points, (8, 8))
    click(w.points, (8, 24))
    click(w.points, (25, 10))
    assert w.selection() == [2, 5, 7] and "2, 5, 7" in w.selection_text.text()
    ch = w.merge()
    expected = np.where(np.isin(lab, [5, 7]), 2, lab)
    np.testing.assert_array_equal(layer.data, expected)
    assert feature_classes(layer) == {0: 0, 2: 1, 9: 0}
    assert ch.mapping == {5: 2, 7: 2} and layer.selected_label == 2
    assert len(w.points.data) == 0
    layer.undo()  # one step restores pixels; the dock restores the classes
    assert_restored(layer, lab, inst)
    layer.redo()
    np.testing.assert_array_equal(layer.data, expected)
    assert layer_classes(layer)[0] == {2: 1}


def test_delete_selected_label_and_undo(dock):
    viewer, w, layer, lab, inst = dock
    layer.selected_label = 5  # no points: the layer's selected label is the selection
    w.delete()
    np.testing.assert_array_equal(layer.data, np.where(lab == 5, 0, lab))
    assert feature_classes(layer) == {0: 0, 2: 1, 7: 2, 9: 0}
    layer.undo()
    assert_restored(layer, lab, inst)


def test_split_along_line_and_undo(dock):
    viewer, w, layer, lab, inst = dock
    w.line.add_paths([np.array([[16.0, 30.0], [34.0, 30.0]])])
    ch = w.split_line()
    out = np.asarray(layer.data)
    assert ch.created == [10]
    assert (out[20:30, 4:30] == 7).all() and (out[20:30, 31:50] == 10).all()
    assert set(np.unique(out[20:30, 30])) <= {7, 10}
    assert layer_classes(layer)[0] == {**inst, 10: 2}
    assert len(w.line.data) == 0
    layer.undo()
    assert_restored(layer, lab, inst)


def test_split_by_seeds_two_objects_is_one_undo_step(dock):
    viewer, w, layer, lab, inst = dock
    for rc in [(25, 6), (25, 46), (6, 6), (10, 10)]:
        click(w.points, rc)
    w.split_seeds()
    out = np.asarray(layer.data)
    assert set(np.unique(out)) == {0, 2, 5, 7, 9, 10, 11}
    assert set(np.unique(out[lab == 7])) == {7, 11} and set(np.unique(out[lab == 2])) == {2, 10}
    assert layer_classes(layer)[0] == {**inst, 10: 1, 11: 2}
    layer.undo()
    assert_restored(layer, lab, inst)


def test_set_class_is_not_a_pixel_edit(dock):
    viewer, w, layer, lab, inst = dock
    w.klass.value = 4
    click(w.points, (35, 55))
    w.set_class()
    assert layer_classes(layer)[0] == {**inst, 9: 4}
    assert layer.features.set_index("index").loc[9, "class_name"] == "void"
    layer.undo()  # nothing in napari's history: pixels and classes stay
    np.testing.assert_array_equal(layer.data, lab)
    assert layer_classes(layer)[0] == {**inst, 9: 4}


def test_fill_holes_and_undo(dock):
    viewer, w, layer, lab, inst = dock
    holed = lab.copy()
    holed[6:8, 6:8] = 0
    holed[24, 10] = 0
    layer.data = holed
    click(w.points, (5, 5))  # only object 2
    w.fill_holes()
    out = np.asarray(layer.data)
    assert (out[6:8, 6:8] == 2).all() and out[24, 10] == 0
    layer.undo()
    np.testing.assert_array_equal(layer.data, holed)
    w.fill_holes()  # no points: every object
    np.testing.assert_array_equal(layer.data, lab)


def test_remove_small_in_nm2_and_undo(dock):
    viewer, w, layer, lab, inst = dock
    w.min_area.value = 16.5  # nm²: 64 px = 16 nm² and 4 px = 1 nm² go, 460 px stays
    w.remove_small()
    assert set(np.unique(layer.data)) == {0, 7}
    assert feature_classes(layer) == {0: 0, 7: 2}
    layer.undo()
    assert_restored(layer, lab, inst)


def test_renumber_remaps_classes_and_undo_redo(dock):
    viewer, w, layer, lab, inst = dock
    ch = w.renumber()
    assert ch.mapping == {2: 1, 5: 2, 7: 3, 9: 4}
    np.testing.assert_array_equal(layer.data, np.select([lab == k for k in ch.mapping],
                                                        list(ch.mapping.values()), 0))
    assert layer_classes(layer)[0] == {1: 1, 2: 3, 3: 2}
    layer.undo()
    assert_restored(layer, lab, inst)
    layer.redo()
    assert layer_classes(layer)[0] == {1: 1, 2: 3, 3: 2}


def test_two_actions_two_undo_steps_and_errors_change_nothing(dock):
    viewer, w, layer, lab, inst = dock
    click(w.points, (8, 8))
    assert w.merge() is None and "two" in w.status.text()
    assert len(w.points.data) == 1  # kept for the user to add more
    w.delete()
    layer.selected_label = 7
    w.delete()
    assert set(np.unique(layer.data)) == {0, 5, 9}
    layer.undo()
    assert set(np.unique(layer.data)) == {0, 5, 7, 9}
    assert layer_classes(layer)[0] == {5: 3, 7: 2}
    layer.undo()
    assert_restored(layer, lab, inst)


def test_shortcuts_on_labels_and_helper_layers(dock):
    viewer, w, layer, lab, inst = dock
    from napari_microseg.gui.widgets.correct import SHORTCUTS

    for key in SHORTCUTS:
        napari_key = key.replace("-", "+")
        for target in (layer, w.points, w.line):
            assert napari_key in {str(k) for k in target.keymap}
    click(w.points, (8, 8))
    click(w.points, (8, 24))
    press(w.points, "Shift+M")
    assert set(np.unique(layer.data)) == {0, 2, 7, 9}
    press(w.points, "Ctrl+Z")  # helper layer: undoes the labels layer
    assert_restored(layer, lab, inst)
    press(w.line, "Ctrl+Shift+Z")
    assert set(np.unique(layer.data)) == {0, 2, 7, 9}
    press(layer, "Ctrl+Z")  # napari's own binding on the labels layer
    assert_restored(layer, lab, inst)
    press(layer, "Shift+R")
    assert set(np.unique(layer.data)) == {0, 1, 2, 3, 4}
    layer.undo()
    layer.selected_label = 9
    press(w.line, "Shift+D")
    assert 9 not in layer.data
    layer.undo()
    w.line.add_paths([np.array([[16.0, 30.0], [34.0, 30.0]])])
    press(layer, "Shift+X")
    assert 10 in layer.data
    layer.undo()
    w.min_area.value = 2
    press(layer, "Shift+S")
    assert 9 not in layer.data
    layer.undo()
    for rc in [(25, 6), (25, 46)]:
        click(w.points, rc)
    press(layer, "Shift+W")
    assert 10 in layer.data
    layer.undo()
    w.klass.value = 6
    layer.selected_label = 9
    press(layer, "Shift+K")
    assert layer_classes(layer)[0][9] == 6
    holed = lab.copy()
    holed[7:9, 23:25] = 0  # a hole in object 5
    layer.data = holed
    press(layer, "Shift+F")
    np.testing.assert_array_equal(layer.data, lab)


def test_brush_paint_and_hidden_undo_keep_classes_consistent(dock):
    viewer, w, layer, lab, inst = dock
    layer.paint((36, 10), 12)  # napari brush: a new id gets an unclassified row
    assert feature_classes(layer)[12] == 0
    layer.undo()
    assert 12 not in feature_classes(layer)
    layer.selected_label = 5
    w.delete()
    layer.visible = False  # napari sends no event when a hidden layer is undone ...
    layer.undo()
    assert 5 in layer.data
    layer.visible = True  # ... showing it refreshes it, and the classes come back
    assert layer_classes(layer)[0] == inst


def test_switching_target_moves_the_keys(dock):
    viewer, w, layer, lab, inst = dock
    other_lab = np.zeros((40, 60), np.int32)
    other_lab[0:3, 0:3] = 4
    other = viewer.add_labels(other_lab, name="other")
    w.labels.value = other
    assert "Shift+M" not in {str(k) for k in layer.keymap}
    assert "Shift+M" in {str(k) for k in other.keymap}
    other.selected_label = 4
    press(w.points, "Shift+D")
    assert not other.data.any()
    np.testing.assert_array_equal(layer.data, lab)
    other.undo()
    assert feature_classes(other) == {0: 0, 4: 0}


def test_volume_labels_are_refused_with_a_message(dock):
    viewer, w, layer, lab, inst = dock
    vol = viewer.add_labels(np.ones((3, 40, 60), np.int32), name="volume")
    w.labels.value = vol
    vol.selected_label = 1
    assert w.delete() is None and "2-D" in w.status.text()
    assert (vol.data == 1).all()


def test_closed_ellipse_cuts_its_inside_out(dock):
    viewer, w, layer, lab, inst = dock
    w.line.add_ellipses([np.array([[21.0, 30.0], [21.0, 46.0], [29.0, 46.0], [29.0, 30.0]])])
    ch = w.split_line()
    out = np.asarray(layer.data)
    assert ch.created == [10]
    assert (out[24:27, 34:43] == 10).all()  # well inside the ellipse
    assert (out[20:30, 4:28] == 7).all() and out[21, 31] == 7  # outside it (a corner of the box)
    layer.undo()
    assert_restored(layer, lab, inst)
