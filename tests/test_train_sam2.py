"""SAM2 fine-tuning (``--arch sam2``) on CPU with a random-weight SAM2.1-tiny.

Random weights come only through the explicit test flag
(``params["allow_random_weights"]``); a small encoder input (``image_size``
256) keeps a step to a few seconds. The masks are meaningless: these tests
check the plumbing (what trains, what stays frozen, stop/resume, the delta
file, registration, loading base + delta, refusals, the cache signature).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")
pytest.importorskip("peft")

from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.models.registry import list_models, list_prompt_models
from napari_microseg.core.prompting.base import Prompts
from napari_microseg.core.prompting.registry import make_backend
from napari_microseg.core.prompting.sam2_backend import Sam2Backend
from napari_microseg.core.prompting.sam2_lora import read_delta
from napari_microseg.core.synth import generate
from napari_microseg.core.training import (
    TrainConfig,
    TrainImage,
    TrainingDataError,
    train,
)
from napari_microseg.core.training.sam2_finetune import DEFAULT_PARAMS, _Sam2Run

pytestmark = pytest.mark.slow

PARAMS = {"image_size": 256, "objects_per_image": 2, "val_objects": 2, "allow_random_weights": True}


@pytest.fixture
def dirs(tmp_path, monkeypatch, torch_one_thread):
    for env, sub in (
        ("MICROSEG_MODELS_DIR", "models"),
        ("MICROSEG_RUNS_DIR", "runs"),
        ("MICROSEG_WEIGHTS_DIR", "weights"),
        ("MICROSEG_CACHE_DIR", "cache"),
    ):
        monkeypatch.setenv(env, str(tmp_path / sub))
    monkeypatch.delenv("MICROSEG_SAM2_CHECKPOINT", raising=False)
    return tmp_path


def _images(seeds, size=96):
    out = []
    for s in seeds:
        g = generate("tem-loops", (size, size), seed=s, n_objects=3)
        out.append(TrainImage(f"synth-{s}", g.image, g.labels))
    return out


def _config(**kw):
    base = dict(
        name="sam-loops",
        architecture="sam2",
        epochs=1,
        steps_per_epoch=2,
        batch_size=1,
        patch_size=64,
        device="cpu",
        lr=1e-3,
        params=dict(PARAMS),
    )
    return TrainConfig(**{**base, **kw})


def test_a_step_trains_lora_decoder_and_prompt_encoder_only(dirs):
    cfg = _config()
    run = _Sam2Run(cfg, {**DEFAULT_PARAMS, **PARAMS}, _images([0]), [], dirs / "run", print)
    run.setup()
    before = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    assert any(".lora_B." in k for k in before)
    run.train_step()
    after = run.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(".lora_B." in k for k in changed)  # LoRA B starts at zero and moved
    assert any(k.startswith("sam_mask_decoder.") for k in changed)
    frozen = [k for k in before if k.startswith("image_encoder.") and "lora_" not in k]
    assert frozen and not changed.intersection(frozen)
    assert not any(k.startswith(("memory_", "obj_ptr", "mask_downsample")) for k in changed)


def test_stop_resume_register_and_label_with_base_plus_delta(dirs):
    steps = []

    def progress(e):
        if e.kind == "step":
            steps.append(e.step)

    run_dir = dirs / "run"
    first = train(
        _config(),
        _images([0]),
        _images([1]),
        run_dir=run_dir,
        progress=progress,
        should_stop=lambda: len(steps) >= 1,
    )
    assert first.stopped and steps == [1] and list_prompt_models() == []
    result = train(
        _config(), _images([0]), _images([1]), run_dir=run_dir, resume=True, progress=progress
    )
    assert steps == [1, 2] and not result.stopped and result.model_name == "sam-loops"
    assert {"val_iou_1click", "val_iou_3clicks"} <= set(result.history[-1])
    # registered as a prompt model with a small delta and a card naming the base
    (entry,) = list_prompt_models()
    assert list_models(include_broken=True) == []
    card = entry.card
    assert card["backend"] == "sam2" and card["base"]["model"] == "sam2.1-tiny"
    assert card["base"]["weights_sha256"] == "random(seed=0)"
    delta = read_delta(entry.folder)
    assert delta["sha256"] == card["delta_sha256"] and delta["image_size"] == 256
    keys = delta["state_dict"].keys()
    assert any("lora_A" in k for k in keys) and any(k.startswith("sam_mask_decoder.") for k in keys)
    assert not any(k.startswith("image_encoder.") and "lora_" not in k for k in keys)
    # the GUI / registry path refuses a random base without the test flag
    with pytest.raises(MicrosegError, match="RANDOM"):
        make_backend("sam-loops")
    with pytest.raises(MicrosegError, match="RANDOM"):
        Sam2Backend("sam2.1-tiny", finetuned=entry.folder)
    be = make_backend("sam-loops", allow_random_weights=True, device="cpu")
    assert be.name == "sam-loops"
    # LoRA merged: the trunk's qkv weights now differ from the random base's
    base = Sam2Backend("sam2.1-tiny", device="cpu", allow_random_weights=True, image_size=256)
    sig, base_sig = be.signature(), base.signature()
    assert sig["finetuned"] == delta["sha256"] and "finetuned" not in base_sig
    from napari_microseg.core.prompting.embedding_cache import signature_key

    assert signature_key(sig) != signature_key(base_sig)
    qkv = "image_encoder.trunk.blocks.0.attn.qkv"
    w_ft = dict(be.model.named_parameters())[qkv + ".base_layer.weight"]
    w_base = dict(base.model.named_parameters())[qkv + ".weight"]
    assert not torch.equal(w_ft, w_base)
    img = _images([2])[0]
    be.set_image((img.image / 255.0).astype(np.float32))
    rr, cc = np.argwhere(img.labels == 1)[0]
    pred = be.predict(Prompts([[rr, cc]], [1]))
    assert pred.mask.shape == img.image.shape and pred.mask.dtype == bool
    assert 0.0 <= pred.score <= 1.0


def test_sam2_finetune_refuses_random_weights_without_the_test_flag(dirs):
    params = {k: v for k, v in PARAMS.items() if k != "allow_random_weights"}
    with pytest.raises(TrainingDataError, match="not installed"):
        train(_config(params=params), _images([0]), [])
