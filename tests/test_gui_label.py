"""Label dock: prompts to classed instances, commit/undo, boxes, segment-everything."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from napari_events import click, press
from napari_microseg.core.calibration import PixelSize
from napari_microseg.gui.layer_data import labels_layer, layer_classes

pytestmark = pytest.mark.gui


@pytest.fixture
def scene():
    img = np.full((160, 200), 200, np.uint8)
    truth = np.zeros(img.shape, np.int32)
    for i, (r, c, rad) in enumerate([(40, 50, 12), (100, 140, 15), (120, 40, 9)], start=1):
        truth[disk((r, c), rad)] = i
    img[truth > 0] = 60
    img = (img + np.random.default_rng(0).normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
    return img, truth


@pytest.fixture
def labeled(make_napari_viewer, qtbot, scene):
    from napari_microseg.core.prompting.registry import make_backend
    from napari_microseg.gui.labeling import LabelingController

    img, truth = scene
    viewer = make_napari_viewer()
    ps = PixelSize.isotropic(0.5, "user")
    image = viewer.add_image(img, scale=ps.scale, metadata={"pixel_size": ps.to_dict()})
    data, kw, _ = labels_layer(np.zeros(img.shape, np.int32), pixel_size=ps, name="objects")
    target = viewer.add_labels(data, **kw)
    ctl = LabelingController(viewer, make_backend("otsu-flood"))
    ctl.set_target(image, target)
    qtbot.waitUntil(lambda: ctl.ready, timeout=20000)
    return viewer, ctl, truth


def wait_preview(qtbot, ctl):
    qtbot.waitUntil(lambda: not ctl._busy and not ctl._dirty, timeout=20000)


def iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def test_click_preview_commit_undo_with_classes(labeled, qtbot):
    viewer, ctl, truth = labeled
    # A real click through napari's mouse dispatch, in world (nm) coordinates.
    click(ctl.points, (40 * 0.5, 50 * 0.5))
    wait_preview(qtbot, ctl)
    assert len(ctl.points.data) == 1 and bool(ctl.points.features["positive"].iloc[0])
    assert iou(ctl.preview.data > 0, truth == 1) > 0.8
    ctl.class_id = 3  # black dot
    edit = ctl.commit()
    target = ctl.labels_layer
    assert edit.label == 1 and iou(target.data == 1, truth == 1) > 0.8
    inst, classes = layer_classes(target)
    assert inst == {1: 3} and classes[3].name == "black dot"
    assert len(ctl.points.data) == 0 and not ctl.preview.data.any()
    # second object; existing labels are preserved
    ctl.add_click((100, 140), 1)
    wait_preview(qtbot, ctl)
    ctl.class_id = 1
    ctl.commit()
    assert set(np.unique(target.data)) == {0, 1, 2}
    assert layer_classes(target)[0] == {1: 3, 2: 1}
    # undo the last commit: object 2 and its class are gone, object 1 stays
    assert ctl.undo()
    assert set(np.unique(target.data)) == {0, 1}
    assert layer_classes(target)[0] == {1: 3}
    assert ctl.undo() and not target.data.any()
    assert not ctl.undo()


def test_negative_click_and_keyboard_shortcuts(labeled, qtbot):
    viewer, ctl, truth = labeled
    click(ctl.points, (40 * 0.5, 50 * 0.5))
    click(ctl.points, (100 * 0.5, 140 * 0.5), button=2)  # right click: negative
    wait_preview(qtbot, ctl)
    assert list(ctl.points.features["positive"]) == [True, False]
    # keyboard shortcut bound on the prompt layer: C commits
    press(ctl.points, "C")
    assert ctl.labels_layer.data.max() == 1
    press(ctl.points, "Ctrl+Z")
    assert ctl.labels_layer.data.max() == 0
    ctl.add_click((120, 40), 1)
    wait_preview(qtbot, ctl)
    press(ctl.points, "Shift+C")
    assert len(ctl.points.data) == 0 and not ctl.preview.data.any()


def test_commit_preserves_existing_unless_overwrite(labeled, qtbot):
    viewer, ctl, truth = labeled
    ctl.labels_layer.data[40, 40:60] = 7  # a stroke already painted through object 1
    ctl.add_click((40, 50), 1)
    wait_preview(qtbot, ctl)
    ctl.commit()
    assert np.count_nonzero(ctl.labels_layer.data == 7) == 20
    ctl.undo()
    ctl.overwrite = True
    ctl.add_click((40, 50), 1)
    wait_preview(qtbot, ctl)
    ctl.commit()
    assert np.count_nonzero(ctl.labels_layer.data == 7) == 0


def test_box_prompts_batch_and_box_file(labeled, qtbot, tmp_path):
    viewer, ctl, truth = labeled
    f = tmp_path / "boxes.txt"
    f.write_text("# ymin xmin ymax xmax\n26 36 54 64\n83 123 117 157\n109 29 131 51\n")
    assert ctl.load_boxes(f) == 3
    ctl.class_id = 1
    done = []
    ctl.segment_all_boxes(on_done=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=20000)
    assert done == [3]
    lab = ctl.labels_layer.data
    for i in (1, 2, 3):
        best = max(iou(lab == j, truth == i) for j in np.unique(lab[truth == i]) if j)
        assert best > 0.8
    assert layer_classes(ctl.labels_layer)[0] == {1: 1, 2: 1, 3: 1}
    assert len(ctl.boxes.data) == 0
    ctl.undo()  # one undo removes the whole batch
    assert not lab.any()


def test_single_drawn_box_updates_preview(labeled, qtbot):
    viewer, ctl, truth = labeled
    ctl.boxes.add_rectangles([np.array([[85, 125], [116, 156]])])
    wait_preview(qtbot, ctl)
    qtbot.waitUntil(lambda: ctl.preview.data.any(), timeout=20000)
    assert iou(ctl.preview.data > 0, truth == 2) > 0.8


def test_segment_everything_accept(labeled, qtbot):
    viewer, ctl, truth = labeled
    found = []
    ctl.find_candidates(spacing=12, min_area_nm2=10.0, on_done=found.append)
    qtbot.waitUntil(lambda: bool(found), timeout=60000)
    assert found[0] >= 3
    cand = viewer.layers["candidates"].data
    for i in (1, 2, 3):
        assert max(iou(cand == j, truth == i) for j in np.unique(cand[truth == i]) if j) > 0.7
    n = ctl.accept_candidates()
    assert n == found[0] and "candidates" not in viewer.layers
    assert ctl.labels_layer.data.max() == n


def test_label_dock_offers_no_random_weights(make_napari_viewer, monkeypatch, tmp_path):
    from napari_microseg.gui.widgets.label import LabelWidget, usable_backends

    monkeypatch.setenv("MICROSEG_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.delenv("MICROSEG_SAM2_CHECKPOINT", raising=False)
    names, note = usable_backends()
    assert not any(n.startswith("sam2") for n in names)
    assert "otsu-flood" in names
    assert "sam2.1_hiera_tiny.pt" in note and str(tmp_path) in note
    viewer = make_napari_viewer()
    w = LabelWidget(viewer)
    assert list(w.model.choices) == names
    assert "sam2.1_hiera_tiny.pt" in w.status.text()


def test_label_dock_start_creates_target_and_classes(make_napari_viewer, qtbot, scene):
    from napari_microseg.gui.widgets.label import LabelWidget

    img, truth = scene
    viewer = make_napari_viewer()
    viewer.add_image(img, name="tem")
    w = LabelWidget(viewer)
    w.reset_choices()
    w.model.value = "otsu-flood"
    w.start()
    qtbot.waitUntil(lambda: w.controller is not None and w.controller.ready, timeout=20000)
    assert "tem labels" in viewer.layers
    w.new_class.value = "dislocation segment"
    w._on_add_class()
    assert w.klass.value == "dislocation segment"
    _, classes = layer_classes(viewer.layers["tem labels"])
    assert w.controller.class_id == classes.id_of("dislocation segment")
    w.controller.add_click((100, 140), 1)
    qtbot.waitUntil(lambda: not w.controller._busy and w.controller.preview.data.any(), timeout=20000)
    w.commit_button.clicked.emit()
    assert layer_classes(viewer.layers["tem labels"])[0] == {1: classes.id_of("dislocation segment")}


@pytest.mark.slow
def test_sam2_plumbing_in_the_dock_with_random_weights(make_napari_viewer, qtbot, scene, tmp_path):
    """SAM2 built with random weights through the explicit test switch: the embedding is
    computed in a worker, cached, and a click gives a full-size preview (masks mean nothing)."""
    from napari_microseg.gui.torch_guard import block_triton

    block_triton()  # as the Label dock does, before sam2 pulls in torchvision
    from napari_microseg.core.prompting.embedding_cache import EmbeddingCache
    from napari_microseg.core.prompting.sam2_backend import Sam2Backend
    from napari_microseg.gui.labeling import LabelingController

    img, _ = scene
    viewer = make_napari_viewer()
    image = viewer.add_image(img)
    target = viewer.add_labels(np.zeros(img.shape, np.int32))
    backend = Sam2Backend("sam2.1-tiny", allow_random_weights=True)
    ctl = LabelingController(viewer, backend, EmbeddingCache(tmp_path))
    ctl.set_target(image, target)
    qtbot.waitUntil(lambda: ctl.ready, timeout=120000)
    assert ctl.status.endswith("computed") and backend.n_encoder_calls == 1
    ctl.add_click((100, 140), 1)
    qtbot.waitUntil(lambda: not ctl._busy and ctl._last_pred is not None, timeout=60000)
    assert ctl._last_pred.mask.shape == img.shape
    # Same image again: served from the disk cache, no new encoder pass.
    ctl2 = LabelingController(viewer, backend, EmbeddingCache(tmp_path))
    ctl2.set_target(image, target)
    qtbot.waitUntil(lambda: ctl2.ready, timeout=60000)
    assert "cache hit" in ctl2.status and backend.n_encoder_calls == 1


def test_label_dock_lists_a_fine_tune_when_the_registry_changes(
    make_napari_viewer, monkeypatch, tmp_path, torch_one_thread
):
    from napari_microseg.core.synth import generate
    from napari_microseg.core.training import TrainConfig, TrainImage, train
    from napari_microseg.gui.model_events import models_changed_event
    from napari_microseg.gui.widgets.label import LabelWidget

    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MICROSEG_RUNS_DIR", str(tmp_path / "runs"))
    viewer = make_napari_viewer()
    w = LabelWidget(viewer)
    assert "my-clicks" not in w.model.choices
    g = [generate("tem-loops", (128, 128), seed=s, n_objects=4) for s in (1, 2)]
    cfg = TrainConfig(name="my-clicks", architecture="promptable", epochs=1, steps_per_epoch=1,
                      batch_size=2, params={"val_objects": 2})
    res = train(cfg, [TrainImage(f"s{i}", x.image, x.labels) for i, x in enumerate(g)],
                run_dir=tmp_path / "run")
    w.model.value = "otsu-flood"
    models_changed_event(viewer)(name=res.model_name)
    assert "my-clicks" in w.model.choices
    assert w.model.value == "otsu-flood"  # the user's choice is kept


def seven_disks():
    """Dark disks of radius 6 to 12 in a row: (uint8 image, instance labels 1-7)."""
    img = np.full((120, 400), 200, np.uint8)
    truth = np.zeros(img.shape, np.int32)
    for i in range(7):
        truth[disk((40, 25 + 55 * i), 6 + i)] = i + 1
    img[truth > 0] = 60
    return img, truth


def test_committed_objects_size_the_next_first_click(make_napari_viewer, qtbot):
    """After five commits of a class, a first click carries their median area to the model;
    another class has no hint of its own yet, and undo forgets the undone objects."""
    from napari_microseg.core.prompting.registry import make_backend
    from napari_microseg.gui.labeling import LabelingController

    img, truth = seven_disks()
    viewer = make_napari_viewer()
    image = viewer.add_image(img)
    data, kw, _ = labels_layer(np.zeros(img.shape, np.int32), name="objects")
    target = viewer.add_labels(data, **kw)
    backend = make_backend("otsu-flood")
    seen = []
    predict = backend.predict
    backend.predict = lambda prompts: (seen.append(prompts.size_hint), predict(prompts))[1]
    backend.uses_size_hint = True  # it stands for the offline model: the status says so
    ctl = LabelingController(viewer, backend)
    ctl.set_target(image, target)
    qtbot.waitUntil(lambda: ctl.ready, timeout=20000)
    ctl.class_id = 1
    areas = []
    for i in range(6):
        click(ctl.points, (40, 25 + 55 * i))
        wait_preview(qtbot, ctl)
        assert seen[-1] == (None if i < 5 else float(np.median(areas)))
        areas.append(int(ctl.commit().index[0].size))
        assert ("First clicks now look for objects of about" in ctl.status) == (i >= 4)
    assert np.allclose(areas, [(truth == i + 1).sum() for i in range(6)], rtol=0.1)
    ctl.size_prior = False  # the dock's check box, unticked
    click(ctl.points, (40, 25 + 55 * 6))
    wait_preview(qtbot, ctl)
    assert seen[-1] is None
    ctl.next_object()
    ctl.size_prior = True
    ctl.class_id = 2  # another kind of object: no hint from the class-1 ones
    click(ctl.points, (40, 25 + 55 * 6))
    wait_preview(qtbot, ctl)
    assert seen[-1] is None
    ctl.next_object()
    ctl.class_id = 1
    assert ctl.undo() and ctl.undo()  # four class-1 objects left: too few for a hint
    click(ctl.points, (40, 25))
    wait_preview(qtbot, ctl)
    assert seen[-1] is None


def test_objects_already_in_the_labels_size_first_clicks_and_survive_a_model_swap(
        make_napari_viewer, qtbot):
    """Labels that already hold five class-1 objects give the hint at once; swapping the model
    (as adaptation does) keeps it; objects of another class do not count."""
    from napari_microseg.core.prompting.registry import make_backend
    from napari_microseg.gui.labeling import LabelingController

    img, truth = seven_disks()
    viewer = make_napari_viewer()
    image = viewer.add_image(img)
    data, kw, _ = labels_layer(truth, instance_classes={**{i: 1 for i in range(1, 6)}, 6: 2, 7: 2},
                               name="objects")
    target = viewer.add_labels(data, **kw)

    def spied():
        backend, seen = make_backend("otsu-flood"), []
        predict = backend.predict
        backend.predict = lambda prompts: (seen.append(prompts.size_hint), predict(prompts))[1]
        return backend, seen

    backend, seen = spied()
    ctl = LabelingController(viewer, backend)
    ctl.set_target(image, target)
    qtbot.waitUntil(lambda: ctl.ready, timeout=20000)
    expected = float(np.median([(truth == i).sum() for i in range(1, 6)]))
    ctl.class_id = 1
    click(ctl.points, (100, 100))
    wait_preview(qtbot, ctl)
    assert seen[-1] == expected
    ctl.next_object()
    other, seen2 = spied()
    ctl.swap_backend(other)
    qtbot.waitUntil(lambda: ctl.session.backend is other, timeout=20000)
    click(ctl.points, (100, 100))
    wait_preview(qtbot, ctl)
    assert seen2[-1] == expected
    ctl.next_object()
    ctl.class_id = 2  # two objects of class 2: too few
    click(ctl.points, (100, 100))
    wait_preview(qtbot, ctl)
    assert seen2[-1] is None
