"""SAM2 backend plumbing (random weights via ``allow_random_weights=True``), normalisation, device.

Random weights make the masks meaningless, so these tests check the plumbing:
shapes, (row, col) -> (x, y) conversion, multimask selection, refinement
logits, embedding save/restore. They never download anything.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.core.device import autocast, select_device
from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.prompting.base import Prompts
from napari_microseg.core.prompting.normalize import (
    normalization_range,
    normalization_signature,
    normalize_image,
)
from napari_microseg.core.weights import ENV_CHECKPOINT, ENV_WEIGHTS_DIR, WeightsMissingError

# -- normalisation ----------------------------------------------------------------------


def test_normalize_uint8_uint16_float_to_unit_range():
    rng = np.random.default_rng(0)
    for img in (
        rng.integers(0, 256, (64, 80)).astype(np.uint8),
        rng.integers(0, 65536, (64, 80)).astype(np.uint16),
        rng.normal(5, 2, (64, 80)).astype(np.float64),
    ):
        out = normalize_image(img)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert out.min() == 0.0 and out.max() == 1.0
        lo, hi = np.percentile(img, [0.5, 99.5])
        mid = img[(img > lo) & (img < hi)][0]
        assert out[img == mid][0] == pytest.approx((mid - lo) / (hi - lo), abs=1e-5)


def test_normalize_is_robust_to_outliers_and_nan_safe():
    img = np.full((100, 100), 100.0)
    img[:50] = 200.0
    img[0, 0] = 1e9  # one hot pixel must not flatten the contrast
    img[1, 1] = np.nan
    img[2, 2] = np.inf
    out = normalize_image(img)
    assert np.isfinite(out).all()
    assert out[10, 10] == 1.0 and out[80, 80] == 0.0
    assert out[1, 1] == 0.0


def test_contrast_limits_override_percentiles_and_input_not_modified():
    img = np.array([[0, 100], [200, 65535]], np.uint16)
    np.testing.assert_allclose(normalize_image(img, contrast_limits=(0, 200)), [[0, 0.5], [1, 1]])
    f = np.array([[0.0, 0.5], [1.0, 2.0]], np.float32)
    copy = f.copy()
    out = normalize_image(f, contrast_limits=(0, 2))
    np.testing.assert_array_equal(f, copy)
    assert out[1, 1] == 1.0 and out is not f


def test_constant_image_gives_zeros_and_signatures_differ():
    assert not normalize_image(np.full((8, 8), 7, np.uint8)).any()
    img = np.arange(100, dtype=np.uint16).reshape(10, 10)
    a = normalization_signature(img)
    b = normalization_signature(img, contrast_limits=(0, 50))
    c = normalization_signature(img, percentiles=(1, 99))
    assert len({str(a), str(b), str(c)}) == 3
    assert a == normalization_signature(img.copy())
    assert normalization_range(img, contrast_limits=(50, 0)) == (0.0, 50.0)


# -- device -----------------------------------------------------------------------------


def test_select_device_order(monkeypatch):
    import torch

    assert select_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device().type == "cpu"
    with pytest.raises(MicrosegError, match="CUDA"):
        select_device("cuda")
    with pytest.raises(MicrosegError, match="Unknown device"):
        select_device("tpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto").type == "cuda"
    assert select_device("cuda:1") == torch.device("cuda:1")
    with autocast(torch.device("cpu")):
        pass


# -- weights missing --------------------------------------------------------------------


def test_missing_weights_raise_clear_error_without_switch(monkeypatch, tmp_path):
    from napari_microseg.core.prompting.sam2_backend import Sam2Backend

    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)
    with pytest.raises(WeightsMissingError) as e:
        Sam2Backend("sam2.1-tiny")
    msg = str(e.value)
    assert str(tmp_path / "sam2.1_hiera_tiny.pt") in msg
    assert "microseg weights download sam2.1-tiny" in msg and "microseg-promptable" in msg


def test_damaged_checkpoint_is_a_clear_error(monkeypatch, tmp_path):
    pytest.importorskip("sam2")
    from napari_microseg.core.prompting.sam2_backend import Sam2Backend

    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MicrosegError, match="Could not load SAM2 checkpoint"):
        Sam2Backend("sam2.1-tiny", device="cpu", allow_random_weights=True)


# -- random-weight SAM2.1-tiny: one build, one embedding for the module -------------------


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    pytest.importorskip("sam2")
    from napari_microseg.core.prompting.sam2_backend import Sam2Backend

    mp = pytest.MonkeyPatch()
    mp.setenv(ENV_WEIGHTS_DIR, str(tmp_path_factory.mktemp("no-weights")))
    mp.delenv(ENV_CHECKPOINT, raising=False)
    try:
        be = Sam2Backend("sam2.1-tiny", device="cpu", allow_random_weights=True)
    finally:
        mp.undo()
    rng = np.random.default_rng(0)
    be.set_image(rng.random((1024, 1024)).astype(np.float32))
    be.saved = be.get_embedding()
    return be


@pytest.fixture
def spy(backend, monkeypatch):
    """Record what reaches SAM2ImagePredictor._predict (already in SAM2's frame)."""
    seen = {}
    original = backend.predictor._predict

    def recording(
        point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True, **kw
    ):
        seen.update(
            coords=None if point_coords is None else point_coords.numpy().copy(),
            labels=None if point_labels is None else point_labels.numpy().copy(),
            box=None if boxes is None else boxes.numpy().copy(),
            mask_input=None if mask_input is None else mask_input.numpy().copy(),
            multimask=multimask_output,
        )
        return original(point_coords, point_labels, boxes, mask_input, multimask_output, **kw)

    monkeypatch.setattr(backend.predictor, "_predict", recording)
    yield seen
    backend.load_embedding(backend.saved)


def test_signature_flags_random_weights(backend):
    sig = backend.signature()
    assert sig["model"] == "sam2.1-tiny" and sig["weights"] == "random(seed=0)"
    assert backend.needs_embedding and backend.n_encoder_calls == 1


def test_predict_returns_full_bool_mask_score_and_logits(backend):
    pred = backend.predict(Prompts([[100, 700]], [1]))
    assert pred.mask.shape == (1024, 1024) and pred.mask.dtype == bool
    assert 0.0 <= pred.score <= 1.0
    assert pred.logits.shape == (1, 256, 256) and pred.logits.dtype == np.float32


def test_points_and_box_are_converted_to_xy(backend, spy):
    backend.predict(Prompts([[100, 700], [900, 20]], [1, 0]))
    np.testing.assert_allclose(spy["coords"][0], [[700, 100], [20, 900]])  # (x, y), 1024 px input
    np.testing.assert_array_equal(spy["labels"][0], [1, 0])
    backend.predict(Prompts(box=[10, 600, 200, 900]))
    np.testing.assert_allclose(spy["box"].reshape(2, 2), [[600, 10], [900, 200]])
    assert spy["coords"] is None


def test_non_square_image_scales_x_by_width_and_y_by_height(backend, spy):
    emb = dict(backend.saved, orig_hw=np.array([600, 900]))
    backend.load_embedding(emb)
    pred = backend.predict(Prompts([[100, 800]], [1]))
    np.testing.assert_allclose(spy["coords"][0, 0], [800 / 900 * 1024, 100 / 600 * 1024], rtol=1e-6)
    assert pred.mask.shape == (600, 900)


def test_multimask_only_for_a_single_click(backend, spy):
    backend.predict(Prompts([[10, 10]], [1]))
    assert spy["multimask"] is True
    backend.predict(Prompts([[10, 10], [20, 20]], [1, 1]))
    assert spy["multimask"] is False
    backend.predict(Prompts([[10, 10]], [1], box=[0, 0, 50, 50]))
    assert spy["multimask"] is False


def test_best_of_three_masks_by_predicted_iou(backend, monkeypatch):
    import torch

    masks = torch.zeros(1, 3, 1024, 1024, dtype=torch.bool)
    masks[0, 1, 5:9, 3:4] = True
    low = torch.arange(3, dtype=torch.float32).reshape(1, 3, 1, 1).expand(1, 3, 256, 256)
    ious = torch.tensor([[0.1, 0.9, 0.3]])
    monkeypatch.setattr(backend.predictor, "_predict", lambda *a, **k: (masks, ious, low))
    pred = backend.predict(Prompts([[6, 3]], [1]))
    assert pred.mask.sum() == 4 and pred.mask[5:9, 3].all()
    assert pred.score == pytest.approx(0.9)
    assert np.all(pred.logits == 1.0)


def test_refinement_feeds_previous_low_res_logits(backend, spy):
    first = backend.predict(Prompts([[300, 300]], [1]))
    assert spy["mask_input"] is None
    backend.predict(Prompts([[300, 300], [310, 330]], [1, 0], mask_logits=first.logits))
    assert spy["mask_input"].shape == (1, 1, 256, 256)
    np.testing.assert_array_equal(spy["mask_input"][0], first.logits)


def test_embedding_roundtrip_gives_identical_predictions(backend):
    before = backend.n_encoder_calls
    a = backend.predict(Prompts([[512, 256]], [1]))
    emb = backend.get_embedding()
    assert emb["image_embed"].shape == (1, 256, 64, 64)
    assert emb["high_res_feat_0"].shape == (1, 32, 256, 256)
    assert emb["high_res_feat_1"].shape == (1, 64, 128, 128)
    backend.predictor.reset_predictor()
    with pytest.raises(MicrosegError, match="No image"):
        backend.predict(Prompts([[1, 1]], [1]))
    backend.load_embedding({k: v.copy() for k, v in emb.items()})
    b = backend.predict(Prompts([[512, 256]], [1]))
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.score == b.score and backend.n_encoder_calls == before


def test_grey_image_replicated_to_rgb(backend, monkeypatch):
    seen = {}
    monkeypatch.setattr(backend.predictor, "set_image", lambda img: seen.setdefault("img", img))
    backend.set_image(np.full((32, 48), 0.25, np.float32))
    img = seen["img"]
    assert img.shape == (32, 48, 3) and np.all(img == 0.25)
    with pytest.raises(MicrosegError, match="2-D"):
        backend.set_image(np.zeros((4, 4, 2)))
    backend.n_encoder_calls -= 1


@pytest.mark.slow
def test_session_on_two_tile_image_places_sam2_mask(backend):
    from napari_microseg.core.prompting.session import PromptSession

    img = np.random.default_rng(1).integers(0, 255, (1024, 1400)).astype(np.uint8)
    s = PromptSession(backend)
    assert s.set_image(img).startswith("deferred") and len(s.grid) == 2
    pred = s.predict([[500, 1300]], [1])
    t = s.last_tile
    assert (t.c0, t.c1) == (376, 1400) and pred.mask.shape == img.shape
    assert not pred.mask[:, : t.c0].any()


@pytest.mark.slow
def test_checkpoint_from_weights_dir_is_loaded_and_hashed(backend, monkeypatch, tmp_path):
    import torch

    from napari_microseg.core.prompting.sam2_backend import Sam2Backend
    from napari_microseg.core.weights import sha256_file

    ckpt = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": backend.model.state_dict()}, ckpt)
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)
    real = Sam2Backend("sam2.1-tiny", device="cpu")
    assert real.checkpoint == ckpt and real.signature()["weights"] == sha256_file(ckpt)
    real.load_embedding(backend.saved)
    backend.load_embedding(backend.saved)
    a = real.predict(Prompts([[40, 900]], [1]))
    b = backend.predict(Prompts([[40, 900]], [1]))
    np.testing.assert_array_equal(a.mask, b.mask)
