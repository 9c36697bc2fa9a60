"""Training engine: data checks, augmentation, stop/resume, kill/resume, OOM, registration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_microseg.core.models.registry import list_models, load_model
from napari_microseg.core.synth import generate
from napari_microseg.core.training import (
    AugmentConfig,
    TrainConfig,
    TrainImage,
    TrainingDataError,
    check_training_data,
    load_folder,
    split_validation,
    train,
)
from napari_microseg.core.training.augment import augment_patch
from napari_microseg.core.training.data import PatchSampler, boxes_to_labels
from napari_microseg.core.training.engine import _Run

TINY_UNET = {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 4]}
LOOP = [{"id": 1, "name": "loop", "color": "#ff0000"}]
RUN_CLI = "import sys; from napari_microseg.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(autouse=True)
def _tmp_registry(tmp_path, monkeypatch, torch_one_thread):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MICROSEG_RUNS_DIR", str(tmp_path / "runs"))


def synthetic(n=3, size=128, seed=0):
    out = []
    for s in range(n):
        sm = generate("tem-loops", (size, size), seed=seed + s)
        out.append(TrainImage(f"s{s}", sm.image, sm.labels, {i: 1 for i in sm.instance_classes}))
    return out


def tiny_config(**kw):
    base = dict(
        name="tiny",
        architecture="unet",
        params=TINY_UNET,
        classes=LOOP,
        patch_size=64,
        batch_size=2,
        epochs=2,
        steps_per_epoch=3,
        tile=64,
        halo=8,
        val_fraction=0.34,
    )
    base.update(kw)
    return TrainConfig(**base)


# -- data -----------------------------------------------------------------------------------


def test_data_errors_are_clear_before_anything_starts():
    img = np.zeros((64, 64), np.uint8)
    lab = np.zeros((64, 64), np.int32)
    with pytest.raises(TrainingDataError, match="empty"):
        check_training_data([TrainImage("a", img, lab)], 32)
    lab[5:9, 5:9] = 1
    with pytest.raises(TrainingDataError, match="differ in shape"):
        check_training_data([TrainImage("a", img, lab[:60])], 32)
    with pytest.raises(TrainingDataError, match="smaller than the patch size"):
        check_training_data([TrainImage("a", img, lab)], 128)
    with pytest.raises(TrainingDataError, match="grey"):
        check_training_data([TrainImage("a", np.zeros((64, 64, 3)), lab)], 32)
    with pytest.raises(TrainingDataError, match="no background"):
        check_training_data([TrainImage("a", img, np.ones((64, 64), np.int32))], 32)
    with pytest.raises(TrainingDataError, match=r"class id\(s\) \[7\]"):
        check_training_data([TrainImage("a", img, lab, {1: 7})], 32, class_ids=[1])
    with pytest.raises(TrainingDataError, match="No training images"):
        check_training_data([], 32)
    check_training_data([TrainImage("a", img, lab)], 32)  # fine
    # through train(): nothing is written
    with pytest.raises(TrainingDataError, match="empty"):
        train(tiny_config(), [TrainImage("a", img, np.zeros_like(lab))] * 2, run_dir="never")
    assert not Path("never").exists()


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_patches_are_normalised_the_same_for_any_dtype(dtype):
    sm = generate("tem-loops", (96, 96), seed=1)
    scale = {"uint8": 1, "uint16": 257, "float32": 1 / 255}[dtype]
    im = TrainImage("x", (sm.image.astype(np.float64) * scale).astype(dtype), sm.labels)
    s = PatchSampler([im], 64, AugmentConfig.off(), oversample=0.0)
    _, img, _ = s.sample(np.random.default_rng(0))
    ref = PatchSampler([TrainImage("x", sm.image, sm.labels)], 64, AugmentConfig.off(), 0.0)
    _, img8, _ = ref.sample(np.random.default_rng(0))
    np.testing.assert_allclose(img, img8, atol=2e-3)
    assert img.dtype == np.float32


def test_augmentation_keeps_object_ids_and_can_be_switched_off():
    rng = np.random.default_rng(0)
    image = rng.random((80, 80)).astype(np.float32)
    labels = np.zeros((80, 80), np.int32)
    labels[20:30, 20:30] = 3
    labels[50:60, 40:55] = 8
    img, lab = augment_patch(image, labels, (39.5, 39.5), 80, rng, AugmentConfig.off())
    np.testing.assert_allclose(img, image, atol=1e-6)
    assert np.array_equal(lab, labels)
    seen = set()
    for _ in range(20):
        img, lab = augment_patch(image, labels, (39.5, 39.5), 64, rng, AugmentConfig())
        assert lab.dtype == labels.dtype and img.dtype == np.float32 and img.shape == (64, 64)
        assert set(np.unique(lab)) <= {0, 3, 8}  # nearest neighbour: no new ids
        seen.add(img.tobytes())
    assert len(seen) == 20


def test_oversampling_centres_patches_on_objects():
    img = np.zeros((256, 256), np.uint8)
    lab = np.zeros((256, 256), np.int32)
    lab[200:204, 30:34] = 1
    s = PatchSampler([TrainImage("a", img, lab)], 32, AugmentConfig.off(), oversample=1.0)
    rng = np.random.default_rng(0)
    assert all((s.sample(rng)[2] > 0).any() for _ in range(20))
    s0 = PatchSampler([TrainImage("a", img, lab)], 32, AugmentConfig.off(), oversample=0.0)
    hits = sum((s0.sample(rng)[2] > 0).any() for _ in range(50))
    assert hits < 10


def test_kfold_and_holdout_splits():
    ims = synthetic(5, size=64)
    folds = [split_validation(ims, 0, kfold=3, fold=f) for f in range(3)]
    vals = [im.name for _, v in folds for im in v]
    assert sorted(vals) == sorted(im.name for im in ims)  # every image validated exactly once
    for tr, va in folds:
        assert not {i.name for i in tr} & {i.name for i in va}
    tr, va = split_validation(ims, 0.2)
    assert len(va) == 1 and len(tr) == 4


def test_load_folder_layouts(tmp_path):
    sm = generate("tem-loops", (64, 64), seed=3)
    root = tmp_path / "masks_ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(sm.image).save(root / "images" / "1.png")
    Image.fromarray(((sm.labels > 0) * 255).astype(np.uint8)).save(root / "masks" / "1.png")
    ims, src = load_folder(root)
    assert src["layout"] == "masks" and ims[0].labels.max() >= 1
    assert np.array_equal(ims[0].labels > 0, sm.labels > 0)
    boxes = tmp_path / "boxes_ds"
    (boxes / "images").mkdir(parents=True)
    (boxes / "boxes").mkdir()
    Image.fromarray(sm.image).save(boxes / "images" / "a.png")
    (boxes / "boxes" / "a.txt").write_text("10 10 30 20\n40 40 50 60\n")
    ims, src = load_folder(boxes)
    assert "box" in src["layout"] and ims[0].labels.max() == 2
    assert np.array_equal(
        ims[0].labels, boxes_to_labels([[10, 10, 30, 20], [40, 40, 50, 60]], (64, 64))
    )
    with pytest.raises(TrainingDataError, match="expected images/"):
        load_folder(tmp_path)


# -- runs -----------------------------------------------------------------------------------


def test_train_registers_a_model_with_provenance_and_metrics(tmp_path):
    events = []
    res = train(
        tiny_config(),
        synthetic(),
        run_dir=tmp_path / "run",
        progress=events.append,
        source={"layout": "test"},
    )
    assert not res.stopped and res.model_name == "tiny"
    assert [e.step for e in events if e.kind == "step"] == list(range(1, 7))
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in epochs] == [1, 2] and set(epochs[0].metrics) >= {"miou", "f1"}
    assert events[-1].kind == "done"
    names = [e.name for e in list_models()]
    assert "tiny" in names
    model, card = load_model("tiny", device="cpu")
    assert card.provenance["data"]["layout"] == "test"
    assert card.provenance["recipe"]["augment"]["rotate_deg"] == 15.0
    assert "f1" in card.metrics and card.metrics["epoch"] in (1, 2)
    for f in ("config.json", "last.pt", "best.pt", "history.json", "card.json"):
        assert (res.run_dir / f).is_file()
    # a second run of the same name gets a free name instead of replacing the first
    res2 = train(tiny_config(epochs=1), synthetic(), run_dir=tmp_path / "run2")
    assert res2.model_name == "tiny-2"


def _weights(run_dir):
    return torch.load(Path(run_dir) / "last.pt", weights_only=False)


def test_without_validation_the_last_epoch_is_registered(tmp_path):
    res = train(tiny_config(val_fraction=0, epochs=3), synthetic(), run_dir=tmp_path / "r")
    assert [h["best"] for h in res.history] == [True, True, True]
    assert res.card.metrics["step"] == 9
    last = torch.load(res.run_dir / "last.pt", weights_only=False)["model"]
    model, _ = load_model(res.model_name, device="cpu")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, last[k].float() if v.is_floating_point() else last[k])


def test_cpu_clock_budget_counts_compute_not_waiting(tmp_path, monkeypatch):
    """Steps that wait for a busy core use up a wall budget but not a CPU one."""
    from napari_microseg.core.training import engine

    real_step = engine._Run._train_step

    def waiting_step(self):
        time.sleep(0.3)  # another job holds the core: wall time passes, no CPU time
        return real_step(self)

    monkeypatch.setattr(engine._Run, "_train_step", waiting_step)
    kw = dict(val_fraction=0, epochs=1, steps_per_epoch=8, max_minutes=1 / 60)
    wall = train(tiny_config(**kw), synthetic(), run_dir=tmp_path / "wall")
    cpu = train(tiny_config(clock="cpu", **kw), synthetic(), run_dir=tmp_path / "cpu")
    assert wall.history[-1]["step"] <= 4  # 1 s of wall budget, 0.3 s of waiting per step
    assert cpu.history[-1]["step"] == 8  # the waiting is not compute
    with pytest.raises(TrainingDataError, match="clock"):
        tiny_config(clock="gpu")


def test_stop_then_resume_continues_where_it_stopped(tmp_path):
    cfg = tiny_config(epochs=3, steps_per_epoch=2)
    full = train(cfg, synthetic(), run_dir=tmp_path / "full", register=False)
    calls = {"n": 0}

    def stop_after_3():
        calls["n"] += 1
        return calls["n"] == 3

    part = train(
        cfg, synthetic(), run_dir=tmp_path / "part", should_stop=stop_after_3, register=False
    )
    assert part.stopped and _weights(part.run_dir)["step"] == 3
    steps = []
    res = train(
        cfg,
        synthetic(),
        run_dir=tmp_path / "part",
        resume=True,
        register=False,
        progress=lambda e: steps.append(e.step) if e.kind == "step" else None,
    )
    assert steps == [4, 5, 6]
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    a, b = _weights(full.run_dir)["model"], _weights(res.run_dir)["model"]
    # same seed, restored random states: the interrupted run ends where the whole run ends
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    with pytest.raises(TrainingDataError, match="Nothing to resume"):
        train(cfg, synthetic(), run_dir=tmp_path / "nothing", resume=True)


def test_out_of_memory_halves_the_batch_and_continues(tmp_path, monkeypatch):
    real = _Run._loss
    calls = {"n": 0}

    def flaky(self, imgs, tgts, ks):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, imgs, tgts, ks)

    monkeypatch.setattr(_Run, "_loss", flaky)
    events = []
    res = train(
        tiny_config(batch_size=4),
        synthetic(),
        run_dir=tmp_path / "r",
        progress=events.append,
        register=False,
    )
    msgs = [e.text for e in events if e.kind == "message"]
    assert any("batch size halved to 2" in m for m in msgs)
    assert [e.batch_size for e in events if e.kind == "step"][:2] == [4, 2]
    assert res.history[-1]["step"] == 6


def test_class_ids_with_gaps_map_to_output_channels(tmp_path):
    ims = []
    for s in range(3):
        sm = generate("tem-loops", (96, 96), seed=s)
        gaps = {i: 1 if c == 1 else 4 for i, c in sm.instance_classes.items()}
        ims.append(TrainImage(f"s{s}", sm.image, sm.labels, gaps))
    assert set().union(*(im.class_ids() for im in ims)) == {1, 4}
    res = train(tiny_config(classes=[], epochs=1, steps_per_epoch=2), ims, run_dir=tmp_path / "r")
    assert [c["id"] for c in res.card.classes] == [1, 4] and res.card.out_channels == 3
    assert np.isfinite(res.history[-1]["loss"])


def test_a_class_seen_only_in_validation_is_on_the_card(tmp_path):
    ims = [TrainImage(f"s{s}", *(lambda sm: (sm.image, sm.labels))(generate("tem-loops", (96, 96), seed=s)))
           for s in range(2)]  # every object class 1
    sm = generate("tem-loops", (96, 96), seed=5)
    val = TrainImage("v", sm.image, sm.labels, {i: 4 for i in sm.instance_classes})
    res = train(tiny_config(classes=[], epochs=1, steps_per_epoch=1), ims, [val], run_dir=tmp_path / "r")
    assert [c["id"] for c in res.card.classes] == [1, 4]


def test_mask_rcnn_and_defectsegnet_train(tmp_path):
    mrcnn = {
        "backbone": "resnet18",
        "fpn_channels": 16,
        "representation_size": 32,
        "mask_channels": 8,
        "rpn_pre_nms_top_n_test": 50,
        "rpn_post_nms_top_n_test": 10,
        "box_detections_per_img": 10,
    }
    res = train(
        tiny_config(name="mr", architecture="maskrcnn", params=mrcnn, epochs=1, steps_per_epoch=2),
        synthetic(),
        run_dir=tmp_path / "mr",
    )
    _, card = load_model("mr", device="cpu")
    assert card.task == "instance" and res.history[-1]["step"] == 2
    assert np.isfinite(res.history[-1]["loss"])
    dsn = {"growth": 4, "depth": 2, "layers_per_block": 2}
    train(
        tiny_config(name="dsn", architecture="defectsegnet", params=dsn, epochs=1),
        synthetic(),
        run_dir=tmp_path / "dsn",
    )
    assert load_model("dsn", device="cpu")[1].architecture == "defectsegnet"


def test_fine_tuning_starts_from_a_registered_model(tmp_path):
    train(tiny_config(name="base", epochs=1), synthetic(), run_dir=tmp_path / "a")
    base, _ = load_model("base", device="cpu")
    events = []
    cfg = tiny_config(name="ft", init_model="base", epochs=1, steps_per_epoch=1, lr=1e-9)
    train(cfg, synthetic(seed=10), run_dir=tmp_path / "b", progress=events.append)
    assert any("Started from base" in e.text for e in events if e.kind == "message")
    ft, _ = load_model("ft", device="cpu")
    for (k, a), b in zip(base.state_dict().items(), ft.state_dict().values(), strict=True):
        if a.is_floating_point() and "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)  # lr ~ 0: unchanged


def test_domain_adaptation_trains_a_discriminator(tmp_path):
    tgt = tmp_path / "target.png"
    Image.fromarray(255 - generate("tem-loops", (128, 128), seed=9).image).save(tgt)
    events = []
    cfg = tiny_config(adapt_target=[str(tgt)], epochs=1, steps_per_epoch=3)
    res = train(cfg, synthetic(), run_dir=tmp_path / "da", progress=events.append, register=False)
    state = torch.load(res.run_dir / "last.pt", weights_only=False)
    assert state["adapter"] is not None and "disc" in state["adapter"]
    with pytest.raises(TrainingDataError, match="Domain-adaptation target"):
        train(
            tiny_config(adapt_target=[str(tmp_path / "missing.png")]),
            synthetic(),
            run_dir=tmp_path / "x",
        )


# -- killing a real training process ------------------------------------------------------------


def _write_dataset(root: Path, n=4, size=128):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for s in range(n):
        sm = generate("tem-loops", (size, size), seed=20 + s)
        Image.fromarray(sm.image).save(root / "images" / f"{s + 1}.png")
        Image.fromarray(((sm.labels > 0) * 255).astype(np.uint8)).save(
            root / "masks" / f"{s + 1}.png"
        )


def test_killed_training_process_resumes_from_the_last_epoch(tmp_path):
    data = tmp_path / "ds"
    _write_dataset(data)
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-c",
        RUN_CLI,
        "train",
        "--data",
        str(data),
        "--arch",
        "unet",
        "--params",
        json.dumps(TINY_UNET),
        "--patch",
        "64",
        "--batch",
        "2",
        "--epochs",
        "40",
        "--steps",
        "2",
        "--threads",
        "1",
        "--name",
        "killed",
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    history = run_dir / "history.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if history.is_file() and len(json.loads(history.read_text() or "[]")) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    saved = torch.load(run_dir / "last.pt", weights_only=False)
    done_epochs = len(saved["history"])
    assert done_epochs >= 2 and saved["step"] == 2 * done_epochs  # checkpoint at an epoch end
    out = subprocess.run(
        [sys.executable, "-c", RUN_CLI, "train", "--resume", str(run_dir), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Resumed run at step {saved['step']}" in out.stdout
    final = json.loads(history.read_text())
    assert [h["epoch"] for h in final] == list(range(1, 41))  # nothing lost, nothing repeated
    assert "registered model: killed" in out.stdout


def _pair_files(tmp_path, stem, names, seed=0):
    import tifffile

    from napari_microseg.core.classes import ClassTable, DefectClass
    from napari_microseg.core.labels_io import write_labels

    sm = generate("tem-loops", (128, 128), seed=seed)
    tifffile.imwrite(tmp_path / f"{stem}.tif", sm.image)
    ids = [int(i) for i in np.unique(sm.labels) if i]
    inst = {i: (7 if k % 2 else 8) for k, i in enumerate(ids)}
    table = ClassTable([DefectClass(7, names[0], "#f032e6"), DefectClass(8, names[1], "#bfef45")])
    write_labels(tmp_path / f"{stem}_labels.tif", sm.labels, instance_classes=inst, classes=table)
    return f"{tmp_path / f'{stem}.tif'}:{tmp_path / f'{stem}_labels.tif'}"


def test_card_classes_are_named_from_the_labels_own_class_table(tmp_path):
    """Classes 7/8 of a .labels.json sidecar keep their names on the trained model's card."""
    from napari_microseg.cli.train import load_pair

    pairs = [load_pair(_pair_files(tmp_path, f"a{i}", ["corroded area", "boundary attack"], i))
             for i in range(3)]
    res = train(tiny_config(classes=[], val_fraction=0, epochs=1, steps_per_epoch=1), pairs,
                run_dir=tmp_path / "r")
    assert [(c["id"], c["name"]) for c in res.card.classes] == [(7, "corroded area"),
                                                                (8, "boundary attack")]
    other = load_pair(_pair_files(tmp_path, "b", ["pit", "boundary attack"], 5))
    with pytest.raises(TrainingDataError, match="Class 7 is 'corroded area' in a0 but 'pit' in b"):
        train(tiny_config(classes=[]), [*pairs, other], run_dir=tmp_path / "r2")
