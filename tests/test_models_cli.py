"""``microseg predict`` end to end with a tiny registered model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_microseg.cli import main
from napari_microseg.core.labels_io import read_labels
from napari_microseg.core.models import ModelCard, build_model, register_model
from napari_microseg.core.synth import generate, write_sample

# Tiny models gain nothing from threads; on a shared CPU, waits for a busy core dominate.
pytestmark = pytest.mark.usefixtures("torch_one_thread")

CLASSES = [{"id": 2, "name": "<100> loop", "color": "#3cb44b"},
           {"id": 4, "name": "void", "color": "#f58231"}]


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    """A model that calls every pixel a '<100> loop' with probability sigmoid(3) = 0.95."""
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(name="tiny-seg", architecture="defectsegnet", activation="sigmoid",
                     params={"growth": 2, "depth": 2, "layers_per_block": 1}, classes=CLASSES,
                     tile=64, halo=8, version="0.3")
    net = build_model(card)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([3.0, -3.0]))
    register_model(net, card)
    return card


@pytest.fixture
def images(tmp_path):
    a = write_sample(generate("tem-loops", shape=(96, 80), seed=0), tmp_path / "in", "a")["image"]
    b = write_sample(generate("tem-voids", shape=(64, 64), seed=1), tmp_path / "in", "b")["image"]
    bad = tmp_path / "in" / "broken.tif"
    bad.write_bytes(b"II*\x00 this is not a tiff")
    return a, b, bad


def test_predict_writes_labels_with_classes_calibration_and_provenance(
    tiny_model, images, tmp_path, capsys
):
    a, b, bad = images
    out = tmp_path / "out"
    rc = main(["predict", "--model", "tiny-seg", str(a), str(bad), str(b), "--out", str(out),
               "--tile", "32", "--halo", "4", "--probabilities", "--instances", "watershed"])
    cap = capsys.readouterr()
    assert rc == 1
    lines = cap.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(a)) and lines[1].startswith(str(b))
    assert "1 objects (1 <100> loop)" in lines[0]
    err = cap.err.strip().splitlines()
    assert err[0].startswith(f"{bad}: error:") and "1 of 3 image(s) failed" in err[-1]

    rec = read_labels(out / "a_labels.tif")
    assert rec.labels.shape == (96, 80) and rec.labels.max() == 1 and rec.labels.min() == 1
    assert rec.instance_classes == {1: 2}
    assert [c.name for c in rec.classes] == ["<100> loop", "void"]
    assert rec.pixel_size.calibrated and rec.pixel_size.x_nm == pytest.approx(0.5, rel=1e-4)
    meta = rec.metadata
    assert meta["model"]["name"] == "tiny-seg" and meta["model"]["version"] == "0.3"
    assert meta["settings"]["tile"] == 32 and meta["settings"]["instances"] == "watershed"
    assert meta["image_file"] == str(a) and len(meta["image_sha256"]) == 64
    prob = tifffile.imread(out / "a_prob.tif")
    assert prob.shape == (2, 96, 80) and prob.dtype == np.float32
    np.testing.assert_allclose(prob[0], 1 / (1 + np.exp(-3.0)), rtol=1e-5)
    assert (out / "b_labels.tif").exists() and not (out / "broken_labels.tif").exists()


def test_predict_threshold_and_min_size(tiny_model, images, tmp_path, capsys):
    a, b, _ = images
    out = tmp_path / "out"
    assert main(["predict", "--model", "tiny-seg", str(a), "--out", str(out),
                 "--threshold", "0.99"]) == 0
    assert "0 objects (none)" in capsys.readouterr().out
    assert read_labels(out / "a_labels.tif").labels.max() == 0
    # the whole 96 x 80 image at 0.5 nm/px is 1920 nm²: a larger minimum removes it
    assert main(["predict", "--model", "tiny-seg", str(a), "--out", str(out),
                 "--min-size-nm2", "2000"]) == 0
    assert "0 objects" in capsys.readouterr().out
    assert main(["predict", "--model", "tiny-seg", str(a), "--out", str(out),
                 "--min-size-nm2", "1900"]) == 0
    assert "1 objects" in capsys.readouterr().out
    side = json.loads((out / "a_labels.labels.json").read_text())
    assert side["metadata"]["settings"]["min_size"] == 1900
    assert side["metadata"]["settings"]["min_size_unit"] == "nm2"


def test_unknown_model_is_one_clear_error(tiny_model, images, tmp_path, capsys):
    a, _, _ = images
    rc = main(["predict", "--model", "nope", str(a), "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "No model named 'nope'; available: tiny-seg" in capsys.readouterr().err


def test_predict_with_an_instance_model_records_scores(images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(name="tiny-mrcnn", architecture="maskrcnn", task="instance", classes=CLASSES,
                     params={"backbone": "resnet18", "min_size": 64, "max_size": 64,
                             "fpn_channels": 16, "representation_size": 32, "mask_channels": 8,
                             "box_detections_per_img": 5}, tile=64, halo=8)
    torch.manual_seed(0)
    register_model(build_model(card), card)
    a, _, _ = images
    out = tmp_path / "out"
    assert main(["predict", "--model", "tiny-mrcnn", str(a), "--out", str(out),
                 "--threshold", "0"]) == 0
    rec = read_labels(out / "a_labels.tif")
    ids = set(np.unique(rec.labels).tolist()) - {0}
    assert ids and ids == set(rec.instance_classes)
    assert set(rec.metadata["scores"]) == {str(i) for i in ids}
    assert set(rec.instance_classes.values()) <= {2, 4}
    assert f"{len(ids)} objects" in capsys.readouterr().out
