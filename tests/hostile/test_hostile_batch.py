"""Hostile uses of ``microseg batch``: shared output folders, stale results, bad options.

Issue 13 (batch integrity) and issue 12 item 4 (batch silently in px).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_helpers import register_tiny_unet, write_micrographs
from napari_microseg.core.batch import PixelSizePolicy, Recipe, output_paths, run_batch
from napari_microseg.core.batch.folder import LOCK_FILE, clamp_workers, cpu_count
from napari_microseg.core.batch.runner import batch_steps
from napari_microseg.core.models import PostprocessSettings


@pytest.fixture
def tiny(tmp_path, monkeypatch, torch_one_thread):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    return register_tiny_unet()


@pytest.fixture
def images(tmp_path):
    return write_micrographs(tmp_path / "in", 3, size=64)


def _recipe(tiny, tmp_path, name="a.json", min_size=0.0, policy=None) -> Path:
    r = Recipe.for_model(
        tiny.name, postprocess=PostprocessSettings(min_size=min_size, min_size_unit="px")
    )
    if policy is not None:
        r.pixel_size = policy
    return r.save(tmp_path / name)


def _plain(folder, name="plain.tif", seed=0) -> Path:
    """An uncalibrated 64 x 64 TIFF (no resolution, no sidecar)."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    path = folder / name
    tifffile.imwrite(path, rng.integers(0, 255, (64, 64), dtype=np.uint8))
    return path


def _records(out: Path) -> dict[str, dict]:
    return {
        p.name.removesuffix(".record.json"): json.loads(p.read_text())
        for p in out.glob("*.record.json")
    }


# -- 1. one recipe and one batch per folder; the summary covers the whole folder ------------


def test_another_recipe_into_the_same_folder_is_refused(cli, tiny, images, tmp_path):
    a = _recipe(tiny, tmp_path, "a.json")
    b = _recipe(tiny, tmp_path, "b.json", min_size=5.0)
    out = tmp_path / "out"
    assert cli("batch", a, tmp_path / "in", "--out", out, "--workers", 0).rc == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = cli("batch", b, tmp_path / "in", "--out", out, "--workers", 0)
    line = r.error_line()
    assert r.rc == 1 and str(out) in line and Recipe.load(a).recipe_hash()[:12] in line
    assert "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    r = cli("batch", b, tmp_path / "in", "--out", out, "--workers", 0, "--overwrite")
    assert r.rc == 0, r.err
    assert Recipe.load(out / "recipe.json").recipe_hash() == Recipe.load(b).recipe_hash()


def test_a_second_batch_into_a_folder_in_use_is_refused(cli, tiny, images, tmp_path):
    recipe = Recipe.load(_recipe(tiny, tmp_path))
    out = tmp_path / "out"
    first = batch_steps(recipe, [tmp_path / "in"], out, workers=0)
    next(first)  # running: one image done, the folder locked
    lock = json.loads((out / LOCK_FILE).read_text())
    assert lock["pid"] == os.getpid() and lock["host"] == socket.gethostname()
    r = cli("batch", tmp_path / "a.json", tmp_path / "in", "--out", out, "--workers", 0)
    line = r.error_line()
    assert r.rc == 1 and "in use by another microseg batch" in line and str(out) in line
    first.close()  # the first batch ends: its lock goes
    assert not (out / LOCK_FILE).exists()
    assert cli("batch", tmp_path / "a.json", tmp_path / "in", "--out", out, "--workers", 0).rc == 0


def test_a_dead_batchs_lock_is_taken_over_with_a_warning(cli, tiny, images, tmp_path):
    _recipe(tiny, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_FILE).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started_utc": "earlier"})
    )
    r = cli("batch", tmp_path / "a.json", tmp_path / "in", "--out", out, "--workers", 0)
    assert r.rc == 0, r.err
    assert "taking over the lock" in r.err and "Traceback" not in r.err
    assert not (out / LOCK_FILE).exists()


def test_rerun_on_one_image_keeps_every_image_in_summary_and_report(cli, tiny, images, tmp_path):
    _recipe(tiny, tmp_path)
    out = tmp_path / "out"
    assert cli("batch", tmp_path / "a.json", tmp_path / "in", "--out", out, "--workers", 0).rc == 0
    r = cli("batch", tmp_path / "a.json", images[1], "--out", out, "--workers", 0)
    assert r.rc == 0, r.err
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["name"]) == ["img00", "img01", "img02"]
    assert summary["n_objects"].notna().all()
    html = (out / "report.html").read_text()
    assert all(f">img0{i}<" in html for i in range(3))


# -- 2. "already done" means the same input content, calibration and outputs ---------------


def test_changed_outputs_and_same_size_same_time_input_are_redone(tiny, images, tmp_path):
    recipe = Recipe.load(_recipe(tiny, tmp_path))
    out = tmp_path / "out"
    assert run_batch(recipe, [tmp_path / "in"], out, workers=0, report=False).count("ok") == 3
    # an output edited in place (same size) and an input rewritten with the same size and time
    objects = output_paths(out, "img00")["objects"]
    text = objects.read_text()
    objects.write_text(text[:-2] + ("0" if text[-2] != "0" else "1") + text[-1])
    st = images[1].stat()
    data = bytearray(images[1].read_bytes())
    data[-1] ^= 0xFF
    images[1].write_bytes(bytes(data))
    os.utime(images[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert images[1].stat().st_size == st.st_size
    run = run_batch(recipe, [tmp_path / "in"], out, workers=0, report=False)
    assert [r.status for r in run.results] == ["ok", "ok", "skipped"]
    rec = _records(out)["img01"]
    assert len(rec["input"]["sha256"]) == 64
    assert set(rec["output_digests"]) == {"labels", "sidecar", "objects"}


# -- 5. calibration: never a silent px result; a sidecar added later is noticed -------------


def test_uncalibrated_image_is_an_error_under_the_default_policy(tiny, tmp_path):
    _plain(tmp_path / "in")
    write_micrographs(tmp_path / "in", 1, size=64)
    recipe = Recipe.load(_recipe(tiny, tmp_path))
    assert recipe.pixel_size.policy == "metadata"
    run = run_batch(recipe, [tmp_path / "in"], tmp_path / "out", workers=0)
    status = {r.name: r for r in run.results}
    assert status["img00"].status == "ok" and status["plain"].status == "error"
    err = status["plain"].error
    assert "plain.tif: no pixel size" in err and "plain.tif.microseg.json" in err
    assert "override" in err and "allow_px" in err


def test_allow_px_says_so_and_a_sidecar_added_later_redoes_the_image(tiny, tmp_path):
    plain = _plain(tmp_path / "in")
    recipe = Recipe.load(_recipe(tiny, tmp_path, policy=PixelSizePolicy("allow_px")))
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="measured in px"):
        run = run_batch(recipe, [tmp_path / "in"], out, workers=0)
    (res,) = run.results
    assert res.status == "ok" and res.row["unit"] == "px"
    summary = pd.read_csv(out / "summary.csv")
    assert "allow_px" in summary.loc[0, "calibration_note"]
    assert "1 image(s) measured in px" in run.report.read_text()
    # a sidecar written afterwards: the earlier px result is stale
    Path(str(plain) + ".microseg.json").write_text(json.dumps({"pixel_size_nm": 0.390625}))
    run = run_batch(recipe, [tmp_path / "in"], out, workers=0)
    (res,) = run.results
    assert res.status == "ok" and res.row["unit"] == "nm"
    assert res.row["pixel_size_nm"] == 0.390625
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[0, "unit"] == "nm" and pd.isna(summary.loc[0, "calibration_note"])


# -- 3. a changed model: nothing written ---------------------------------------------------


def test_changed_model_leaves_the_output_folder_untouched(cli, tiny, images, tmp_path):
    _recipe(tiny, tmp_path)
    out = tmp_path / "out"
    assert cli("batch", tmp_path / "a.json", tmp_path / "in", "--out", out, "--workers", 0).rc == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    weights = next((tmp_path / "models" / tiny.name).glob("weights.*"))
    with open(weights, "ab") as f:
        f.write(b"retrained")
    for folder in (out, tmp_path / "new"):
        r = cli("batch", tmp_path / "a.json", tmp_path / "in", "--out", folder, "--workers", 0)
        assert r.rc == 1 and "changed since the recipe was saved" in r.error_line()
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "new").exists()


# -- 4. cluster options and a full disk ----------------------------------------------------


def test_workers_are_clamped_to_the_cpu_cores(cli, tiny, images, tmp_path):
    with pytest.warns(UserWarning, match="using"):
        assert clamp_workers(64) == cpu_count()
    assert clamp_workers(1) == 1
    _recipe(tiny, tmp_path)
    r = cli(
        "batch", tmp_path / "a.json", tmp_path / "in", "--out", tmp_path / "out", "--workers", 64
    )
    assert r.rc == 0, r.err
    assert f"64 worker processes asked for, but this machine has {cpu_count()}" in r.err


@pytest.mark.parametrize("address", ["http://x", "tcp://", "localhost", "tcp://h:99999"])
def test_a_bad_scheduler_address_is_one_line(cli, tiny, images, tmp_path, address):
    _recipe(tiny, tmp_path)
    out = tmp_path / "out"
    r = cli("batch", tmp_path / "a.json", tmp_path / "in", "--out", out, "--scheduler", address)
    line = r.error_line()
    assert r.rc == 1 and "not a Dask scheduler address" in line and "tcp://HOST:PORT" in line
    assert not out.exists()


def test_an_unreachable_scheduler_is_one_line(cli, tiny, images, tmp_path):
    import time

    _recipe(tiny, tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    r = cli(
        "batch",
        tmp_path / "a.json",
        tmp_path / "in",
        "--out",
        tmp_path / "out",
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
    )
    assert r.rc == 1 and "Cannot reach the Dask scheduler" in r.error_line()
    assert time.monotonic() - t0 < 15  # a short connect timeout, not 20 s or more
    assert not (tmp_path / "out" / LOCK_FILE).exists()


def test_report_on_a_full_disk_is_one_line_and_nothing_half_written(
    cli, tiny, images, tmp_path, monkeypatch
):
    import errno

    _recipe(tiny, tmp_path)
    out = tmp_path / "out"
    assert cli("batch", tmp_path / "a.json", tmp_path / "in", "--out", out, "--workers", 0).rc == 0
    old = (out / "report.html").read_bytes()
    real = Path.write_text

    def full_disk(self, data, *args, **kwargs):
        if self.name.startswith(".report.html."):
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    r = cli(
        "batch", tmp_path / "a.json", tmp_path / "in", "--out", out, "--workers", 0, "--overwrite"
    )
    line = r.error_line()
    assert r.rc == 1 and "report.html" in line and "no space left" in line.lower()
    assert (out / "report.html").read_bytes() == old
    assert not list(out.glob(".*.part*")) and not list(out.glob(f"*{LOCK_FILE}"))


# -- 6. small batches start no cluster -----------------------------------------------------


def test_a_small_batch_runs_in_process_without_a_cluster(tiny, images, tmp_path, monkeypatch):
    import distributed

    def no_cluster(*a, **k):
        raise AssertionError("a LocalCluster was started for 3 images")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    recipe = Recipe.load(_recipe(tiny, tmp_path))
    seen = []
    run = run_batch(
        recipe,
        [tmp_path / "in"],
        tmp_path / "out",
        workers=2,
        progress=lambda *a: seen.append(a[0]),
        cancel=lambda: len(seen) >= 2,
    )
    assert run.info["mode"] == "in process" and run.count("ok") == 2 and run.info["cancelled"]
    again = run_batch(recipe, [tmp_path / "in"], tmp_path / "out", workers=2)
    assert [r.status for r in again.results] == ["skipped", "skipped", "ok"]
