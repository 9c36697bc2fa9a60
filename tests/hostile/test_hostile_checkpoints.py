"""Checkpoints and weights are data, never code; a changed file is refused before use.

Each case puts a pickle whose ``__reduce__`` would write a marker file where a
checkpoint or weights file is expected, then runs what a user runs
(``microseg train --resume``, ``train-promptable --resume`` / ``--init``, the
prompt-model loaders): the marker must not appear and the command must end
with one error line. A flipped bit in a checkpoint or registered weights is
reported as a SHA-256 mismatch. Resuming a stopped run still ends where the
uninterrupted run ends.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.synth import generate
from napari_microseg.core.training import TrainConfig, TrainImage, train

TINY_UNET = {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 4]}
LOOP = [{"id": 1, "name": "loop", "color": "#ff0000"}]
CHECKPOINT_FORMAT = "napari-microseg-training-checkpoint"


class _Marker:
    """Unpickling this writes a file: what ``os.system`` could do, made visible."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def _evil(path: Path, marker: Path, **extra) -> None:
    """Replace ``path`` with a torch file holding code that would create ``marker``."""
    torch.save({"format": CHECKPOINT_FORMAT, **extra, "evil": _Marker(marker)}, path)


@pytest.fixture
def dirs(tmp_path, monkeypatch, torch_one_thread):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MICROSEG_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def _images(n=3, size=96, seed=0):
    out = []
    for s in range(n):
        g = generate("tem-loops", (size, size), seed=seed + s, n_objects=5)
        out.append(TrainImage(f"s{s}", g.image, g.labels, {i: 1 for i in g.instance_classes}))
    return out


def _config(**kw):
    base = dict(
        name="tiny",
        architecture="unet",
        params=TINY_UNET,
        classes=LOOP,
        patch_size=64,
        batch_size=2,
        epochs=2,
        steps_per_epoch=2,
        tile=64,
        halo=8,
        val_fraction=0,
    )
    return TrainConfig(**{**base, **kw})


def _write_pair(folder: Path, seed=0, size=96) -> str:
    """An image TIFF and its labels TIFF; the ``IMAGE:LABELS`` spec of ``--pair``."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    g = generate("tem-loops", (size, size), seed=seed, n_objects=5)
    img, lab = folder / f"img{seed}.tif", folder / f"lab{seed}.tif"
    tifffile.imwrite(img, g.image)
    tifffile.imwrite(lab, g.labels.astype(np.int32))
    return f"{img}:{lab}"


def _cli_run(dirs, cli, *extra):
    """A stopped-free tiny ``microseg train`` run via the CLI; returns its run folder."""
    run = dirs / "run"
    pairs = [_write_pair(dirs / "data", s) for s in range(2)]
    args = ["train", "--arch", "unet", "--params", json.dumps(TINY_UNET), "--patch", "64"]
    args += ["--batch", "2", "--epochs", "1", "--steps", "1", "--threads", "1", "--quiet"]
    args += ["--val-fraction", "0", "--run-dir", run, *extra]
    for p in pairs:
        args += ["--pair", p]
    res = cli(*args)
    assert res.rc == 0, res.err
    return run


# -- pickles that would run code: never executed, one line ------------------------------


def test_train_resume_with_a_malicious_last_pt_runs_nothing(dirs, cli):
    run = _cli_run(dirs, cli, "--no-register")
    marker = dirs / "PWNED"
    _evil(run / "last.pt", marker)
    (run / "last.pt.sha256.json").unlink()  # an attacker rewrites or drops the record too
    res = cli("train", "--resume", run, "--quiet")
    line = res.error_line()
    assert res.rc == 1 and not marker.exists()
    assert "last.pt is not a napari-microseg checkpoint or contains code; refusing" in line


def test_old_pickle_format_checkpoint_is_refused_not_executed(dirs):
    """A pre-zip (legacy pickle) file holding code is refused too."""
    cfg = _config(epochs=1, steps_per_epoch=1)
    run = train(cfg, _images(2), run_dir=dirs / "r", register=False).run_dir
    marker = dirs / "PWNED"
    with open(run / "last.pt", "wb") as f:
        pickle.dump({"format": CHECKPOINT_FORMAT, "evil": _Marker(marker)}, f)
    (run / "last.pt.sha256.json").unlink()
    with pytest.raises(MicrosegError, match="contains code; refusing to load it") as e:
        train(cfg, _images(2), run_dir=run, resume=True, register=False)
    assert "\n" not in str(e.value) and not marker.exists()


def test_promptable_finetune_resume_with_a_malicious_checkpoint_runs_nothing(dirs):
    cfg = TrainConfig(
        name="clicks", architecture="promptable", epochs=1, steps_per_epoch=1, batch_size=2,
        params={"init": "scratch", "widths": [8, 8], "val_objects": 2},
    )
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return True

    res = train(cfg, _images(2), [], run_dir=dirs / "p", should_stop=stop, register=False)
    assert res.stopped and (res.run_dir / "checkpoint.pt").is_file()
    marker = dirs / "PWNED"
    _evil(res.run_dir / "checkpoint.pt", marker)
    with pytest.raises(MicrosegError) as e:
        train(cfg, _images(2), [], run_dir=res.run_dir, resume=True, register=False)
    msg = str(e.value)
    assert not marker.exists() and "\n" not in msg
    # the record beside still holds the real checkpoint's digest: the swap is seen first
    assert "checkpoint.pt has changed since it was written (SHA-256 mismatch)" in msg
    (res.run_dir / "checkpoint.pt.sha256.json").unlink()
    with pytest.raises(MicrosegError, match="contains code; refusing to load it"):
        train(cfg, _images(2), [], run_dir=res.run_dir, resume=True, register=False)
    assert not marker.exists()


def test_train_promptable_resume_and_init_with_malicious_files_run_nothing(dirs, cli):
    out = dirs / "out"
    out.mkdir()
    marker = dirs / "PWNED"
    _evil(out / "checkpoint.pt", marker)
    common = ["--synthetic", "1", "--synth-size", "96", "--epochs", "1", "--steps-per-epoch",
              "1", "--batch-size", "2"]
    res = cli("train-promptable", "--out", out, "--resume", *common)
    line = res.error_line()
    assert res.rc == 1 and not marker.exists()
    assert "checkpoint.pt is not a napari-microseg checkpoint or contains code" in line
    evil_init = dirs / "init.pt"
    torch.save({"model": {}, "state_dict": {}, "meta": _Marker(marker)}, evil_init)
    res = cli("train-promptable", "--out", dirs / "out2", "--init", evil_init, *common)
    line = res.error_line()
    assert res.rc == 1 and not marker.exists()
    assert "init.pt is not a microseg-promptable weights file or contains code" in line


def test_sam2_checkpoint_and_delta_loaders_refuse_code(dirs):
    """The SAM2 fine-tune resume reads ``last.pt`` with the engine's loader; deltas likewise."""
    from napari_microseg.core.prompting.sam2_lora import read_delta
    from napari_microseg.core.training.sam2_finetune import _load_checkpoint

    marker = dirs / "PWNED"
    _evil(dirs / "last.pt", marker)
    with pytest.raises(MicrosegError, match="last.pt is not a napari-microseg checkpoint or "):
        _load_checkpoint(dirs / "last.pt")
    _evil(dirs / "delta.pt", marker, base={}, lora={})
    with pytest.raises(MicrosegError, match="delta.pt is not a napari-microseg SAM2 delta file or"):
        read_delta(dirs / "delta.pt")
    assert not marker.exists()


def test_every_weights_loader_gives_one_line_for_code_and_damage(dirs):
    """from_checkpoint, read_weights, init_from: a malicious or truncated file is one line."""
    from napari_microseg.core.models.card import ModelCard
    from napari_microseg.core.models.checkpoint import read_weights
    from napari_microseg.core.promptable.backend import PromptableBackend
    from napari_microseg.core.training.model_setup import init_from

    marker = dirs / "PWNED"
    evil = dirs / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Marker(marker)}, evil)
    card = ModelCard(name="t", architecture="unet", classes=LOOP, params=TINY_UNET)
    cut = dirs / "cut.pt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, cut)
    cut.write_bytes(cut.read_bytes()[:300])
    calls = [
        lambda p: PromptableBackend.from_checkpoint(p),
        lambda p: read_weights(p, card),
        lambda p: init_from(torch.nn.Linear(1, 1), card, str(p), print),
    ]
    for call in calls:
        for path in (evil, cut):
            with pytest.raises(MicrosegError) as e:
                call(path)
            msg = str(e.value)
            assert "\n" not in msg and path.name in msg, msg
    assert not marker.exists()


# -- integrity: a flipped bit is detected before use --------------------------------------


def _flip_last_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2  # inside the tensor data: the file still unpickles fine
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_bit_flip_in_a_run_checkpoint_is_detected_on_resume(dirs, cli):
    run = _cli_run(dirs, cli, "--no-register")
    assert json.loads((run / "last.pt.sha256.json").read_text())["file"] == "last.pt"
    _flip_last_bytes(run / "last.pt")
    res = cli("train", "--resume", run, "--quiet")
    line = res.error_line()
    assert res.rc == 1
    assert "last.pt has changed since it was written (SHA-256 mismatch); it may be corrupt" in line


def test_bit_flip_in_registered_weights_is_detected_before_use(dirs):
    from napari_microseg.core.models.registry import load_model

    res = train(_config(epochs=1, steps_per_epoch=1), _images(2), run_dir=dirs / "r")
    folder = dirs / "models" / res.model_name
    card = json.loads((folder / "model_card.json").read_text())
    assert len(card["weights_sha256"]) == 64
    load_model(res.model_name, device="cpu")
    _flip_last_bytes(folder / "weights.pt")
    with pytest.raises(MicrosegError, match=r"weights\.pt has changed since it was written"):
        load_model(res.model_name, device="cpu")


def test_bit_flip_in_a_registered_prompt_model_and_delta_is_detected(dirs):
    from napari_microseg.core.prompting.registry import make_backend
    from napari_microseg.core.prompting.sam2_lora import read_delta

    cfg = TrainConfig(
        name="clicks", architecture="promptable", epochs=1, steps_per_epoch=1, batch_size=2,
        params={"init": "scratch", "widths": [8, 8], "val_objects": 2},
    )
    res = train(cfg, _images(2), [], run_dir=dirs / "p")
    make_backend(res.model_name)
    _flip_last_bytes(dirs / "models" / res.model_name / "weights.pt")
    with pytest.raises(MicrosegError, match="SHA-256 mismatch"):
        make_backend(res.model_name)
    # a LoRA delta: the record beside it (run folder) or the card (model folder) is checked
    from napari_microseg.core.safeload import write_with_digest

    delta = dirs / "best_delta.pt"
    data = {"format": "napari-microseg-sam2-delta", "base": {}, "lora": {},
            "state_dict": {"w": torch.arange(256.0)}}
    write_with_digest(delta, lambda tmp: torch.save(data, tmp))
    assert read_delta(delta)["format"] == "napari-microseg-sam2-delta"
    _flip_last_bytes(delta)
    with pytest.raises(MicrosegError, match="best_delta.pt has changed since it was written"):
        read_delta(delta)


# -- resume still works, and remembers --no-register ------------------------------------------


def test_resume_equals_the_uninterrupted_run_and_checkpoint_is_plain_data(dirs):
    cfg = _config(epochs=2, steps_per_epoch=2)
    full = train(cfg, _images(), run_dir=dirs / "full", register=False)
    calls = {"n": 0}

    def stop_after_3():
        calls["n"] += 1
        return calls["n"] == 3

    part = train(cfg, _images(), run_dir=dirs / "part", should_stop=stop_after_3, register=False)
    assert part.stopped
    saved = torch.load(part.run_dir / "last.pt", weights_only=True)  # plain data only
    assert saved["step"] == 3 and set(saved["rng_states"]) == {"numpy", "python", "torch", "cuda"}
    res = train(cfg, _images(), run_dir=dirs / "part", resume=True, register=False)
    a = torch.load(full.run_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(res.run_dir / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_resumed_no_register_run_registers_nothing(dirs, cli):
    run = dirs / "run"
    pairs = [_write_pair(dirs / "data", s) for s in range(2)]
    args = ["train", "--arch", "unet", "--params", json.dumps(TINY_UNET), "--patch", "64",
            "--batch", "2", "--epochs", "2", "--steps", "1", "--threads", "1", "--quiet",
            "--val-fraction", "0", "--run-dir", run, "--no-register", "--name", "never"]
    for p in pairs:
        args += ["--pair", p]
    assert cli(*args).rc == 0
    # pretend it was stopped after epoch 1: resume must not register either
    from napari_microseg.core.training.run_plumbing import load_checkpoint, save_checkpoint

    state = load_checkpoint(run / "last.pt")
    state["step"], state["history"] = 1, state["history"][:1]
    save_checkpoint(run / "last.pt", state)
    res = cli("train", "--resume", run, "--quiet")
    assert res.rc == 0, res.err
    assert "registered model" not in res.out
    assert not (dirs / "models" / "never").exists()


# -- CLI arguments that used to end in a traceback -------------------------------------------


def test_val_images_with_only_pairs_is_one_line(dirs, cli):
    spec = _write_pair(dirs / "data")
    res = cli("train", "--pair", spec, "--val-images", "a", "--quiet")
    assert res.rc == 1 and "--val-images" in res.error_line()


def test_pair_is_split_at_the_last_colon(dirs, cli):
    from napari_microseg.cli.train import load_pair

    folder = dirs / "a:b"
    _write_pair(folder)
    image = folder / "img0.tif"
    (dirs / "labs").mkdir()
    labels = (folder / "lab0.tif").rename(dirs / "labs" / "lab0.tif")
    spec = f"{image}:{labels}"
    assert spec.count(":") == 2
    im = load_pair(spec)
    assert im.name == "img0" and im.labels.max() > 0
    res = cli("train", "--pair", f"{folder}/nothing.tif:{labels}", "--quiet")
    assert res.rc == 1 and "split at the last ':'" in res.error_line()


def test_resume_of_a_folder_that_is_not_a_run_is_one_line(dirs, cli):
    (dirs / "plain").mkdir()
    res = cli("train", "--resume", dirs / "plain", "--quiet")
    assert res.rc == 1 and "not a training run folder" in res.error_line()
    res = cli("train", "--resume", dirs / "missing", "--quiet")
    assert res.rc == 1 and "no such run folder" in res.error_line()


def test_run_dir_that_is_not_empty_or_not_writable_is_one_line(dirs, cli):
    spec = _write_pair(dirs / "data")
    (dirs / "busy").mkdir()
    (dirs / "busy" / "thesis.docx").write_text("precious")
    res = cli("train", "--pair", spec, "--run-dir", dirs / "busy", "--quiet")
    assert res.rc == 1 and "is not empty and is not a training run" in res.error_line()
    assert (dirs / "busy" / "thesis.docx").read_text() == "precious"
    (dirs / "afile").write_text("x")
    res = cli("train", "--pair", spec, "--run-dir", dirs / "afile" / "run", "--patch", "64",
              "--quiet")
    assert res.rc == 1 and "Cannot write to the run folder" in res.error_line()
