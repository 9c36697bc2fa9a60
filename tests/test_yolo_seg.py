"""YOLOv9-style instance models ``yolo-seg`` and ``yolo-seg-tr`` (issue 18)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.draw import disk

from napari_microseg.cli import main
from napari_microseg.core.evaluate.matching import match_instances
from napari_microseg.core.labels_io import read_labels
from napari_microseg.core.models import ModelCard, build_model, predict_instances
from napari_microseg.core.models.registry import load_model, register_model
from napari_microseg.core.models.yolo_blocks import TextureRefinement
from napari_microseg.core.models.yolo_seg import NMS_DEFAULTS, YoloSeg
from napari_microseg.core.training.losses import instance_targets

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PIT = [{"id": 1, "name": "pit", "color": "#ff0000"}]
TWO = [{"id": 1, "name": "pit", "color": "#ff0000"},
       {"id": 3, "name": "corroded area", "color": "#00ff00"}]
TINY = {"width": 4, "n_masks": 8}


def discs(seed: int, n: int = 5, size: int = 96):
    """Bright discs (radius 5-10 px) on a noisy dark background, and their instance labels."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.2, 0.05, (size, size)).astype(np.float32)
    lab = np.zeros((size, size), np.int32)
    k = 0
    while k < n:
        r = rng.uniform(5, 10)
        rr, cc = disk(rng.uniform(r + 2, size - r - 2, 2), r, shape=lab.shape)
        if lab[rr, cc].any():
            continue
        k += 1
        lab[rr, cc] = k
        img[rr, cc] += 0.6
    return np.clip(img, 0, 1), lab


def fixed_batch(n=2, size=64):
    imgs, labs = zip(*[discs(s, 3, size) for s in range(n)], strict=True)
    x = torch.from_numpy(np.stack(imgs)[:, None])
    return x, instance_targets(np.stack(labs), [{}] * n, {1: 1}, "cpu")


def card_for(arch="yolo-seg", classes=PIT, **kw):
    base = dict(name="y", architecture=arch, task="instance", activation="none", classes=classes,
                params={**TINY, "conf": 0.05}, tile=96, halo=16,
                normalization={"method": "fixed", "range": [0.0, 1.0]})
    base.update(kw)
    return ModelCard(**base)


@pytest.fixture(scope="module")
def trained():
    """A tiny yolo-seg trained for 120 steps on disc scenes (detects the discs of new scenes)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    card = card_for()
    model = build_model(card)
    imgs, labs = zip(*[discs(s) for s in range(4)], strict=True)
    x = torch.from_numpy(np.stack(imgs)[:, None])
    targets = instance_targets(np.stack(labs), [{}] * 4, {1: 1}, "cpu")
    opt = torch.optim.AdamW(model.parameters(), 5e-3)
    model.train()
    for _ in range(120):
        loss = sum(model(x, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), card


# -- training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["yolo-seg", "yolo-seg-tr"])
def test_each_architecture_trains_on_a_fixed_batch(arch):
    torch.manual_seed(0)
    model = build_model(card_for(arch)).train()
    assert isinstance(model, YoloSeg) and (model.tr is not None) == (arch == "yolo-seg-tr")
    x, targets = fixed_batch()
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    totals = []
    for _ in range(10):
        losses = model(x, targets)
        assert set(losses) == {"loss_cls", "loss_box", "loss_mask", "loss_aux"}
        loss = sum(losses.values())
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(float(loss.detach()))
    assert totals[-1] < 0.85 * totals[0], totals
    with pytest.raises(ValueError, match="targets"):
        model(x)


def test_images_without_objects_train_and_bad_inputs_are_refused():
    model = build_model(card_for()).train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 64, 64, dtype=torch.uint8)}
    losses = model(torch.rand(1, 1, 64, 64), [empty])
    assert losses["loss_box"].item() == 0 and losses["loss_cls"].item() > 0
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 1, 60, 64), [empty])


# -- texture refinement --------------------------------------------------------------------------


def test_texture_refinement_is_gamma_times_f_plus_beta():
    torch.manual_seed(0)
    tr = TextureRefinement(6)
    f = torch.randn(2, 6, 16, 12, requires_grad=True)
    out = tr(f)
    assert out.shape == f.shape
    gamma, beta = tr.modulation(f)
    assert gamma.shape == beta.shape == f.shape
    torch.testing.assert_close(out, gamma * f + beta)
    assert not torch.allclose(out, f)  # it changes the features from the start
    out.square().mean().backward()
    for name, p in tr.named_parameters():
        assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.no_grad():  # γ = 1, β = 0: the identity
        for branch, bias in ((tr.gamma, 1.0), (tr.beta, 0.0)):
            branch[-1][1].weight.zero_()
            branch[-1][1].bias.fill_(bias)
    torch.testing.assert_close(tr(f), f)
    tr.eval()
    torch.testing.assert_close(tr(f), f)


def test_only_yolo_seg_tr_has_the_block_before_the_heads():
    plain, refined = build_model(card_for()), build_model(card_for("yolo-seg-tr"))
    extra = set(refined.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("tr.") for k in extra)
    assert len(refined.tr) == 3  # one per fused level
    with pytest.raises(Exception, match="texture_refinement"):
        build_model(card_for(params={**TINY, "texture_refinement": True}))


# -- inference ----------------------------------------------------------------------------------


def detect(model, img):
    """The network's detections of one grey image."""
    with torch.no_grad():
        return model(torch.from_numpy(img)[None, None])[0]


def _paint(det, shape, threshold=0.5):
    """Reference: the detections pasted by decreasing score, without overwriting."""
    lab = np.zeros(shape, np.int32)
    k = 0
    for i in np.argsort(-det["scores"].numpy(), kind="stable"):
        if det["scores"][i] < threshold:
            continue
        free = (det["masks"][i, 0].numpy() >= 0.5) & (lab == 0)
        if free.any():
            k += 1
            lab[free] = k
    return lab


@pytest.mark.slow  # the module's trained model takes ~10 s
def test_detections_have_boxes_scores_classes_and_masks(trained):
    model, card = trained
    img, lab = discs(99)
    det = detect(model, img)
    n = len(det["scores"])
    assert 1 <= n <= NMS_DEFAULTS["max_det"]
    assert det["boxes"].shape == (n, 4) and det["masks"].shape == (n, 1, 96, 96)
    assert set(det["labels"].tolist()) == {1} and bool((det["scores"] >= 0.05).all())
    assert bool((det["masks"] >= 0).all() and (det["masks"] <= 1).all())
    x1, y1, x2, y2 = det["boxes"][0].round().int().tolist()
    outside = det["masks"][0, 0].clone()
    outside[y1:y2, x1:x2] = 0
    assert float(outside.max()) == 0  # masks are cropped to their box


@pytest.mark.slow  # the module's trained model takes ~10 s
def test_one_tile_prediction_is_the_network_output(trained):
    model, card = trained
    img, _ = discs(98)
    det = detect(model, img)
    pred = predict_instances(model, card, img)  # 96 px: one tile
    ref = _paint(det, img.shape)
    np.testing.assert_array_equal(pred.labels, ref)
    assert pred.labels.max() >= 3


@pytest.mark.slow
def test_tiled_and_untiled_inference_find_the_same_instances(trained):
    model, card = trained
    img, truth = discs(97)
    whole = predict_instances(model, card, img, score_threshold=0.3)
    tiled = predict_instances(model, card, img, tile=64, halo=16, score_threshold=0.3)
    m_truth = match_instances(whole.labels, truth, 0.5)
    assert m_truth.tp >= 4  # the untiled model finds the discs ...
    m = match_instances(tiled.labels, whole.labels, 0.5)
    n_whole, n_tiled = whole.labels.max(), tiled.labels.max()
    assert n_whole == n_tiled == m.tp  # ... and the tiled run the same ones


@pytest.mark.slow  # the module's trained model takes ~10 s
def test_per_class_score_thresholds_of_the_card_apply(trained):
    model, card = trained
    img, _ = discs(96)
    every = predict_instances(model, card, img, score_threshold=0.0)
    everything = every.labels.max()
    some = predict_instances(model, card, img).labels.max()  # no thresholds: 0.5
    mid = ModelCard.from_dict({**card.to_dict(), "thresholds": {"1": 0.85}})
    expected = sum(v >= 0.85 for v in every.scores.values())
    assert 0 < expected < everything
    assert predict_instances(model, mid, img).labels.max() == expected
    strict = ModelCard.from_dict({**card.to_dict(), "thresholds": {"1": 1.0}})
    assert predict_instances(model, strict, img).labels.max() == 0
    lax = ModelCard.from_dict({**card.to_dict(), "thresholds": {"1": 0.0}})
    assert predict_instances(model, lax, img).labels.max() == everything >= some >= 1


# -- cards and the registry ------------------------------------------------------------------------


def test_card_round_trip_keeps_thresholds_and_nms_settings():
    nms = {"conf": 0.1, "nms_iou": 0.45, "max_det": 50, "agnostic_nms": True}
    card = card_for("yolo-seg-tr", TWO, params={**TINY, **nms}, thresholds={"1": 0.4, "3": 0.7})
    back = ModelCard.from_dict(json.loads(card.to_json()))
    assert back == card and back.threshold_list() == [0.4, 0.7]
    model = build_model(back)
    assert (model.conf, model.nms_iou, model.max_det, model.agnostic_nms) == (0.1, 0.45, 50, True)
    assert model.num_classes == 3 and model.n_cls == 2
    with pytest.raises(Exception, match="nms_iou"):
        build_model(card_for(params={**TINY, "nms_iou": 0.0}))


def test_save_register_load_through_the_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    torch.manual_seed(1)
    card = card_for("yolo-seg-tr", TWO, name="corrosion-tr", thresholds={"3": 0.6})
    model = build_model(card).eval()
    register_model(model, card)
    loaded, back = load_model("corrosion-tr", device="cpu")
    assert back.weights_sha256 and back.thresholds == {"3": 0.6}
    assert back.params == card.params and back.architecture == "yolo-seg-tr"
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = model.raw_outputs(x), loaded.raw_outputs(x)
    torch.testing.assert_close(a["cls"], b["cls"])
    torch.testing.assert_close(a["protos"], b["protos"])


# -- command line ------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_trains_yolo_seg_and_predicts_with_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MICROSEG_RUNS_DIR", str(tmp_path / "runs"))
    data = tmp_path / "ds"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for s in range(3):
        img, lab = discs(s)
        Image.fromarray((img * 255).astype(np.uint8)).save(data / "images" / f"{s}.png")
        Image.fromarray(lab.astype(np.uint8)).save(data / "masks" / f"{s}.png")
    rc = main(["train", "--data", str(data), "--arch", "yolo-seg", "--params", json.dumps(TINY),
               "--patch", "64", "--batch", "2", "--epochs", "1", "--steps", "3", "--threads", "1",
               "--name", "cli-yolo", "--val-fraction", "0.34", "--quiet"])
    assert rc == 0
    _, card = load_model("cli-yolo", device="cpu")
    assert card.architecture == "yolo-seg" and card.task == "instance"
    assert {k: card.params[k] for k in NMS_DEFAULTS} == NMS_DEFAULTS  # NMS settings on the card
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["predict", "--model", "cli-yolo", str(data / "images" / "0.png"),
                 "--out", str(out), "--threshold", "0"]) == 0
    rec = read_labels(out / "0_labels.tif")
    assert rec.labels.shape == (96, 96)
    ids = set(np.unique(rec.labels).tolist()) - {0}
    assert set(rec.instance_classes) == ids and set(rec.metadata.get("scores", {})) == {
        str(i) for i in ids}
    assert "objects" in capsys.readouterr().out
