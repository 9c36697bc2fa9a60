"""``microseg find-similar`` end to end on small synthetic TEM frames (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_microseg.core.labels_io import read_labels, write_labels
from napari_microseg.core.synth import generate, write_sample

N_EXEMPLARS = 6


def microseg(capsys, *args) -> tuple[int, str, str]:
    """Run ``microseg ARGS`` in process: (exit code, stdout, stderr); argparse errors give 2."""
    from napari_microseg.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return int(rc), out, err


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [ln for ln in err.splitlines() if ": error:" in ln]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Two 256 x 256 black-dot frames (a.tif, more/b.tif), exemplars on a, a corrupt TIFF."""
    root = tmp_path_factory.mktemp("find_similar")
    a = generate("tem-dots", shape=(256, 256), seed=5)
    write_sample(a, root, "a")  # a.tif, a_labels.tif (+ sidecar), a_truth.json
    ids = sorted(a.instance_classes)[:N_EXEMPLARS]
    ex = np.where(np.isin(a.labels, ids), a.labels, 0)
    write_labels(root / "ex.tif", ex, pixel_size=a.pixel_size, instance_classes=dict.fromkeys(ids, 3))
    (root / "more").mkdir()
    write_sample(generate("tem-dots", shape=(256, 256), seed=6), root / "more", "b")
    (root / "more" / "broken.tif").write_bytes(b"II*\x00 not a tiff at all")
    return {"root": root, "truth": a, "ids": ids, "ex": ex}


def _iou_matches(cand: np.ndarray, truth: np.ndarray) -> int:
    """Candidates whose best-overlapping true object has IoU >= 0.5."""
    fg = (cand > 0) & (truth > 0)
    pairs, inter = np.unique(np.stack([cand[fg], truth[fg]]), axis=1, return_counts=True)
    ca, ta = np.bincount(cand.ravel()), np.bincount(truth.ravel())
    iou = inter / (ca[pairs[0]] + ta[pairs[1]] - inter)
    return len(np.unique(pairs[0][iou >= 0.5]))


@pytest.mark.slow
def test_end_to_end_with_a_folder_holding_a_corrupt_file(scene, capsys):
    root = scene["root"]
    out = root / "out"
    rc, stdout, err = microseg(capsys, "find-similar", root / "a.tif", "--exemplars", root / "ex.tif",
                               "--also", root / "more", "--out", out)
    assert rc == 1  # the corrupt file failed, the others went on
    errors = error_lines(err)
    assert len(errors) == 1 and "broken.tif" in errors[0], err
    assert "1 of 2 --also image(s) failed" in err
    lines = stdout.splitlines()
    assert len(lines) == 2 and "a.tif" in lines[0] and "b.tif" in lines[1], stdout
    assert not (out / "b_labels_candidates.tif").exists()  # a labels TIFF is no micrograph
    for stem in ("a", "b"):
        rec = read_labels(out / f"{stem}_candidates.tif")
        lab = np.asarray(rec.labels)
        assert rec.pixel_size.calibrated and rec.pixel_size.x_nm == pytest.approx(0.5)
        table = pd.read_csv(out / f"{stem}_candidates.csv")
        assert (out / f"{stem}_candidates.csv.json").exists()
        assert list(table.columns[:3]) == ["candidate", "score", "area_px"]
        k = len(table)
        assert k > 0 and list(table["candidate"]) == list(range(1, k + 1))
        assert set(np.unique(lab)) == set(range(k + 1))
        assert (table["score"] >= 0.5).all() and table["score"].is_monotonic_decreasing
        np.testing.assert_array_equal(table["area_px"], np.bincount(lab.ravel())[1:])
        rows, cols = np.nonzero(lab == 1)
        assert table["centroid_y_px"][0] == pytest.approx(rows.mean())
        assert table["centroid_x_px"][0] == pytest.approx(cols.mean())
        assert table["area_nm2"][0] == pytest.approx(table["area_px"][0] * 0.25)
        assert set(rec.instance_classes.values()) == {3}  # the exemplars' class
        assert rec.metadata["scores"]["1"] == pytest.approx(table["score"][0], abs=1e-4)
        assert rec.metadata["settings"]["exemplar_ids"] == scene["ids"]
        # the default: the offline promptable model drew the masks (no SAM2 weights here)
        assert rec.metadata["settings"]["backend"] == "default"
        assert rec.metadata["settings"]["masks_from"] == "microseg-promptable"
    lab = np.asarray(read_labels(out / "a_candidates.tif").labels)
    assert not np.any((lab > 0) & (scene["ex"] > 0))  # nothing committed is covered
    # the written candidates lie on true objects (not shifted, flipped or renumbered wrongly);
    # how many are found is the core's business (tests of core.fewshot, BENCHMARKS.md)
    assert _iou_matches(lab, scene["truth"].labels) >= 5


@pytest.mark.slow
def test_ids_threshold_and_committed(scene, capsys):
    root, ids = scene["root"], scene["ids"]
    out = root / "out_ids"
    committed = root / "a_labels.tif"  # everything is committed: the truth itself
    rc, stdout, err = microseg(capsys, "find-similar", root / "a.tif", "--exemplars", root / "ex.tif",
                               "--ids", ",".join(map(str, ids[:3])), "--committed", committed,
                               "--threshold", "0.8", "--out", out)
    assert rc == 0, err
    lab = np.asarray(read_labels(out / "a_candidates.tif").labels)
    assert not np.any((lab > 0) & (scene["truth"].labels > 0))
    table = pd.read_csv(out / "a_candidates.csv")
    assert (table["score"] >= 0.8).all()
    side = json.loads((out / "a_candidates.labels.json").read_text())
    assert side["metadata"]["settings"]["exemplar_ids"] == ids[:3]
    assert side["metadata"]["settings"]["committed_file"] == str(committed)


def test_large_image_note_and_own_masks(scene, capsys, monkeypatch):
    """Above the promptable model's size the CLI says so and records find similar's own masks."""
    import napari_microseg.core.fewshot.masks as fsm

    root = scene["root"]
    out = root / "out_large"
    monkeypatch.setattr(fsm, "PROMPTABLE_MAX_PIXELS", 16)
    rc, stdout, err = microseg(capsys, "find-similar", root / "a.tif", "--exemplars", root / "ex.tif",
                               "--out", out)
    assert rc == 0, err
    assert "masks from the pixel classifier" in stdout
    rec = read_labels(out / "a_candidates.tif")
    assert rec.metadata["settings"]["masks_from"] == "find-similar"


def test_bad_input_gives_one_line(scene, capsys, tmp_path):
    root = scene["root"]
    base = ["find-similar", root / "a.tif", "--exemplars", root / "ex.tif", "--out", tmp_path / "o"]
    small = tmp_path / "small.tif"
    write_labels(small, scene["ex"][:100, :100])
    (tmp_path / "file").write_text("x")
    cases = [
        (["find-similar", root / "a.tif", "--exemplars", tmp_path / "nope.tif", "--out", tmp_path / "o"],
         1, "nope.tif"),
        ([*base, "--ids", "9999"], 1, "9999"),
        ([*base, "--ids", "a,b"], 2, "instance ids"),
        ([*base, "--ids", "0"], 2, "positive"),
        ([*base, "--threshold", "2"], 2, "threshold"),
        ([*base, "--backend", "nosuch"], 1, "nosuch"),
        (["find-similar", root / "a.tif", "--exemplars", small, "--out", tmp_path / "o"], 1, "px"),
        ([*base[:-1], tmp_path / "file"], 1, "not a folder"),
        ([*base, "--also", tmp_path / "missing_dir"], 1, "missing_dir"),
        (["find-similar", root / "more" / "broken.tif", "--exemplars", root / "ex.tif", "--out",
          tmp_path / "o"], 1, "broken.tif"),
        # an output would replace an input: exemplars named like a's candidates, in --out
        (["find-similar", root / "a.tif", "--exemplars", tmp_path / "a_candidates.tif", "--out",
          tmp_path], 1, "overwrite"),
    ]
    write_labels(tmp_path / "a_candidates.tif", scene["ex"])
    for args, code, text in cases:
        rc, _, err = microseg(capsys, *args)
        errors = error_lines(err)
        assert rc == code and len(errors) == 1, (args, rc, err)
        assert text in errors[0], (args, errors[0])
    assert not list(tmp_path.glob("o/*_candidates*"))  # nothing written by a refused call
