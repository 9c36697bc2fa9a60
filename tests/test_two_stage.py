"""Two-stage models: a registered detector's boxes, masks drawn by a promptable backend."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from torch import nn

from napari_microseg.cli import main
from napari_microseg.core.batch import Recipe
from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.labels_io import read_labels
from napari_microseg.core.models import build_model, predict_instances
from napari_microseg.core.models.card import ModelCard, ModelError
from napari_microseg.core.models.registry import (
    export_model,
    import_model,
    list_models,
    load_model,
    register_model,
)
from napari_microseg.core.models.two_stage import (
    TwoStage,
    make_refiner,
    resolve_refiner,
    two_stage_card,
)
from napari_microseg.core.models.two_stage_make import create_two_stage
from napari_microseg.core.prompting.base import Prediction, PromptBackend
from napari_microseg.core.reading import read_micrograph
from napari_microseg.core.synth import generate, write_sample

CLASSES = [{"id": 4, "name": "void", "color": "#f58231"}]
TINY_MRCNN = {"backbone": "resnet18", "min_size": 64, "max_size": 64, "fpn_channels": 16,
              "representation_size": 32, "mask_channels": 8, "box_detections_per_img": 6}


class BoxDetector(nn.Module):
    """Stand-in detector: the true objects' boxes (from a label image), each mask the whole box."""

    def __init__(self, labels, label_of=lambda i: 1, score_of=lambda i: 0.9):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.labels = labels
        self.label_of = label_of
        self.score_of = score_of

    def forward(self, x):
        out = []
        for im in x:
            h, w = im.shape[1:]
            boxes, masks, labels, scores = [], [], [], []
            for i, sl in enumerate(ndi.find_objects(self.labels[:h, :w]), start=1):
                if sl is None:
                    continue
                labels.append(self.label_of(i))
                scores.append(self.score_of(i))
                boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
                m = np.zeros((1, h, w), np.float32)
                m[0, sl[0], sl[1]] = 1.0
                masks.append(m)
            n = len(boxes)
            out.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
                        "labels": torch.tensor(labels, dtype=torch.int64).reshape(n),
                        "scores": torch.tensor(scores, dtype=torch.float32).reshape(n),
                        "masks": torch.from_numpy(np.array(masks, np.float32).reshape(n, 1, h, w))})
        return out


def _best_iou(pred, truth):
    ids = np.unique(pred[truth])
    best = 0.0
    for j in ids[ids > 0]:
        p = pred == j
        best = max(best, (p & truth).sum() / (p | truth).sum())
    return best


def test_masks_come_from_the_refiner_and_beat_the_box_masks(torch_one_thread):
    s = generate("tem-voids", shape=(192, 192), seed=1)
    card = ModelCard(name="d", architecture="maskrcnn", task="instance", classes=CLASSES,
                     tile=192, halo=0)
    model = TwoStage(BoxDetector(s.labels), make_refiner("microseg-promptable")).eval()
    pred = predict_instances(model, card, s.image)
    n = int(s.labels.max())
    assert n >= 5 and model.stats == {"refined": n, "fallback": 0}
    refined, boxed, full = [], [], 0
    for i, sl in enumerate(ndi.find_objects(s.labels), start=1):
        truth = s.labels == i
        refined.append(_best_iou(pred.labels, truth))
        boxed.append(truth[sl].mean())  # IoU of the detector's own (box) mask
        hit = np.unique(pred.labels[truth])
        j = int(hit[hit > 0][0])
        rows, cols = np.nonzero(pred.labels == j)
        assert sl[0].start <= rows.min() and rows.max() < sl[0].stop  # inside the box
        assert sl[1].start <= cols.min() and cols.max() < sl[1].stop
        full += (pred.labels == j).sum() == (sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start)
    assert full <= n // 3  # not the detector's box masks (only tiny objects fill their box)
    assert np.mean(refined) > 0.75 and np.mean(refined) > np.mean(boxed) + 0.03
    assert set(pred.instance_classes.values()) == {4}


def test_boxes_below_the_score_threshold_are_not_refined(torch_one_thread):
    """Low-score boxes are dropped before the (costly) refiner, not refined and then discarded."""
    s = generate("tem-voids", shape=(192, 192), seed=1)
    card = ModelCard(name="d", architecture="maskrcnn", task="instance", classes=CLASSES,
                     tile=192, halo=0)
    model = TwoStage(BoxDetector(s.labels, score_of=lambda i: 0.9 if i % 2 else 0.2),
                     make_refiner("microseg-promptable")).eval()
    pred = predict_instances(model, card, s.image)  # the card's threshold: 0.5
    n_high = (int(s.labels.max()) + 1) // 2
    assert model.stats["refined"] + model.stats["fallback"] == n_high
    assert pred.labels.max() == n_high
    model.stats = {"refined": 0, "fallback": 0}
    low = predict_instances(model, card, s.image, score_threshold=0.1)
    assert model.stats["refined"] + model.stats["fallback"] == s.labels.max() == low.labels.max()


class EmptyRefiner(PromptBackend):
    """A refiner that never finds anything."""

    name = "empty"

    def set_image(self, image, *, progress=None):
        self.shape = image.shape

    def predict(self, prompts):
        return Prediction(np.zeros(self.shape, bool), 0.0)


def test_empty_refiner_masks_fall_back_to_the_detector_masks():
    s = generate("tem-voids", shape=(96, 96), seed=2, noise=False, nuisances=False)
    card = ModelCard(name="d", architecture="maskrcnn", task="instance", classes=CLASSES,
                     tile=96, halo=0)
    model = TwoStage(BoxDetector(s.labels), EmptyRefiner()).eval()
    pred = predict_instances(model, card, s.image)
    n = int(s.labels.max())
    assert model.stats == {"refined": 0, "fallback": n} and pred.labels.max() == n
    for sl in ndi.find_objects(s.labels):  # the detector's own masks: the whole boxes
        assert (pred.labels[sl] > 0).all()


def test_only_the_chosen_classes_are_refined(torch_one_thread):
    s = generate("tem-voids", shape=(160, 160), seed=1)
    classes = [*CLASSES, {"id": 5, "name": "precipitate", "color": "#911eb4"}]
    card = ModelCard(name="d", architecture="maskrcnn", task="instance", classes=classes,
                     tile=160, halo=0)
    ts = two_stage_card("ts", card, "microseg-promptable", refine_classes=[5])
    assert ts.params["refine_labels"] == [2] and ts.classes == card.classes
    with pytest.raises(ModelError, match=r"refine classes \[9\]"):
        two_stage_card("ts", card, "microseg-promptable", refine_classes=[9])
    model = TwoStage(BoxDetector(s.labels, lambda i: 1 + i % 2), make_refiner("microseg-promptable"),
                     refine_labels=ts.params["refine_labels"]).eval()
    pred = predict_instances(model, card, s.image)
    n = int(s.labels.max())
    assert model.stats["refined"] == (n + 1) // 2 and model.stats["fallback"] == 0  # odd ids
    for i, sl in enumerate(ndi.find_objects(s.labels), start=1):
        hit = np.unique(pred.labels[s.labels == i])
        j = int(hit[hit > 0][0])
        assert pred.instance_classes[j] == (5 if i % 2 else 4)
        if i % 2 == 0:  # class 4 (label 1) is not refined: the detector's box mask
            assert (pred.labels[sl] == j).all()


@pytest.fixture
def registry(tmp_path, monkeypatch, torch_one_thread):
    """A models folder with a tiny random-weight Mask R-CNN ('tiny-mrcnn') and a micrograph."""
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(name="tiny-mrcnn", architecture="maskrcnn", task="instance", classes=CLASSES,
                     params=TINY_MRCNN, tile=64, halo=8, thresholds={"4": 0.3})
    torch.manual_seed(0)
    register_model(build_model(card), card)
    image = write_sample(generate("tem-voids", shape=(96, 96), seed=3), tmp_path / "in", "v")
    return card, image["image"]


@pytest.mark.slow
def test_cli_creates_a_model_loaded_and_run_by_name(registry, tmp_path, capsys):
    dcard, image_path = registry
    assert main(["two-stage", "--detector", "tiny-mrcnn", "--refiner", "microseg-promptable",
                 "--name", "ts", "--box-margin", "1"]) == 0
    assert "tiny-mrcnn boxes refined by microseg-promptable" in capsys.readouterr().out
    card_file = tmp_path / "models" / "ts" / "model_card.json"
    d = json.loads(card_file.read_text())
    assert d["architecture"] == "two-stage" and d["task"] == "instance"
    assert d["params"]["detector"] == "tiny-mrcnn"
    assert d["params"]["refiner"] == "microseg-promptable"
    assert d["provenance"]["detector"]["weights_sha256"] == load_model("tiny-mrcnn")[1].weights_sha256
    assert d["classes"] == dcard.classes and d["thresholds"] == {"4": 0.3}
    assert not (tmp_path / "models" / "ts" / "weights.pt").exists()
    assert {e.name: e.card.task for e in list_models()}["ts"] == "instance"

    model, card = load_model("ts", device="cpu")
    assert isinstance(model, TwoStage) and model.refiner.name == "microseg-promptable"
    detector, _ = load_model("tiny-mrcnn", device="cpu")
    img = np.asarray(read_micrograph(image_path).data)
    alone = predict_instances(detector, dcard, img, score_threshold=0.0)
    both = predict_instances(model, card, img, score_threshold=0.0)
    assert model.stats["refined"] > 0 and both.labels.max() > 0
    assert not np.array_equal(alone.labels > 0, both.labels > 0)

    # the refined masks stay inside the detector's boxes (plus the margin)
    x = torch.from_numpy(np.asarray(img, np.float32)[None, None] / 255.0)[..., :64, :64]
    with torch.inference_mode():
        det = detector(x)[0]
        ref = model(x)[0]
    assert len(ref["boxes"]) > 0
    for box, mask in zip(ref["boxes"].numpy(), ref["masks"][:, 0].numpy() > 0.5, strict=True):
        rows, cols = np.nonzero(mask)
        if rows.size:
            x1, y1, x2, y2 = box
            assert rows.min() >= np.floor(y1) - 1.5 and rows.max() <= np.ceil(y2) + 0.5
            assert cols.min() >= np.floor(x1) - 1.5 and cols.max() <= np.ceil(x2) + 0.5
    kept = det["scores"] >= 0.05
    np.testing.assert_array_equal(ref["boxes"].numpy(), det["boxes"][kept].numpy())
    assert not np.array_equal(ref["masks"].numpy() > 0.5, det["masks"][kept].numpy() > 0.5)

    out = tmp_path / "out"
    assert main(["predict", "--model", "ts", str(image_path), "--out", str(out),
                 "--threshold", "0"]) == 0
    rec = read_labels(out / "v_labels.tif")
    assert rec.metadata["model"]["architecture"] == "two-stage"
    assert rec.metadata["model"]["name"] == "ts"
    np.testing.assert_array_equal(rec.labels > 0, both.labels > 0)


@pytest.mark.slow
def test_export_and_import_carry_the_detector(registry, tmp_path):
    create_two_stage("ts", "tiny-mrcnn", "otsu-flood")
    path = export_model("ts", tmp_path / "ts.zip")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {"model_card.json", "members/tiny-mrcnn/model_card.json",
            "members/tiny-mrcnn/weights.pt"} <= names and "weights.pt" not in names
    other = tmp_path / "other"
    card = import_model(path, name="ts2", root=other)
    assert card.params["detector"] == "tiny-mrcnn" and card.params["refiner"] == "otsu-flood"
    assert (other / "tiny-mrcnn" / "weights.pt").is_file() and (other / "ts2").is_dir()


def test_bad_detectors_and_refiners_are_one_clear_error(registry, capsys):
    dcard, _ = registry
    semantic = ModelCard(name="seg", architecture="unet", classes=CLASSES)
    with pytest.raises(ModelError, match="needs an instance model"):
        two_stage_card("ts", semantic, "microseg-promptable")
    with pytest.raises(ModelError, match="needs the true labels"):
        create_two_stage("ts", "tiny-mrcnn", "oracle")
    for argv, msg in (
        (["--detector", "nope", "--name", "ts"], "No model named 'nope'"),
        (["--detector", "tiny-mrcnn", "--refiner", "cats", "--name", "ts"], "Unknown prompt backend"),
        (["--detector", "tiny-mrcnn", "--name", "tiny-mrcnn"], "must differ"),
        (["--detector", "tiny-mrcnn", "--name", "a/b"], "--name"),
    ):
        assert main(["two-stage", *argv]) == 1
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    create_two_stage("ts", "tiny-mrcnn", "otsu-flood")
    with pytest.raises(ModelError, match="already exists"):
        create_two_stage("ts", "tiny-mrcnn", "otsu-flood")
    with pytest.raises(ModelError, match="two-stage"):
        create_two_stage("ts3", "ts", "otsu-flood")


def test_auto_refiner_prefers_installed_sam2(monkeypatch):
    from napari_microseg.core import weights

    monkeypatch.setattr(weights, "find_weights", lambda model_id, path=None: None)
    assert resolve_refiner("auto") == "microseg-promptable"
    monkeypatch.setattr(weights, "find_weights",
                        lambda model_id, path=None: "/x.pt" if model_id == "sam2.1-small" else None)
    pytest.importorskip("sam2")
    assert resolve_refiner("auto") == "sam2.1-small"
    assert resolve_refiner("otsu-flood") == "otsu-flood"


def test_training_a_two_stage_model_is_refused():
    model = TwoStage(BoxDetector(np.zeros((8, 8), np.int32)), make_refiner("otsu-flood"))
    with pytest.raises(MicrosegError, match="train its detector"):
        model.train()(torch.zeros(1, 1, 8, 8))


@pytest.mark.slow
def test_batch_recipe_runs_it_and_a_changed_detector_is_refused(registry, tmp_path, capsys):
    dcard, image_path = registry
    create_two_stage("ts", "tiny-mrcnn", "microseg-promptable")
    recipe = Recipe.for_model("ts").save(tmp_path / "r.json")
    out = tmp_path / "batch"
    assert main(["batch", str(recipe), str(image_path), "--out", str(out), "--no-report"]) == 0
    rec = read_labels(out / "v_labels.tif")
    assert rec.labels.max() > 0 and set(rec.instance_classes.values()) == {4}
    capsys.readouterr()
    torch.manual_seed(1)  # the detector is retrained under the same name
    register_model(build_model(dcard), dcard, overwrite=True)
    with pytest.raises(ModelError, match="changed since this two-stage model was made"):
        load_model("ts")


def test_microseg_recipe_for_a_two_stage_model(registry, tmp_path, capsys):
    """`microseg recipe` shares predict's flags without --batch-size (it crashed on that)."""
    create_two_stage("ts", "tiny-mrcnn", "otsu-flood")
    out = tmp_path / "ts.recipe.json"
    assert main(["recipe", "ts", "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.is_file() and "recipe hash" in capsys.readouterr().out
