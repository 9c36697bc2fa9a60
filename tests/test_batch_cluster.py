"""Done-when test of the batch runner: a real LocalCluster (two worker processes on
127.0.0.1), a corrupt file, the run killed halfway, rerun: nothing recomputed, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_helpers import register_tiny_unet, write_corrupt, write_micrographs
from napari_microseg.core.batch import InferenceSettings, Recipe, output_paths, process_image
from napari_microseg.core.labels_io import read_labels
from napari_microseg.core.measure.export import read_csv
from napari_microseg.core.models import PostprocessSettings

pytestmark = pytest.mark.slow


def _batch_cli(recipe_path, inputs, out, env):
    cmd = [
        sys.executable,
        "-m",
        "napari_microseg",
        "batch",
        str(recipe_path),
        str(inputs),
        "--out",
        str(out),
        "--workers",
        "2",
        "--threads-per-worker",
        "1",
    ]
    # own session: killing the group kills the CLI, the nannies and the workers at once
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )


def _done_records(out: Path) -> dict[str, dict]:
    recs = {}
    for p in out.glob("*.record.json"):
        try:
            recs[p.name.removesuffix(".record.json")] = json.loads(p.read_text())
        except ValueError:  # pragma: no cover - records are written atomically
            pytest.fail(f"half-written record {p}")
    return recs


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_cluster_batch_killed_halfway_then_resumed(tmp_path, monkeypatch, torch_one_thread):
    models = tmp_path / "models"
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(models))
    card = register_tiny_unet()
    inputs = tmp_path / "in"
    small = write_micrographs(inputs, 8, size=128)
    # sorted last and slow (test-time augmentation on 384 px): still running when the kill comes
    big = write_micrographs(inputs, 1, size=384, seed0=50, prefix="zz_big")
    write_corrupt(inputs / "img99_corrupt.tif")
    recipe = Recipe.for_model(
        card.name,
        inference=InferenceSettings(tta=True),
        postprocess=PostprocessSettings(thresholds=0.4, min_size=1.0, min_size_unit="nm2"),
    )
    recipe_path = recipe.save(tmp_path / "recipe.yaml")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "MICROSEG_MODELS_DIR": str(models),
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }

    # 1. start, and kill the whole process group once a few images are finished
    proc = _batch_cli(recipe_path, inputs, out, env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(r["status"] == "ok" for r in _done_records(out).values()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the batch ended before it could be killed: {proc.communicate()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = {n: r for n, r in _done_records(out).items() if r["status"] == "ok"}
    assert 3 <= len(before) < 9, "the kill should come halfway"
    assert "zz_big00" not in before
    stamps = {n: {k: _stamp(p) for k, p in output_paths(out, n).items()} for n in before}

    # 2. rerun: finished images are skipped (files untouched), the rest are done
    proc = _batch_cli(recipe_path, inputs, out, env)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr  # 1: one image failed
    assert f"{len(before)} skipped" in stdout and "1 failed of 10" in stdout
    assert "img99_corrupt.tif: error:" in stderr
    for n in before:
        assert {k: _stamp(p) for k, p in output_paths(out, n).items()} == stamps[n], n
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 10
    status = dict(zip(summary["name"], summary["status"], strict=True))
    assert {n for n, s in status.items() if s == "skipped"} == set(before)
    assert status["img99_corrupt"] == "error" and status["zz_big00"] == "ok"
    assert sum(s == "ok" for s in status.values()) == 9 - len(before)

    # 3. nothing lost: every image's outputs equal a clean, in-process run
    clean = tmp_path / "clean"
    for path in [*small, *big]:
        ref = process_image(recipe, path, clean)
        assert ref.status == "ok"
        got, want = output_paths(out, path.stem), output_paths(clean, path.stem)
        a, b = read_labels(got["labels"]), read_labels(want["labels"])
        assert np.array_equal(a.labels, b.labels) and a.instance_classes == b.instance_classes
        pd.testing.assert_frame_equal(read_csv(got["objects"])[0], read_csv(want["objects"])[0])
        row = summary[summary["name"] == path.stem].iloc[0]
        assert row["n_objects"] == ref.row["n_objects"]
        assert row["density_per_um2"] == pytest.approx(ref.row["density_per_um2"])

    # 4. the report lists the corrupt file, the recipe and the plots
    html = (out / "report.html").read_text()
    assert "Failed images (1)" in html and "img99_corrupt.tif" in html
    assert recipe.recipe_hash() in html and "tiny-unet" in html
    pngs = sorted((out / "report_files").glob("*.png"))
    assert (
        any(p.name.startswith("hist_") for p in pngs)
        and (out / "report_files" / "density.png") in pngs
    )
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
    for p in pngs:
        assert f"report_files/{p.name}" in html
    info = json.loads((out / "run.json").read_text())
    # the rerun computes what is left: on the cluster, or in process when that is a few images
    from napari_microseg.core.batch.runner import IN_PROCESS_MAX

    left = 10 - len(before)
    assert info["mode"] == ("dask" if left > IN_PROCESS_MAX else "in process")
    if info["mode"] == "dask":
        assert info["workers"] == 2 and info["scheduler"].startswith("tcp://127.0.0.1:")
    assert info["n_skipped"] == len(before) and info["n_failed"] == 1 and not info["cancelled"]


def test_cancel_on_a_cluster_keeps_finished_images(tmp_path, monkeypatch, torch_one_thread):
    from napari_microseg.core.batch import run_batch

    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = register_tiny_unet()
    write_micrographs(tmp_path / "in", 8, size=128)
    recipe = Recipe.for_model(card.name)
    out = tmp_path / "out"
    seen = []
    run = run_batch(
        recipe,
        [tmp_path / "in"],
        out,
        workers=2,
        threads_per_worker=1,
        progress=lambda done, total, res: seen.append(res.status),
        cancel=lambda: len(seen) >= 2,
    )
    assert run.info["cancelled"] and run.info["scheduler"].startswith("tcp://127.0.0.1:")
    done = [r for r in run.results if r.status == "ok"]
    assert 2 <= len(done) < 8
    # finished images are complete on disk (tasks already on a worker may finish too,
    # their record is written last), nothing is half-written
    records = _done_records(out)
    assert {r.name for r in done} <= set(records)
    for name in records:
        assert all(p.is_file() for p in output_paths(out, name).values()), name
    assert not list(out.glob(".*.part*"))
    # a rerun (here in-process) skips every finished image and completes the rest
    again = run_batch(recipe, [tmp_path / "in"], out, workers=0)
    assert again.count("skipped") == len(records) and again.count("ok") == 8 - len(records)
