"""Measure and Evaluate docks in a napari viewer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.measure import read_tables
from napari_microseg.gui.layer_data import labels_layer, sample_to_layers
from napari_microseg.gui.widgets.measure import viewer_camera

pytestmark = pytest.mark.gui


@pytest.fixture
def discs():
    lab = np.zeros((200, 300), np.int32)
    lab[disk((50, 50), 10)] = 1  # r = 10 px
    lab[disk((120, 200), 20)] = 2  # r = 20 px
    lab[disk((150, 60), 5)] = 3
    return lab


def add_labels(viewer, lab, nm=0.5, classes=None):
    data, kw, _ = labels_layer(lab, instance_classes=classes or {1: 3, 2: 1, 3: 3},
                               pixel_size=PixelSize.isotropic(nm, "user"), name="labels")
    return viewer.add_labels(data, **kw)


def wait_result(qtbot, widget, worker):
    # Wait on the outcome, not on the signal: a fast worker may finish before
    # a waitSignal could connect.
    assert worker is not None
    qtbot.waitUntil(lambda: widget.result is not None and widget.measure_button.enabled, timeout=60000)


def test_measure_dock_end_to_end(make_napari_viewer, qtbot, discs, tmp_path):
    from napari_microseg.gui.widgets.measure import MeasureWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(np.full(discs.shape, 100.0) - 40 * (discs > 0), scale=(0.5, 0.5),
                             metadata={"pixel_size": PixelSize.isotropic(0.5, "user").to_dict()})
    layer = add_labels(viewer, discs)
    w = MeasureWidget(viewer)
    w.reset_choices()
    w.labels.value = layer
    w.image.value = image
    w.thickness.value = 100.0
    wait_result(qtbot, w, w.run())
    table = w.result.table
    assert list(table["label"]) == [1, 2, 3]
    d = table.set_index("label")["equivalent_diameter_nm"]
    assert d[2] == pytest.approx(2 * 20 * 0.5, rel=0.02)
    assert table.set_index("label")["intensity_mean"][1] == pytest.approx(60.0)
    # features attached, one row per label value
    assert list(layer.features["index"]) == [1, 2, 3]
    # summary: 3 objects over 200 x 300 px at 0.25 nm² each
    all_row = w.result.summary.set_index("class_name").loc["all"]
    assert all_row["count"] == 3
    assert all_row["density_per_nm2"] == pytest.approx(3 / (200 * 300 * 0.25))
    assert "Barrier hardening" in w.summary.text()
    assert w.table.model().rowCount() == 3
    # colour by diameter: biggest object gets the top of viridis (yellow)
    w.color_by.value = "equivalent_diameter_nm"
    col2 = np.asarray(layer.colormap.map(np.array([2])))[0]
    col3 = np.asarray(layer.colormap.map(np.array([3])))[0]
    assert col2[0] > 0.9 and col2[1] > 0.85  # viridis max is yellow
    assert col3[2] > col3[1] - 0.2 and col3[0] < 0.35  # viridis min is purple
    w.show_text.value = True
    assert "labels values" in viewer.layers
    texts = list(viewer.layers["labels values"].features["value"])
    assert texts == [f"{v:.1f}" for v in table["equivalent_diameter_nm"]]
    assert texts[1] in ("19.9", "20.0", "20.1")
    # clicking a row centres on the object and highlights it
    row = table.set_index("label").loc[2].copy()
    row["label"] = 2
    w._on_row(row)
    assert viewer_camera(viewer).center[-2:] == pytest.approx((120 * 0.5, 200 * 0.5))
    assert "selected object" in viewer.layers and layer.selected_label == 2
    # export with provenance, lossless re-read
    written = w.export(tmp_path / "m.xlsx")
    tables, prov = read_tables(written[0])
    pd.testing.assert_frame_equal(tables["objects"].reset_index(drop=True), table.reset_index(drop=True),
                                  check_dtype=False)
    assert prov["pixel_size"]["x_nm"] == pytest.approx(0.5) and prov["settings"]["thickness_nm"] == 100.0


def test_measure_uncalibrated_says_px(make_napari_viewer, qtbot, discs):
    from napari_microseg.gui.widgets.measure import MeasureWidget

    viewer = make_napari_viewer()
    layer = viewer.add_labels(discs, name="raw")
    w = MeasureWidget(viewer)
    w.reset_choices()
    w.labels.value = layer
    wait_result(qtbot, w, w.run())
    assert "equivalent_diameter_px" in w.result.table.columns
    assert "UNCALIBRATED" in w.summary.text()


def test_evaluate_dock_three_colours(make_napari_viewer, qtbot, discs):
    from napari_microseg.gui.widgets.evaluate import EvaluateWidget

    viewer = make_napari_viewer()
    true = add_labels(viewer, discs)
    true.name = "truth"
    pred = discs.copy()
    pred[pred == 3] = 0  # missed
    pred[disk((20, 250), 6)] = 9  # false positive
    pl = add_labels(viewer, pred, classes={1: 3, 2: 1, 9: 3})
    pl.name = "pred"
    w = EvaluateWidget(viewer)
    w.reset_choices()
    w.pred.value, w.true.value = pl, true
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.report is not None, timeout=60000)
    d = w.report["detection"]
    assert (d["tp"], d["fp"], d["fn"]) == (2, 1, 1)
    assert d["precision"] == pytest.approx(2 / 3) and d["recall"] == pytest.approx(2 / 3)
    ev = viewer.layers["evaluation"].data
    assert set(np.unique(ev[discs == 3])) == {3}
    assert set(np.unique(ev[pred == 9])) == {2}
    assert set(np.unique(ev[discs == 1])) == {1}
    assert "F1 0.667" in w.text.text()


def test_measure_sample_ground_truth(make_napari_viewer, qtbot):
    """The synthetic sample measured in the dock matches its truth count."""
    from napari_microseg.core.synth import generate
    from napari_microseg.gui.widgets.measure import MeasureWidget

    viewer = make_napari_viewer()
    s = generate("tem-loops", shape=(256, 256), seed=4)
    (img, ikw, _), (lab, lkw, _) = sample_to_layers(s, "s")
    image, labels = viewer.add_image(img, **ikw), viewer.add_labels(lab, **lkw)
    w = MeasureWidget(viewer)
    w.reset_choices()
    w.labels.value, w.image.value = labels, image
    wait_result(qtbot, w, w.run())
    assert len(w.result.table) == len(s.truth)
    by_class = w.result.table.groupby("class_name").size().to_dict()
    truth = pd.Series([t["class_name"] for t in s.truth]).value_counts().to_dict()
    assert by_class == truth
