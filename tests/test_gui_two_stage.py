"""Predict dock: a two-stage model (detector boxes, promptable masks) runs like any model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_microseg.core.models import ModelCard, build_model, predict_instances, register_model
from napari_microseg.core.models.registry import load_model
from napari_microseg.core.models.two_stage_make import create_two_stage
from napari_microseg.core.synth import generate

pytestmark = pytest.mark.gui

CLASSES = [{"id": 4, "name": "void", "color": "#f58231"}]


def test_two_stage_model_runs_in_the_predict_dock(make_napari_viewer, qtbot, tmp_path,
                                                  monkeypatch, artifacts_dir, torch_one_thread):
    from napari_microseg.gui.widgets.predict import PredictWidget

    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(name="tiny-mrcnn", architecture="maskrcnn", task="instance", classes=CLASSES,
                     params={"backbone": "resnet18", "min_size": 64, "max_size": 64,
                             "fpn_channels": 16, "representation_size": 32, "mask_channels": 8,
                             "box_detections_per_img": 6}, tile=64, halo=8, thresholds={"4": 0.0})
    torch.manual_seed(0)
    register_model(build_model(card), card)
    create_two_stage("ts", "tiny-mrcnn", "microseg-promptable")
    img = generate("tem-voids", shape=(96, 96), seed=3).image

    viewer = make_napari_viewer()
    layer = viewer.add_image(img, name="voids")
    w = PredictWidget(viewer)
    w.reset_choices()
    assert "ts" in list(w.model.choices)
    w.image.value, w.model.value = layer, "ts"
    w.run()
    qtbot.waitUntil(lambda: w.run_button.enabled and w.card is not None and w.updates > 0
                    and not w._post_busy, timeout=120000)
    assert w.card.architecture == "two-stage"
    inst = viewer.layers["voids ts instances"]
    model, tcard = load_model("ts", device="cpu")
    expected = predict_instances(model, tcard, img)
    assert expected.labels.max() > 0
    np.testing.assert_array_equal(np.asarray(inst.data) > 0, expected.labels > 0)
    shots = artifacts_dir / "two-stage"
    shots.mkdir(exist_ok=True)
    viewer.screenshot(str(shots / "predict_dock_two_stage.png"), canvas_only=False, flash=False)
