"""Fine-tuning the offline promptable model through the training engine (``--arch promptable``).

A few steps on small synthetic micrographs: the result is registered as a
prompt model, built by ``make_backend`` by name, kept out of the Predict dock's
model list; a stop saves a step-level checkpoint and resume continues the step
count; unusable data is refused before anything starts.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.core.models.registry import list_models, list_prompt_models
from napari_microseg.core.promptable.backend import PromptableBackend
from napari_microseg.core.prompting.base import Prompts
from napari_microseg.core.prompting.registry import available_backends, make_backend
from napari_microseg.core.synth import generate
from napari_microseg.core.training import TrainConfig, TrainImage, TrainingDataError, train


@pytest.fixture
def dirs(tmp_path, monkeypatch, torch_one_thread):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MICROSEG_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def _images(seeds, size=128):
    out = []
    for s in seeds:
        g = generate("tem-loops", (size, size), seed=s, n_objects=5)
        out.append(TrainImage(f"synth-{s}", g.image, g.labels))
    return out


def _config(**kw):
    base = dict(
        name="loops-click",
        architecture="promptable",
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        params={"val_objects": 3},
    )
    return TrainConfig(**{**base, **kw})


def test_finetune_registers_a_prompt_model_the_label_dock_can_build(dirs):
    events = []
    result = train(_config(), _images([0, 1]), _images([2]), progress=events.append)
    assert not result.stopped and result.model_name == "loops-click"
    kinds = [e.kind for e in events]
    assert kinds.count("step") == 2 and kinds[-1] == "done" and "epoch" in kinds
    epoch = next(e for e in events if e.kind == "epoch")
    assert 0.0 <= epoch.metrics["iou_1click"] <= 1.0
    assert 0.0 <= epoch.metrics["iou_3clicks"] <= 1.0
    # registered as a prompt model, never as a segmentation model for the Predict dock
    assert [e.name for e in list_prompt_models()] == ["loops-click"]
    assert "loops-click" not in {e.name for e in list_models(include_broken=True)}
    assert list_models(task="semantic") == [] and list_models(task="instance") == []
    assert "loops-click" in available_backends()
    card = list_prompt_models()[0].card
    assert result.card.metrics == card["metrics"] and result.card.name == "loops-click"
    assert card["task"] == "promptable" and card["backend"] == "microseg-promptable"
    assert card["metrics"]["step"] == 2 and "iou_1click" in card["metrics"]
    assert card["provenance"]["data"]["validation_images"] == ["synth-2"]
    be = make_backend("loops-click")
    assert isinstance(be, PromptableBackend) and be.name == "loops-click"
    # the shipped model's thresholds carry over; the id names these weights
    assert be.first_threshold == PromptableBackend.load_default().first_threshold
    assert be.signature()["model"].startswith("loops-click-")
    img = _images([3])[0]
    be.set_image((img.image / 255.0).astype(np.float32))
    rr, cc = np.argwhere(img.labels == 1)[0]
    pred = be.predict(Prompts([[rr, cc]], [1]))
    assert pred.mask.shape == img.image.shape and pred.mask.any()
    # a second run does not overwrite the first
    again = train(_config(epochs=1, steps_per_epoch=1), _images([0, 1]), [])
    assert again.model_name == "loops-click-2"


def test_stop_mid_epoch_then_resume_continues_the_step_count(dirs):
    cfg = _config(epochs=2, steps_per_epoch=2)
    steps = []

    def progress(e):
        if e.kind == "step":
            steps.append(e.step)

    run_dir = dirs / "run"
    first = train(
        cfg,
        _images([0, 1]),
        _images([2]),
        run_dir=run_dir,
        progress=progress,
        should_stop=lambda: len(steps) >= 3,
    )
    assert first.stopped and first.model_name is None and steps == [1, 2, 3]
    assert (run_dir / "checkpoint.pt").is_file() and list_prompt_models() == []
    steps.clear()
    second = train(
        cfg, _images([0, 1]), _images([2]), run_dir=run_dir, resume=True, progress=progress
    )
    assert steps == [4] and not second.stopped
    assert [h["step"] for h in second.history] == [2, 4]
    assert second.model_name == "loops-click"
    # the registered weights and metrics are those of the best validation epoch
    best = [h for h in second.history if h["best"]]
    assert best and second.card.metrics["step"] == best[-1]["step"]
    assert second.best_weights.name == "best_weights.pt"
    assert make_backend("loops-click").name == "loops-click"


def test_unusable_data_and_names_are_refused_before_anything_starts(dirs):
    empty = [TrainImage("empty", np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.int32))]
    with pytest.raises(TrainingDataError, match="empty"):
        train(_config(), empty, [])
    with pytest.raises(TrainingDataError, match="built-in prompt backend"):
        train(_config(name="otsu-flood"), _images([0]), [])
    with pytest.raises(TrainingDataError, match="Nothing to resume"):
        train(_config(), _images([0]), [], run_dir=dirs / "nothing", resume=True)
    with pytest.raises(TrainingDataError, match="Cannot start from"):
        train(_config(params={"init": str(dirs / "missing.pt")}), _images([0]), [])
    assert not (dirs / "runs").exists() or not any((dirs / "runs").iterdir())
