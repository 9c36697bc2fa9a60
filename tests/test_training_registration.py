"""Registering a run: not when it learnt nothing (unless asked), partial on Stop, from a run folder."""

from __future__ import annotations

import json

import pytest

from napari_microseg.core.models.registry import list_models, load_model
from napari_microseg.core.training import TrainingDataError, train
from napari_microseg.core.training.registration import learned_nothing, register_run
from test_training import synthetic, tiny_config


@pytest.fixture(autouse=True)
def _tmp_registry(tmp_path, monkeypatch, torch_one_thread):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MICROSEG_RUNS_DIR", str(tmp_path / "runs"))


@pytest.fixture
def blind_validation(monkeypatch):
    """Validation that finds no object at all (F1 0), whatever the weights."""
    monkeypatch.setattr(
        "napari_microseg.core.training.engine.score_images",
        lambda *a, **k: {"f1": 0.0, "miou": 0.31},
    )


def test_learned_nothing_reads_the_best_epoch():
    assert learned_nothing([]) is None
    assert learned_nothing([{"epoch": 1, "step": 2, "loss": 0.4}]) is None  # no validation
    assert learned_nothing([{"epoch": 1, "val_f1": 0.0}, {"epoch": 2, "val_f1": 0.2}]) is None
    why = learned_nothing([{"epoch": 1, "val_f1": 0.0, "val_miou": 0.3}])
    assert "none of the validation objects" in why and "epoch (1)" in why


def test_if_learned_does_not_register_a_blind_model_but_register_run_can(
    tmp_path, blind_validation
):
    ims = synthetic(3)
    messages = []
    res = train(
        tiny_config(name="blind", epochs=2, steps_per_epoch=2),
        ims[:2],
        ims[2:],
        run_dir=tmp_path / "run",
        register="if-learned",
        progress=lambda e: messages.append(e.text) if e.kind == "message" else None,
    )
    assert res.model_name is None and res.card is None
    assert "none of the validation objects" in res.not_registered
    assert any(m.startswith("Not registered") for m in messages)
    assert "blind" not in [e.name for e in list_models()]
    # the user insists: registered from the run folder alone, with the run's metrics
    card = register_run(tmp_path / "run")
    assert card.name == "blind" and card.metrics["f1"] == 0.0
    assert "blind" in [e.name for e in list_models()]
    assert json.loads((tmp_path / "run" / "card.json").read_text())["name"] == "blind"


def test_default_registration_warns_for_a_blind_model(tmp_path, blind_validation):
    ims = synthetic(3)
    messages = []
    res = train(
        tiny_config(name="warned", epochs=1, steps_per_epoch=2),
        ims[:2],
        ims[2:],
        run_dir=tmp_path / "run",
        progress=lambda e: messages.append(e.text) if e.kind == "message" else None,
    )
    assert res.model_name == "warned"
    assert any(m.startswith("Warning: at its best epoch") for m in messages)


def test_stop_registers_the_best_so_far_as_a_partial_model(tmp_path):
    ims = synthetic(3)
    steps = []
    res = train(
        tiny_config(name="halfway", epochs=5, steps_per_epoch=1),
        ims[:2],
        ims[2:],
        run_dir=tmp_path / "run",
        progress=lambda e: steps.append(e.step) if e.kind == "step" else None,
        should_stop=lambda: len(steps) >= 2,
        register_on_stop=True,
    )
    assert res.stopped and res.model_name == "halfway-partial"
    _, card = load_model("halfway-partial")
    assert card.description.startswith("PARTIAL") and "step 2 of 5" in card.description
    assert card.provenance["partial"] is True
    assert "halfway" not in [e.name for e in list_models()]
    # resuming finishes the run and registers the full model under its own name
    res2 = train(
        tiny_config(name="halfway", epochs=5, steps_per_epoch=1),
        ims[:2],
        ims[2:],
        run_dir=tmp_path / "run",
        resume=True,
    )
    assert not res2.stopped and res2.model_name == "halfway"


def test_stop_without_register_on_stop_registers_nothing(tmp_path):
    ims = synthetic(2)
    res = train(
        tiny_config(name="quiet", epochs=3, steps_per_epoch=1),
        ims,
        [],
        run_dir=tmp_path / "run",
        should_stop=lambda: True,
    )
    assert res.stopped and res.model_name is None and list_models() == []


def test_register_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(TrainingDataError, match="not a training run folder"):
        register_run(tmp_path / "x")
