"""Model registry: list/load/register, export/import as one file, and broken checkpoints."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.models import (
    ModelCard,
    ModelError,
    build_model,
    export_model,
    import_model,
    list_models,
    load_model,
    models_dir,
    register_model,
    remove_model,
    store,
)

# Tiny models gain nothing from threads; on a shared CPU, waits for a busy core dominate.
pytestmark = pytest.mark.usefixtures("torch_one_thread")

CLASSES = [{"id": 1, "name": "loop", "color": "#ff0000"}, {"id": 2, "name": "dot", "color": "#00ff00"}]
PARAMS = {"growth": 3, "depth": 2, "layers_per_block": 1}


def tiny_card(name="tiny", **kw):
    kw.setdefault("classes", CLASSES)
    kw.setdefault("version", "1.2")
    return ModelCard(name=name, architecture="defectsegnet", params=PARAMS, tile=32, halo=4,
                     provenance={"data": "synthetic"}, metrics={"iou": 0.5}, **kw)


def tiny_model(card, seed=0):
    torch.manual_seed(seed)
    return build_model(card).eval()


def outputs(model):
    x = torch.linspace(0, 1, 32 * 32).reshape(1, 1, 32, 32)
    with torch.no_grad():
        return model(x).numpy()


@pytest.fixture
def mdir(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(store, "bundled_dir", lambda: None)
    return tmp_path / "models"


def edit_card(folder, **changes):
    path = folder / "model_card.json"
    d = json.loads(path.read_text())
    d.update(changes)
    d.pop("weights_sha256", None)  # a hand-made folder: its weights may be replaced by hand
    path.write_text(json.dumps(d))


def test_register_list_load_round_trip(mdir):
    card = tiny_card()
    model = tiny_model(card)
    folder = register_model(model, card)
    assert folder == mdir / "tiny" and models_dir() == mdir
    [entry] = list_models()
    assert entry.name == "tiny" and entry.source == "user" and entry.card == card
    loaded, card2 = load_model("tiny", device="cpu")
    assert card2 == card and not loaded.training
    np.testing.assert_array_equal(outputs(loaded), outputs(model))
    with pytest.raises(ModelError, match="already exists"):
        register_model(model, card)
    register_model(tiny_model(card, seed=1), card, overwrite=True)
    assert not np.allclose(outputs(load_model("tiny", device="cpu")[0]), outputs(model))
    assert list_models(task="instance") == []
    with pytest.raises(ModelError, match="No model named 'nope'; available: tiny"):
        load_model("nope")


def test_register_refuses_weights_that_do_not_fit_the_card(mdir):
    card = tiny_card()
    other = tiny_card(classes=CLASSES[:1])
    with pytest.raises(ModelError, match="wrong number of classes"):
        register_model(tiny_model(other), card)
    assert not (mdir / "tiny").exists()


def test_export_import_as_one_file(mdir, tmp_path):
    card = tiny_card()
    model = tiny_model(card)
    register_model(model, card)
    f = export_model("tiny", tmp_path / "tiny.zip")
    assert sorted(zipfile.ZipFile(f).namelist()) == ["model_card.json", "weights.pt"]
    np.testing.assert_array_equal(outputs(load_model(f, device="cpu")[0]), outputs(model))
    remove_model("tiny")
    assert list_models() == []
    c = import_model(f)
    assert c == card
    np.testing.assert_array_equal(outputs(load_model("tiny", device="cpu")[0]), outputs(model))
    with pytest.raises(ModelError, match="already exists"):
        import_model(f)
    c2 = import_model(f, name="tiny-copy")
    assert c2.name == "tiny-copy" and {e.name for e in list_models()} == {"tiny", "tiny-copy"}
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ModelError, match="bad.zip"):
        import_model(bad)


def test_exported_ensemble_carries_its_members(mdir, tmp_path, monkeypatch):
    from napari_microseg.core.models import ensemble_card

    cards = [tiny_card("a"), tiny_card("b")]
    for i, c in enumerate(cards):
        register_model(tiny_model(c, seed=i), c)
    register_model(None, ensemble_card("ab", cards))
    f = export_model("ab", tmp_path / "ab.zip")
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert list_models() == []
    import_model(f)
    assert {e.name for e in list_models()} == {"a", "b", "ab"}
    model, card = load_model("ab", device="cpu")
    assert card.architecture == "ensemble" and len(model.members) == 2


def test_wrong_input_channels_fail_with_the_file_name(mdir):
    folder = register_model(tiny_model(tiny_card()), tiny_card())
    edit_card(folder, in_channels=3)
    with pytest.raises(ModelError, match=r"weights\.pt.*1 input channel.*card says 3"):
        load_model("tiny")
    # a bare state dict (no architecture facts) is diagnosed from the tensor shapes
    three = tiny_card(in_channels=3)
    torch.save(tiny_model(three).state_dict(), folder / "weights.pt")
    edit_card(folder, in_channels=1)
    with pytest.raises(ModelError, match=r"weights\.pt.*3 input channel.*card says 1"):
        load_model("tiny")


def test_wrong_class_count_fails_with_the_file_name(mdir):
    folder = register_model(tiny_model(tiny_card()), tiny_card())
    edit_card(folder, classes=CLASSES + [{"id": 5, "name": "void", "color": "#0000ff"}])
    with pytest.raises(ModelError, match=r"weights\.pt.*wrong number of classes"):
        load_model("tiny")
    torch.save(tiny_model(tiny_card()).state_dict(), folder / "weights.pt")
    with pytest.raises(ModelError, match=r"weights\.pt.*3 output channels.*need 4"):
        load_model("tiny")


def test_wrong_architecture_params_fail_clearly(mdir):
    folder = register_model(tiny_model(tiny_card()), tiny_card())
    edit_card(folder, params={"growth": 5, "depth": 2, "layers_per_block": 1})
    with pytest.raises(ModelError, match=r"weights\.pt.*architecture parameters"):
        load_model("tiny")
    torch.save(tiny_model(tiny_card()).state_dict(), folder / "weights.pt")
    with pytest.raises(ModelError, match=r"weights\.pt.*do not match architecture 'defectsegnet'"):
        load_model("tiny")


def test_corrupt_and_truncated_weights_fail_with_the_file_name(mdir):
    folder = register_model(tiny_model(tiny_card()), tiny_card())
    good = (folder / "weights.pt").read_bytes()
    (folder / "weights.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match=r"tiny/weights\.pt: not a readable weights file"):
        load_model("tiny")
    (folder / "weights.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match=r"tiny/weights\.pt: not a readable weights file"):
        load_model("tiny")
    (folder / "weights.pt").unlink()
    with pytest.raises(ModelError, match=r"weights\.pt: the weights file is missing"):
        load_model("tiny")


def test_unknown_architecture_newer_format_and_bad_json(mdir):
    folder = register_model(tiny_model(tiny_card()), tiny_card())
    edit_card(folder, architecture="resnet-magic")
    with pytest.raises(ModelError, match=r"model_card\.json: unknown architecture 'resnet-magic'"):
        load_model("tiny")
    edit_card(folder, architecture="defectsegnet", format_version=7)
    with pytest.raises(ModelError, match=r"model_card\.json: card format 7 is newer"):
        load_model("tiny")
    (folder / "model_card.json").write_text("{not json")
    with pytest.raises(MicrosegError, match=r"model_card\.json: the model card is not readable"):
        load_model("tiny")
    assert list_models() == []
    [broken] = list_models(include_broken=True)
    assert broken.card is None and "not readable" in broken.error


def test_promptable_cards_are_skipped_and_user_models_shadow_bundled(mdir, tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    register_model(tiny_model(tiny_card("shared")), tiny_card("shared", version="bundled"),
                   root=bundled)
    register_model(tiny_model(tiny_card("only-bundled")), tiny_card("only-bundled"), root=bundled)
    prompt = bundled / "microseg-promptable"
    prompt.mkdir()
    (prompt / "model_card.json").write_text(json.dumps({"model_id": "microseg-promptable-x"}))
    other = bundled / "clicker"
    other.mkdir()
    (other / "model_card.json").write_text(json.dumps({"task": "promptable"}))
    monkeypatch.setattr(store, "bundled_dir", lambda: bundled)
    register_model(tiny_model(tiny_card("shared")), tiny_card("shared", version="user"))
    entries = {e.name: e for e in list_models(include_broken=True)}
    assert set(entries) == {"shared", "only-bundled"}
    assert entries["shared"].source == "user" and entries["shared"].card.version == "user"
    assert entries["only-bundled"].source == "bundled"
    assert load_model("only-bundled", device="cpu")[1].name == "only-bundled"
    with pytest.raises(ModelError, match="bundled"):
        remove_model("only-bundled")
