"""Label dock in a real viewer: edit an existing object, scribble and lasso prompts (issue 16 items 3-4).

Input goes through napari's mouse dispatch (press, moves, release) on the prompts
layer, as a user's Control+click, right click and Shift+drag would. Screenshots go
to ``test-artifacts/edit_scribble/``.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_events import MouseEvent, click, press
from napari_microseg.gui.layer_data import labels_layer, layer_classes
from test_prompt_strokes import disc_scene, lobed_region

pytestmark = pytest.mark.gui


def drag(layer, world_path, button=1, modifiers=()):
    """Press at the first point, move through the others, release at the last (napari's dispatch)."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    def wrapped(kind, p, dragging):
        # a fresh event per dispatch, as the canvas sends: napari 0.9 re-points the
        # press event's proxy at each move event, so reusing one proxy would point it at itself
        event = MouseEvent(kind, tuple(p), button, list(modifiers))
        event.is_dragging = dragging
        return ReadOnlyWrapper(event, exceptions=("handled",))

    mouse_press_callbacks(layer, wrapped("mouse_press", world_path[0], False))
    for p in world_path[1:]:
        mouse_move_callbacks(layer, wrapped("mouse_move", p, True))
    mouse_release_callbacks(layer, wrapped("mouse_release", world_path[-1], False))


def iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


SCALE = 0.5  # nm per pixel: world = pixel * SCALE


def make_scene():
    """Dark discs A and B touching, C alone, and an irregular five-lobed region D (uint8)."""
    img, truth = disc_scene((200, 320), [(60, 60, 20), (60, 97, 17), (150, 60, 15)], bright=200.0,
                            dark=70.0, noise=8.0, regions=[lobed_region((200, 320), (100, 230))])
    return img.clip(0, 255).astype(np.uint8), truth


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    from napari_microseg.core.calibration import PixelSize
    from napari_microseg.gui.widgets.label import LabelWidget

    img, truth = make_scene()
    viewer = make_napari_viewer()
    ps = PixelSize.isotropic(SCALE, "user")
    viewer.add_image(img, name="tem", scale=ps.scale, metadata={"pixel_size": ps.to_dict()})
    objects = np.zeros(img.shape, np.int32)
    objects[(truth == 1) | (truth == 2)] = 5  # a model merged A and B into one object
    objects[truth == 3] = 2
    data, kw, _ = labels_layer(objects, instance_classes={5: 3, 2: 1}, pixel_size=ps, name="tem labels",
                               metadata={"source_image": "tem"})
    viewer.add_labels(data, **kw)
    w = LabelWidget(viewer)
    viewer.window.add_dock_widget(w, name="Label")
    w.reset_choices()
    w.image.value = viewer.layers["tem"]
    w.labels.value = viewer.layers["tem labels"]
    w.model.value = "otsu-flood"
    w.start()
    qtbot.waitUntil(lambda: w.controller is not None and w.controller.ready, timeout=20000)
    return viewer, w, truth


def wait_preview(qtbot, ctl):
    qtbot.waitUntil(lambda: not ctl._busy and not ctl._dirty, timeout=20000)
    qtbot.wait(50)


def world(rc):
    return (rc[0] * SCALE, rc[1] * SCALE)


def shot(viewer, qtbot, artifacts_dir, name):
    folder = artifacts_dir / "edit_scribble"
    folder.mkdir(parents=True, exist_ok=True)
    qtbot.wait(100)
    viewer.screenshot(str(folder / f"{name}.png"), canvas_only=False, flash=False)


def test_edit_object_negative_click_commit_then_one_undo(dock, qtbot, artifacts_dir):
    viewer, w, truth = dock
    ctl, target = w.controller, viewer.layers["tem labels"]
    before, classes_before = target.data.copy(), layer_classes(target)[0]
    click(ctl.points, world((60, 60)), modifiers=["Control"])  # pick the merged object
    assert ctl.editing is not None and ctl.editing.label == 5 and ctl.editing.layer is target
    np.testing.assert_array_equal(ctl.preview.data > 0, before == 5)  # the start mask
    click(ctl.points, world((60, 100)), button=2)  # negative click on the wrong half
    wait_preview(qtbot, ctl)
    shot(viewer, qtbot, artifacts_dir, "01_edit_negative_click_preview")
    assert (ctl.preview.data > 0).sum() < (before == 5).sum()
    n_steps = len(ctl.history)
    w.commit_button.clicked.emit()
    assert len(ctl.history) == n_steps + 1 and ctl.editing is None
    after = target.data
    assert iou(after == 5, truth == 1) > 0.9  # same id, now only A
    assert np.count_nonzero((after == 5) & (truth == 2)) < 0.1 * np.count_nonzero(truth == 2)
    assert layer_classes(target)[0] == {5: 3, 2: 1}  # same class, C untouched
    np.testing.assert_array_equal(after == 2, before == 2)
    assert after.max() == 5  # no new object
    shot(viewer, qtbot, artifacts_dir, "02_edit_committed")
    w.undo_button.clicked.emit()  # one undo restores the object exactly
    np.testing.assert_array_equal(target.data, before)
    assert layer_classes(target)[0] == classes_before


def test_edit_from_ground_truth_copies_into_target_and_cancel_changes_nothing(dock, qtbot):
    viewer, w, truth = dock
    ctl, target = w.controller, viewer.layers["tem labels"]
    gt_data, kw, _ = labels_layer((truth == 4).astype(np.int32) * 9, instance_classes={9: 6},
                                  name="tem ground truth", metadata={"ground_truth": True})
    kw["scale"] = (SCALE, SCALE)
    gt = viewer.add_labels(gt_data, **kw)
    viewer.layers.selection.active = ctl.points
    gt_before, target_before = gt.data.copy(), target.data.copy()
    # cancel: pick, correct, Escape -> nothing changes anywhere
    click(ctl.points, world((60, 60)), modifiers=["Control"])
    click(ctl.points, world((60, 100)), button=2)
    wait_preview(qtbot, ctl)
    press(ctl.points, "Escape")
    assert ctl.editing is None and not ctl.preview.data.any()
    np.testing.assert_array_equal(target.data, target_before)
    # the Edit button, then a plain click on the ground-truth object (nothing of the target there)
    w.edit_button.clicked.emit()
    click(ctl.points, world((100, 230)))
    assert ctl.editing is not None and ctl.editing.layer is gt and ctl.editing.label == 9
    click(ctl.points, world((100, 230)))  # a positive click keeps it
    wait_preview(qtbot, ctl)
    w.commit_button.clicked.emit()
    new = int(target.data[100, 230])
    assert new == 6 and iou(target.data == new, truth == 4) > 0.9  # next free id of the target
    inst, classes = layer_classes(target)
    assert classes[inst[new]].name == "pit"  # the ground truth's class, by name
    np.testing.assert_array_equal(gt.data, gt_before)  # the source is left alone
    w.undo_button.clicked.emit()
    np.testing.assert_array_equal(target.data, target_before)


def test_lasso_and_scribbles_commit_with_the_chosen_class(dock, qtbot, artifacts_dir):
    viewer, w, truth = dock
    ctl, target = w.controller, viewer.layers["tem labels"]
    w.new_class.value = "corroded area"
    w._on_add_class()
    assert w.klass.value == "corroded area"
    w.stroke_tool.value = "lasso"
    t = np.linspace(0, 2 * np.pi, 60)
    loop = np.stack([100 + 63 * np.sin(t) + 3 * np.sin(7 * t), 230 + 63 * np.cos(t)], 1)
    drag(ctl.points, [world(p) for p in loop], modifiers=["Shift"])
    assert ctl.strokes.lasso is not None and len(ctl.stroke_layer.data) == 1
    assert ctl.points.mouse_pan  # panning is back after the drag
    wait_preview(qtbot, ctl)
    shot(viewer, qtbot, artifacts_dir, "03_lasso_preview")
    from napari_microseg.core.prompting.strokes import polygon_mask

    assert iou(ctl.preview.data > 0, truth == 4) > 0.88 > iou(polygon_mask(loop, truth.shape), truth == 4) + 0.3
    press(ctl.points, "C")
    inst, classes = layer_classes(target)
    new = int(target.data[100, 230])
    assert new == 6 and classes[inst[new]].name == "corroded area"
    assert not ctl.stroke_layer.data and len(ctl.points.data) == 0
    shot(viewer, qtbot, artifacts_dir, "04_lasso_committed")
    # a scribble inside C (already object 2) with overwrite, and a negative stroke: a scribble object
    w.stroke_tool.value = "scribble"
    w.overwrite.value = True
    drag(ctl.points, [world(p) for p in [(140, 55), (150, 60), (160, 64)]], modifiers=["Shift"])
    drag(ctl.points, [world(p) for p in [(120, 20), (125, 60), (128, 100)]], modifiers=["Shift", "Alt"])
    assert len(ctl.strokes.positive) == 1 and len(ctl.strokes.negative) == 1
    wait_preview(qtbot, ctl)
    assert iou(ctl.preview.data > 0, truth == 3) > 0.9
    w.commit_button.clicked.emit()
    assert iou(target.data == 7, truth == 3) > 0.9
