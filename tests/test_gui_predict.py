"""Predict dock: a registered model on an image, live thresholds, cancel keeps layers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.models import ModelCard, build_model, register_model

pytestmark = pytest.mark.gui

CLASSES = [{"id": 1, "name": "<111> loop", "color": "#e6194b"}]


@pytest.fixture
def dark_model(tmp_path, monkeypatch):
    """A 1x1-conv model: P(loop) = sigmoid(-20 (x - 0.5)), i.e. dark pixels are loops."""
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(name="dark-is-loop", architecture="defectsegnet", activation="sigmoid",
                     params={"growth": 2, "depth": 2, "layers_per_block": 1}, classes=CLASSES,
                     tile=64, halo=8, normalization={"method": "fixed", "range": [0, 255]})
    net = build_model(card)
    register_model(net, card)
    return card


@pytest.fixture
def scene():
    img = np.full((150, 170), 220, np.uint8)
    img[20:40, 20:40] = 20
    img[90:130, 100:120] = 20
    img[60:63, 140:143] = 20  # a 9 px speck
    return img


def wait(qtbot, w):
    qtbot.waitUntil(lambda: w.run_button.enabled and w.card is not None and w.updates > 0
                    and not w._post_busy, timeout=60000)


def settle(qtbot, w):
    """Wait for live post-processing (a worker) to finish and be written."""
    qtbot.waitUntil(lambda: not w._post_busy and not w._post_dirty, timeout=20000)


def test_predict_dock_layers_live_postprocess_and_cancel(make_napari_viewer, qtbot, dark_model, scene,
                                                         monkeypatch):
    from napari_microseg.gui.widgets import predict as mod

    # Replace the untrained network's output with a known probability map (the dock's
    # own tiling, thresholds and layers are what is tested here).
    def fake_run(name, image, pixel_size, **kw):
        from napari_microseg.core.models.registry import load_model

        _, card = load_model(name)
        prob = (np.asarray(image) < 128).astype(np.float32)[None] * 0.8 + 0.1
        return card, prob

    monkeypatch.setattr(mod, "run_model", fake_run)
    viewer = make_napari_viewer()
    ps = PixelSize.isotropic(0.5, "user")
    image = viewer.add_image(scene, name="tem", scale=ps.scale, metadata={"pixel_size": ps.to_dict()})
    w = mod.PredictWidget(viewer)
    w.reset_choices()
    assert "dark-is-loop" in w.model.choices
    w.image.value = image
    w.model.value = "dark-is-loop"
    w.run()
    wait(qtbot, w)
    inst = viewer.layers["tem dark-is-loop instances"]
    assert inst.data.max() == 3 and set(inst.features["class_name"]) == {"background", "<111> loop"}
    assert tuple(inst.scale) == pytest.approx((0.5, 0.5))
    assert inst.metadata["provenance"]["model"]["name"] == "dark-is-loop"
    assert "tem P(<111> loop)" in viewer.layers
    # live: min size 5 nm² = 20 px removes the 9 px speck, no network run
    w.min_size.value = 5.0
    settle(qtbot, w)
    assert viewer.layers["tem dark-is-loop instances"].data.max() == 2
    # threshold above every probability: nothing left
    w.threshold.value = 0.95
    settle(qtbot, w)
    assert viewer.layers["tem dark-is-loop instances"].data.max() == 0
    w.threshold.value = 0.5
    settle(qtbot, w)
    before = np.array(viewer.layers["tem dark-is-loop instances"].data)

    # a cancelled run changes no layer
    def cancelled_run(name, image, pixel_size, *, cancel=None, **kw):
        from napari_microseg.core.models.inference import InferenceCancelled

        raise InferenceCancelled("cancelled")

    monkeypatch.setattr(mod, "run_model", cancelled_run)
    n_layers = len(viewer.layers)
    w.run()
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=20000)
    assert len(viewer.layers) == n_layers
    assert np.array_equal(viewer.layers["tem dark-is-loop instances"].data, before)
    assert "cancelled" in w.status.text()


def test_real_model_runs_through_the_dock(make_napari_viewer, qtbot, dark_model, scene):
    """The registered (untrained) network really runs tiled in the worker."""
    from napari_microseg.gui.widgets.predict import PredictWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(scene, name="tem")
    w = PredictWidget(viewer)
    w.reset_choices()
    w.image.value, w.model.value = image, "dark-is-loop"
    w.tile.value, w.halo.value = 64, 8
    w.run()
    wait(qtbot, w)
    assert w.prob.shape == (1, *scene.shape) and np.isfinite(w.prob).all()
    assert "tem dark-is-loop instances" in viewer.layers
