"""The docks' layer pickers follow the layer the user selects, skip helpers and ground truth."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_microseg.core.calibration import PixelSize
from napari_microseg.gui.layer_data import helper_metadata, labels_layer

pytestmark = [pytest.mark.gui,
              pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")]


def click_layer(viewer, layer, qtbot):
    """Click ``layer``'s row in napari's layer list, as a user would."""
    from napari._qt.containers._base_item_view import index_of
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    view = viewer.window._qt_viewer.layers
    rect = view.visualRect(index_of(view.model(), layer))
    assert rect.isValid(), f"{layer.name} is not shown in the layer list"
    QTest.mouseClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
    qtbot.wait(50)
    assert viewer.layers.selection.active is layer


def choose(combo, layer):
    """Pick ``layer`` in a magicgui combo box through its Qt widget (a user's choice)."""
    native = combo.native
    i = next(i for i in range(native.count()) if native.itemData(i) is layer)
    native.setCurrentIndex(i)


def add_pair(viewer, name, shape, nm):
    ps = PixelSize.isotropic(nm, "user")
    img = viewer.add_image(np.random.default_rng(len(name)).random(shape), name=name, scale=(nm, nm),
                           units=("nm", "nm"), metadata={"pixel_size": ps.to_dict()})
    lab = np.zeros(shape, np.int32)
    lab[5:15, 5:15] = 1
    data, kw, _ = labels_layer(lab, pixel_size=ps, name=f"{name} labels")
    return img, viewer.add_labels(data, **kw)


@pytest.fixture
def docks(make_napari_viewer, qtbot):
    from napari_microseg.gui.widgets.correct import CorrectWidget
    from napari_microseg.gui.widgets.evaluate import EvaluateWidget
    from napari_microseg.gui.widgets.measure import MeasureWidget
    from napari_microseg.gui.widgets.predict import PredictWidget
    from napari_microseg.gui.widgets.train import TrainWidget

    viewer = make_napari_viewer(show=True)
    img_a, lab_a = add_pair(viewer, "A", (60, 80), 0.5)
    truth = np.zeros((60, 80), np.int32)
    truth[5:15, 5:15] = 1
    data, kw, _ = labels_layer(truth, pixel_size=PixelSize.isotropic(0.5, "user"), name="A ground truth",
                               metadata={"ground_truth": True})
    gt_a = viewer.add_labels(data, **kw)
    helper = viewer.add_labels(np.zeros((60, 80), np.int32), name="preview", scale=(0.5, 0.5),
                               units=("nm", "nm"), metadata=helper_metadata("A", "preview"))
    helper_img = viewer.add_image(np.zeros((60, 80)), name="helper image", scale=(0.5, 0.5), units=("nm", "nm"),
                                  metadata=helper_metadata("A", "preview"))
    img_b, lab_b = add_pair(viewer, "B", (90, 70), 1.0)
    widgets = {"Measure": MeasureWidget(viewer), "Correct": CorrectWidget(viewer),
               "Predict": PredictWidget(viewer), "Evaluate": EvaluateWidget(viewer), "Train": TrainWidget(viewer)}
    for name, w in widgets.items():
        viewer.window.add_dock_widget(w, name=name, area="right", tabify=True)
    qtbot.wait(100)
    layers = dict(img_a=img_a, lab_a=lab_a, gt_a=gt_a, helper=helper, helper_img=helper_img,
                  img_b=img_b, lab_b=lab_b)
    return viewer, widgets, layers


def test_helpers_never_offered_and_defaults_are_set(docks, qtbot):
    viewer, w, L = docks
    for name, dock in w.items():
        for attr in ("image", "labels", "pred", "true"):
            combo = getattr(dock, attr, None)
            if combo is None or not hasattr(combo, "choices"):
                continue
            assert L["helper"] not in combo.choices, f"{name}.{attr} offers a helper layer"
            assert L["helper_img"] not in combo.choices, f"{name}.{attr} offers a helper layer"
    # the Measure image starts on an image (not "-----"), matching its labels
    m = w["Measure"]
    assert m.image.value is not None
    assert m.image.value.data.shape == m.labels.value.data.shape
    # selecting image A: targets follow to A's labels, never to its ground truth
    click_layer(viewer, L["img_a"], qtbot)
    for name in ("Measure", "Correct"):
        assert w[name].labels.value is L["lab_a"], f"{name} does not follow to A's labels"
    assert w["Evaluate"].pred.value is L["lab_a"]
    assert w["Evaluate"].true.value is L["gt_a"], "Evaluate should compare with the ground truth"


def test_docks_follow_the_selected_layer(docks, qtbot):
    viewer, w, L = docks
    click_layer(viewer, L["img_a"], qtbot)
    for name in ("Measure", "Correct", "Predict", "Train"):
        assert w[name].image.value is L["img_a"], f"{name} image does not follow the selection"
    click_layer(viewer, L["lab_b"], qtbot)
    for name in ("Measure", "Correct", "Train"):
        assert w[name].labels.value is L["lab_b"], f"{name} labels do not follow the selection"
        assert w[name].image.value is L["img_b"], f"{name} image does not follow to B"
    assert w["Evaluate"].pred.value is L["lab_b"]
    assert w["Correct"]._target is L["lab_b"]
    click_layer(viewer, L["img_a"], qtbot)
    assert w["Measure"].labels.value is L["lab_a"] and w["Measure"].image.value is L["img_a"]
    # a helper layer made active changes nothing
    click_layer(viewer, L["helper"], qtbot)
    assert w["Measure"].labels.value is L["lab_a"] and w["Correct"].labels.value is L["lab_a"]


def test_a_users_choice_is_pinned_until_its_layer_goes(docks, qtbot):
    viewer, w, L = docks
    m = w["Measure"]
    click_layer(viewer, L["img_a"], qtbot)
    choose(m.labels, L["lab_b"])  # the user picks B's labels in the Measure dock
    choose(m.image, L["img_b"])
    click_layer(viewer, L["lab_a"], qtbot)
    assert m.labels.value is L["lab_b"] and m.image.value is L["img_b"], "a user's choice was overridden"
    assert w["Correct"].labels.value is L["lab_a"]  # the other docks still follow
    viewer.layers.remove(L["lab_b"])  # the pinned layer goes: the picker follows again
    click_layer(viewer, L["lab_a"], qtbot)
    assert m.labels.value is L["lab_a"]


def test_new_image_is_followed(docks, qtbot):
    viewer, w, L = docks
    img_c, lab_c = add_pair(viewer, "C", (40, 40), 0.25)
    qtbot.wait(50)
    for name in ("Measure", "Correct", "Train"):
        assert w[name].labels.value is lab_c, f"{name} keeps the previous labels"
    click_layer(viewer, img_c, qtbot)
    for name in ("Measure", "Predict", "Train", "Correct"):
        assert w[name].image.value is img_c, f"{name} keeps the previous image"
    # an image without labels of its size: no labels of another size are offered as its own
    bare = viewer.add_image(np.zeros((33, 44)), name="D")
    click_layer(viewer, bare, qtbot)
    assert w["Measure"].image.value is bare and w["Measure"].labels.value is None
    assert w["Predict"].image.value is bare


def test_correct_helpers_one_pair_reused_and_removed_with_their_layer(docks, qtbot):
    viewer, w, L = docks
    c = w["Correct"]
    click_layer(viewer, L["lab_a"], qtbot)
    c.start()
    n = len(viewer.layers)
    assert viewer.layers["correction points"].metadata.get("microseg_helper")
    assert viewer.layers["split line"].metadata.get("microseg_helper")
    click_layer(viewer, L["lab_b"], qtbot)
    c.start()
    assert len(viewer.layers) == n, "helper layers pile up"
    assert tuple(viewer.layers["correction points"].scale) == tuple(L["lab_b"].scale[-2:])
    for name in ("Measure", "Correct", "Train"):
        assert viewer.layers["correction points"] not in getattr(w[name].labels, "choices", ())
    viewer.layers.remove(L["lab_b"])
    qtbot.wait(50)
    assert "correction points" not in viewer.layers and "split line" not in viewer.layers


def test_sample_ground_truth_is_not_the_users_labels(make_napari_viewer, qtbot):
    from napari_microseg.gui.widgets.measure import MeasureWidget

    viewer = make_napari_viewer(show=True)
    m = MeasureWidget(viewer)
    viewer.open_sample("napari-microseg", "tem_loops")
    image, truth = viewer.layers
    assert truth.name == "tem_loops ground truth"
    assert truth.metadata.get("ground_truth") is True and not truth.visible
    assert m.image.value is image
    assert truth in m.labels.choices  # the user may still measure the truth on purpose ...
    assert m.labels.value is None, "the Measure dock defaults to the synthetic ground truth"  # ... not by default
    click_layer(viewer, truth, qtbot)
    assert m.labels.value is None
