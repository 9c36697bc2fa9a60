"""Predict dock layer writing: compact label dtypes, layers added a step per turn."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.gui.widgets.predict import compact_labels


def test_compact_labels_uses_uint16_only_when_ids_fit():
    small = np.array([[0, 3], [32767, 1]], np.int32)
    out = compact_labels(small)
    assert out.dtype == np.uint16 and np.array_equal(out, small)
    big = np.array([[0, 2**15]], np.int64)
    assert compact_labels(big).dtype == np.int64
    negative = np.array([[-1, 2]], np.int32)
    assert compact_labels(negative).dtype == np.int32
    semantic = np.array([[0, 3]], np.uint8)
    assert compact_labels(semantic) is semantic


@pytest.mark.gui
def test_outputs_added_stepwise_with_napari_defaults(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    from napari_microseg.core.models import ModelCard, build_model, register_model
    from napari_microseg.gui.widgets import predict as mod

    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(
        name="tiny",
        architecture="defectsegnet",
        activation="sigmoid",
        params={"growth": 2, "depth": 2, "layers_per_block": 1},
        classes=[{"id": 1, "name": "loop", "color": "#e6194b"}],
        tile=64,
        halo=8,
    )
    register_model(build_model(card), card)
    scene = np.full((80, 90), 220, np.uint8)
    scene[10:30, 10:30] = 20

    def fake_run(name, image, pixel_size, **kw):
        return card, (np.asarray(image) < 128).astype(np.float32)[None] * 0.8 + 0.1

    monkeypatch.setattr(mod, "run_model", fake_run)
    viewer = make_napari_viewer()
    image = viewer.add_image(scene, name="tem")
    w = mod.PredictWidget(viewer)
    w.reset_choices()
    w.image.value, w.model.value = image, "tiny"
    w.run()
    qtbot.waitUntil(lambda: w.updates == 1 and not w._post_busy, timeout=30000)
    inst = viewer.layers["tem tiny instances"]
    assert inst.data.dtype == np.uint16 and inst.data.max() == 1
    # the overlays napari creates lazily are visible again once the layer is written
    assert inst._overlays["polygon"].visible and inst._overlays["brush_stroke"].visible
    assert viewer.layers["tem P(loop)"].data.dtype == np.float32
    # a threshold change replaces the data of the same layer objects
    w.threshold.value = 0.95
    qtbot.waitUntil(lambda: w.updates == 2 and not w._post_busy, timeout=30000)
    assert viewer.layers["tem tiny instances"] is inst and inst.data.max() == 0
