"""CLI errors and warnings are one line each, never a traceback; inputs stay untouched.

Covers: OS errors (read-only file system, disk full, permission denied, a file
in the way of a folder and vice versa) for every command that writes; missing
inputs; ``null`` or binary labels sidecars; negative labels; pixel-size
disagreements (warned); ``evaluate --probability`` with predict's own class
planes, non-float or out-of-range maps; the foreground-IoU fallback of
``evaluate`` when the ground truth has no classes.
"""

from __future__ import annotations

import errno
import json
import tempfile

import numpy as np
import pytest
import tifffile

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.labels_io import write_labels


def _snapshot(*paths):
    return {str(p): p.read_bytes() for p in paths}


def _unchanged(snap):
    for p, data in snap.items():
        with open(p, "rb") as f:
            assert f.read() == data, f"{p} changed"


def _warnings(err: str, command: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith(f"microseg {command}: warning: ")]


# --- OS errors while writing -------------------------------------------------------------------

@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.ENOSPC, "no space"),
                                         (errno.EACCES, "permission denied")])
@pytest.mark.parametrize("command", ["measure", "labels", "synth"])
def test_write_failures_are_one_line_naming_the_output(cli, pair, tmp_path, monkeypatch, code,
                                                        words, command):
    ip, lp, side = pair
    snap = _snapshot(ip, lp, side)

    def refuse(*a, **k):
        raise OSError(code, "simulated", f"{k.get('dir', '?')}/.tmp.part")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = {"measure": tmp_path / "o.csv", "labels": tmp_path / "o.json",
              "synth": tmp_path / "s"}[command]
    args = {"measure": ("measure", ip, lp, "--out", target),
            "labels": ("labels", lp, target),
            "synth": ("synth", "--size", "32", "32", "--out", target)}[command]
    r = cli(*args)
    assert r.rc == 1
    line = r.error_line()
    assert line.startswith(f"microseg {command}: error: ") and words in line.lower()
    assert str(target) in line and ".part" not in line
    _unchanged(snap)


def test_prompt_eval_json_into_read_only_place_is_one_line(cli, tmp_path, monkeypatch):
    from napari_microseg.core.synth import generate

    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "masks").mkdir()
    s = generate("tem-loops", shape=(48, 48), seed=0, n_objects=2)
    tifffile.imwrite(ds / "images" / "a.tif", s.image)
    tifffile.imwrite(ds / "masks" / "a.tif", s.labels.astype(np.uint16))

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", "x")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    r = cli("prompt-eval", ds, "--clicks", "1", "--json", tmp_path / "r.json")
    assert r.rc == 1 and "read-only" in r.error_line() and "r.json" in r.error_line()


@pytest.mark.parametrize("command", ["measure", "labels", "prompt-eval", "recipe"])
def test_out_under_a_file_is_one_line(cli, pair, tmp_path, command):
    ip, lp, side = pair
    blocker = tmp_path / "blocker"
    blocker.write_text("keep")
    snap = _snapshot(ip, lp, side, blocker)
    out = blocker / "o.json"
    args = {"measure": ("measure", ip, lp, "--out", out),
            "labels": ("labels", lp, out),
            "prompt-eval": ("prompt-eval", tmp_path, "--json", out),
            "recipe": ("recipe", "no-such-model", "--out", out)}[command]
    r = cli(*args)
    assert r.rc == 1 and "is a file, not a folder" in r.error_line()
    _unchanged(snap)


@pytest.mark.parametrize("command", ["measure", "labels", "prompt-eval", "recipe"])
def test_out_that_is_a_folder_is_one_line(cli, pair, tmp_path, command):
    ip, lp, _ = pair
    folder = tmp_path / "o.json"
    folder.mkdir()
    args = {"measure": ("measure", ip, lp, "--out", folder),
            "labels": ("labels", lp, folder),
            "prompt-eval": ("prompt-eval", tmp_path, "--json", folder),
            "recipe": ("recipe", "no-such-model", "--out", folder)}[command]
    r = cli(*args)
    assert r.rc == 1 and "is a folder" in r.error_line()
    assert folder.is_dir() and not any(folder.iterdir())


def test_synth_out_that_is_a_file_is_one_line(cli, tmp_path):
    f = tmp_path / "f"
    f.write_text("keep")
    r = cli("synth", "--size", "32", "32", "--out", f)
    assert r.rc == 1 and "not a folder" in r.error_line() and f.read_text() == "keep"


def test_any_os_error_is_one_line_and_interrupt_is_kept(cli, pair, monkeypatch):
    import napari_microseg.cli.info as info

    ip = pair[0]

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(ip))

    monkeypatch.setattr(info, "read_micrograph", denied)
    r = cli("info", ip)
    assert r.rc == 1 and r.error_line() == f"microseg info: error: {ip}: Permission denied"

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(info, "read_micrograph", interrupt)
    r = cli("info", ip)
    assert r.rc == 130 and "interrupted" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("command", ["info", "measure", "evaluate", "labels"])
def test_missing_input_is_one_line(cli, pair, tmp_path, command):
    ip, lp, _ = pair
    nope = tmp_path / "nope.tif"
    args = {"info": ("info", nope), "measure": ("measure", ip, nope, "--out", tmp_path / "o.csv"),
            "evaluate": ("evaluate", lp, nope), "labels": ("labels", nope, tmp_path / "o.json")}
    r = cli(*args[command])
    assert r.rc == 1 and "nope.tif" in r.error_line()


# --- hostile sidecars and labels ---------------------------------------------------------------

@pytest.mark.parametrize("content", [b"null", b"[1, 2]", bytes(range(256)) * 4, b"\xff\xfe{"],
                         ids=["null", "list", "binary", "bad-utf8"])
@pytest.mark.parametrize("command", ["measure", "evaluate", "labels"])
def test_null_or_binary_sidecar_is_one_line(cli, pair, tmp_path, content, command):
    ip, lp, side = pair
    side.write_bytes(content)
    snap = _snapshot(ip, lp, side)
    args = {"measure": ("measure", ip, lp, "--out", tmp_path / "o.csv"),
            "evaluate": ("evaluate", lp, lp), "labels": ("labels", lp, tmp_path / "o.json")}
    r = cli(*args[command])
    assert r.rc == 1 and side.name in r.error_line()
    _unchanged(snap)


def test_negative_labels_are_refused_not_written_empty(cli, tmp_path):
    lab = np.zeros((40, 40), np.int16)
    for k in range(4):
        lab[2 + 9 * k: 8 + 9 * k, 5:12] = -(k + 1)
    lab[30:35, 30:35] = 7
    src = tmp_path / "neg.tif"
    tifffile.imwrite(src, lab)
    r = cli("labels", src, tmp_path / "out.json")
    assert r.rc == 1 and "negative" in r.error_line()
    assert not (tmp_path / "out.json").exists()


def test_labels_to_coco_count_is_what_is_written(cli, pair, tmp_path):
    _, lp, _ = pair
    r = cli("labels", lp, tmp_path / "c.json")
    coco = json.loads((tmp_path / "c.json").read_text())
    assert r.rc == 0 and f"{len(coco['annotations'])} instances" in r.out
    assert len(coco["annotations"]) == 3


def test_pixel_size_disagreement_is_warned_once(cli, tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (64, 64)).astype(np.uint8)
    ip = tmp_path / "cal.tif"
    tifffile.imwrite(ip, img, imagej=True, resolution=(1 / 2.0, 1 / 2.0), metadata={"unit": "nm"})
    lab = np.zeros(img.shape, np.uint16)
    lab[10:20, 10:20] = 1
    out = write_labels(tmp_path / "l.tif", lab, pixel_size=PixelSize.isotropic(0.5, "user"))
    r = cli("measure", ip, out["labels"], "--out", tmp_path / "o.csv")
    assert r.rc == 0, r.err
    w = _warnings(r.err, "measure")
    assert len(w) == 1 and "2 nm/px" in w[0] and "0.5 nm/px" in w[0] and "using 2 nm/px" in w[0]
    assert "Warning" not in r.err and "warnings.warn" not in r.err


# --- evaluate ----------------------------------------------------------------------------------

@pytest.fixture
def gt_pred(tmp_path):
    gt = np.zeros((48, 48), np.uint16)
    gt[5:15, 5:15], gt[25:40, 25:40] = 1, 2
    g = write_labels(tmp_path / "gt.tif", gt)["labels"]  # no classes
    p = write_labels(tmp_path / "pred.tif", gt, instance_classes={1: 1, 2: 1})["labels"]
    return g, p, gt


def test_evaluate_falls_back_to_foreground_iou_without_gt_classes(cli, gt_pred):
    g, p, _ = gt_pred
    r = cli("evaluate", p, g, "--json")
    assert r.rc == 0, r.err
    rep = json.loads(r.out)
    assert rep["pixel"]["miou"] == pytest.approx(1.0)
    assert rep["pixel"]["miou_basis"].startswith("foreground")
    w = _warnings(r.err, "evaluate")
    assert len(w) == 1 and "foreground IoU" in w[0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_evaluate_accepts_predicts_class_planes(cli, gt_pred, tmp_path):
    g, p, gt = gt_pred
    prob = np.zeros((3, 48, 48), np.float32)
    prob[0][gt > 0] = 0.9
    prob[1] = 0.05
    pp = tmp_path / "pred_prob.tif"
    # as predict --probabilities writes it
    tifffile.imwrite(pp, prob, compression="zlib", metadata={"axes": "CYX", "classes": ["a", "b", "c"]})
    snap = _snapshot(pp)
    r = cli("evaluate", p, g, "--probability", pp, "--json")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["pixel"]["auprc"] == pytest.approx(1.0)
    _unchanged(snap)


@pytest.mark.parametrize("bad, words", [
    (np.full((48, 48), 200, np.uint8), "uint8"),
    (np.full((48, 48), 3.5, np.float32), "outside [0, 1]"),
    (np.full((48, 48), np.nan, np.float32), "nan"),
    (np.zeros((40, 40), np.float32), "shape"),
])
def test_evaluate_refuses_unusable_probability_maps(cli, gt_pred, tmp_path, bad, words):
    g, p, _ = gt_pred
    pp = tmp_path / "prob.tif"
    tifffile.imwrite(pp, bad)
    r = cli("evaluate", p, g, "--probability", pp)
    assert r.rc == 1 and words in r.error_line().lower()


def test_evaluate_warns_on_a_constant_probability_map(cli, gt_pred, tmp_path):
    g, p, _ = gt_pred
    pp = tmp_path / "prob.tif"
    tifffile.imwrite(pp, np.full((48, 48), 0.5, np.float32))
    r = cli("evaluate", p, g, "--probability", pp)
    assert r.rc == 0, r.err
    assert any("constant" in w for w in _warnings(r.err, "evaluate"))


@pytest.mark.parametrize("content", [b"null", b"42", b'{"instance_classes": {"a": 1}}', b"\xff\x00"],
                         ids=["null", "number", "bad-key", "binary"])
def test_malformed_class_file_is_one_line(cli, pair, tmp_path, content):
    ip, lp, side = pair
    cf = tmp_path / "classes.json"
    cf.write_bytes(content)
    snap = _snapshot(ip, lp, side, cf)
    r = cli("measure", ip, lp, "--out", tmp_path / "o.csv", "--classes", cf)
    assert r.rc == 1 and "classes.json" in r.error_line()
    _unchanged(snap)
