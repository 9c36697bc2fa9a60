"""One recipe, same numbers: Predict + Measure docks vs. process_image; the Batch dock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batch_helpers import register_tiny_unet, write_corrupt, write_micrographs
from napari_microseg.core.batch import Recipe, RecipeError, output_paths, process_image
from napari_microseg.core.labels_io import read_labels
from napari_microseg.core.measure.export import read_csv

pytestmark = pytest.mark.gui


@pytest.fixture
def tiny(tmp_path, monkeypatch, torch_one_thread):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    return register_tiny_unet()


def test_docks_and_batch_give_identical_results(make_napari_viewer, qtbot, tiny, tmp_path):
    from napari_microseg.gui.reader import read_path
    from napari_microseg.gui.widgets.measure import MeasureWidget
    from napari_microseg.gui.widgets.predict import PredictWidget

    (path,) = write_micrographs(tmp_path / "in", 1, size=200, seed0=7)
    viewer = make_napari_viewer()
    data, kwargs, _ = read_path(str(path))[0]
    image = viewer.add_image(data, **kwargs)
    predict = PredictWidget(viewer)
    predict.reset_choices()
    predict.image.value, predict.model.value = image, tiny.name
    predict.tile.value, predict.halo.value = 96, 12
    with pytest.raises(Exception, match="Run the model first"):
        predict.recipe()
    predict.run()
    qtbot.waitUntil(
        lambda: predict.run_button.enabled and predict.updates > 0 and not predict._post_busy,
        timeout=120000,
    )
    predict.klass.value = 3
    predict.threshold.value = 0.35
    predict.min_size.value = 2.0  # nm²: the image is calibrated
    predict.method.value = "watershed"
    qtbot.waitUntil(lambda: not predict._post_busy and not predict._post_dirty, timeout=60000)
    labels = viewer.layers[f"{image.name} {tiny.name} instances"]
    assert labels.data.max() > 0

    measure = MeasureWidget(viewer)
    measure.reset_choices()
    measure.labels.value, measure.image.value = labels, image
    measure.edges.value = "exclude"
    measure.bins.value = 15
    measure.run()
    qtbot.waitUntil(
        lambda: measure.result is not None and measure.measure_button.enabled, timeout=60000
    )

    # the recipes both docks would save
    from_predict, from_measure = predict.recipe(), measure.recipe()
    assert from_predict.inference.tile == 96 and from_predict.postprocess.instances == "watershed"
    assert from_measure.hashed_content() == {
        **from_predict.hashed_content(),
        "measure": from_measure.measure.to_dict(),
    }
    saved = Recipe.load(from_measure.save(tmp_path / "recipe.json"))

    res = process_image(saved, path, tmp_path / "out")
    assert res.status == "ok", res.error
    paths = output_paths(tmp_path / "out", path.stem)
    rec = read_labels(paths["labels"])
    assert np.array_equal(rec.labels, np.asarray(labels.data))
    table, _ = read_csv(paths["objects"])
    pd.testing.assert_frame_equal(
        table.drop(columns="counted"), measure.result.table, check_dtype=False
    )
    gui_all = measure.result.summary.set_index("class_id").loc[-1]
    assert res.row["n_objects"] == gui_all["count"]
    assert res.row["density_per_um2"] == pytest.approx(gui_all["density_per_um2"])


def test_measure_dock_recipe_needs_predicted_labels(make_napari_viewer, tiny):
    from napari_microseg.gui.widgets.measure import MeasureWidget

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((32, 32), np.uint16), name="hand drawn")
    w = MeasureWidget(viewer)
    w.reset_choices()
    with pytest.raises(RecipeError, match="not predicted by a registered model"):
        w.recipe()


def test_batch_dock_runs_and_reports(make_napari_viewer, qtbot, tiny, tmp_path):
    from napari_microseg.gui.widgets.batch import BatchWidget

    write_micrographs(tmp_path / "in", 3, size=96)
    write_corrupt(tmp_path / "in" / "broken.tif")
    recipe = Recipe.for_model(tiny.name).save(tmp_path / "recipe.yaml")
    w = BatchWidget(make_napari_viewer())
    assert w.run() is None and "recipe" in w.status.text()  # nothing chosen yet
    w.recipe.value, w.inputs.value, w.out.value = recipe, tmp_path / "in", tmp_path / "out"
    w.workers.value = 0  # in the worker thread, no cluster: the cluster is tested elsewhere
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.result is not None and w.run_button.enabled, timeout=120000)
    assert w.bar.value() == w.bar.maximum() == 4
    assert w.result.count("ok") == 3 and len(w.result.failed) == 1
    assert "3 processed" in w.status.text() and "1 failed" in w.status.text()
    assert "report.html" in w.status.text()
    # why it failed is on the dock, not only in the report
    assert not w.errors.isHidden() and w.errors.text().startswith("broken.tif: ")
    # run again: everything finished is skipped
    w.result = None
    w.run()
    qtbot.waitUntil(lambda: w.result is not None and w.run_button.enabled, timeout=120000)
    assert w.result.count("skipped") == 3


def test_batch_dock_small_batch_runs_without_a_cluster_and_shows_the_report_path(
    make_napari_viewer, qtbot, tiny, tmp_path, monkeypatch
):
    import distributed
    from qtpy.QtCore import Qt

    from napari_microseg.gui.widgets.batch import BatchWidget

    def no_cluster(*a, **k):
        raise AssertionError("a LocalCluster was started for 3 images")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    write_micrographs(tmp_path / "in", 3, size=64)
    recipe = Recipe.for_model(tiny.name).save(tmp_path / "recipe.json")
    w = BatchWidget(make_napari_viewer())
    w.recipe.value, w.inputs.value, w.out.value = recipe, tmp_path / "in", tmp_path / "out"
    assert w.workers.value == 2  # the default: still no cluster for 3 images
    assert w.run() is not None
    qtbot.waitUntil(lambda: w.result is not None and w.run_button.enabled, timeout=120000)
    assert w.result.count("ok") == 3 and w.result.info["mode"] == "in process"
    report = (tmp_path / "out" / "report.html").resolve()
    assert str(report) in w.report_path.text()
    assert w.report_path.textInteractionFlags() & Qt.TextSelectableByMouse


def test_batch_dock_pixel_size_policy_and_full_precision_value(
    make_napari_viewer, qtbot, tiny, tmp_path
):
    import tifffile

    from napari_microseg.gui.widgets.batch import BatchWidget

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "plain.tif", np.full((64, 64), 100, np.uint8))
    recipe = Recipe.for_model(tiny.name).save(tmp_path / "recipe.json")
    w = BatchWidget(make_napari_viewer())
    w.recipe.value, w.inputs.value = recipe, tmp_path / "in"
    assert {"metadata", "override", "allow_px"} <= set(w.policy.choices)

    def run(out):
        w.result = None
        w.out.value = tmp_path / out
        assert w.run() is not None
        qtbot.waitUntil(lambda: w.result is not None and w.run_button.enabled, timeout=120000)
        return w.result.results[0]

    # the recipe's default policy: an uncalibrated image is an error, not a px result
    res = run("a")
    assert res.status == "error" and "no pixel size" in res.error
    # a bad value is refused before anything runs
    w.policy.value, w.pixel_size.value = "override", "abc"
    assert w.run() is None and "not a number" in w.status.text()
    w.pixel_size.value = "0.390625"
    res = run("b")
    assert res.status == "ok" and res.row["pixel_size_nm"] == 0.390625
    saved = Recipe.load(tmp_path / "b" / "recipe.json")
    assert saved.pixel_size.policy == "override" and saved.pixel_size.nm == 0.390625
    w.policy.value, w.pixel_size.value = "allow_px", ""
    res = run("c")
    assert res.status == "ok" and res.row["unit"] == "px"
