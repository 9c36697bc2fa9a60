"""CLI data safety: an output never replaces an input, an input's sidecar or another output.

Each case used to exit 0 and silently destroy data; now it is refused with one
error line (``predict`` instead gives colliding outputs distinct names), and the
inputs are byte-identical afterwards. Also: files written atomically get the
usual ``0o666 & ~umask`` mode, not ``mkstemp``'s ``0o600``.
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import tifffile

from napari_microseg.core.atomic import atomic_path, write_json_atomic
from napari_microseg.core.coco import write_coco
from napari_microseg.core.output_paths import check_outputs, unique_stems


def _snapshot(*paths):
    return {str(p): p.read_bytes() for p in paths}


def _unchanged(snap):
    for p, data in snap.items():
        with open(p, "rb") as f:
            assert f.read() == data, f"{p} changed"


def test_measure_summary_same_as_out_is_refused(cli, pair, tmp_path):
    ip, lp, side = pair
    snap = _snapshot(ip, lp, side)
    o = tmp_path / "o.csv"
    r = cli("measure", ip, lp, "--out", o, "--summary", o)
    assert r.rc == 1
    assert "--summary" in r.error_line() and "same file" in r.error_line()
    assert not o.exists()
    _unchanged(snap)


def test_measure_out_onto_the_labels_sidecar_is_refused(cli, pair, tmp_path):
    ip, lp, side = pair
    snap = _snapshot(ip, lp, side)
    r = cli("measure", ip, lp, "--out", side)
    assert r.rc == 1 and "sidecar" in r.error_line()
    _unchanged(snap)


def test_measure_out_onto_the_image_is_refused(cli, pair, tmp_path):
    ip, lp, side = pair
    snap = _snapshot(ip, lp, side)
    r = cli("measure", ip, lp, "--out", tmp_path / "o.csv", "--summary", tmp_path / "img.tif")
    assert r.rc == 1 and "the input" in r.error_line()
    _unchanged(snap)


def test_labels_to_coco_onto_own_sidecar_is_refused(cli, pair):
    _, lp, side = pair
    snap = _snapshot(lp, side)
    r = cli("labels", lp, side)
    assert r.rc == 1 and "sidecar" in r.error_line()
    _unchanged(snap)


def test_labels_from_coco_onto_the_micrograph_is_refused(cli, pair, tmp_path):
    ip, lp, side = pair
    lab = tifffile.imread(lp)
    cj = write_coco(tmp_path / "coco.json", lab, image_name="img.tif")
    snap = _snapshot(ip, cj)
    r = cli("labels", cj, ip)
    assert r.rc == 1 and "not a labels file" in r.error_line()
    _unchanged(snap)
    assert not (tmp_path / "img.labels.json").exists()


def test_labels_from_coco_may_replace_an_earlier_conversion(cli, pair, tmp_path):
    _, lp, _ = pair
    cj = write_coco(tmp_path / "coco.json", tifffile.imread(lp), image_name="X.tif")
    dst = tmp_path / "back.tif"
    assert cli("labels", cj, dst).rc == 0
    r = cli("labels", cj, dst)  # it has its sidecar: a labels file we wrote, fine to replace
    assert r.rc == 0 and "3 instances" in r.out


def test_check_outputs_and_unique_stems():
    with pytest.raises(Exception, match="sidecar"):
        check_outputs(["a/X.tif"], [("--out", "a/X.labels.json")])
    with pytest.raises(Exception, match="same file"):
        check_outputs([], [("--out", "o.csv"), ("--summary", "./o.csv")])
    check_outputs(["a/X.tif"], [("--out", "a/Y.csv"), ("--summary", None)])
    assert unique_stems(["a/x.tif", "b/x.tif", "good.tif", "good.png", "c.tif"]) == [
        "a_x", "b_x", "good", "good_2", "c"]


# --- predict: same stems get distinct outputs ------------------------------------------------

CLASSES = [{"id": 2, "name": "<100> loop", "color": "#3cb44b"}]


@pytest.fixture
def all_loop_model(tmp_path, monkeypatch, torch_one_thread):
    """A registered model whose output says "loop" everywhere (head zeroed, bias 3)."""
    import torch

    from napari_microseg.core.models import ModelCard, build_model, register_model

    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(name="tiny-seg", architecture="defectsegnet", activation="sigmoid",
                     params={"growth": 2, "depth": 2, "layers_per_block": 1}, classes=CLASSES,
                     tile=32, halo=4, version="0.1")
    net = build_model(card)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(3.0)
    register_model(net, card)
    return card


def test_predict_same_stem_inputs_get_distinct_outputs(cli, all_loop_model, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = tmp_path / "a" / "x.tif", tmp_path / "b" / "x.tif"
    tifffile.imwrite(a, np.zeros((40, 40), np.uint8))
    tifffile.imwrite(b, np.zeros((48, 40), np.uint8))
    png = tmp_path / "a" / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((36, 40), np.uint8)).save(png)
    snap = _snapshot(a, b, png)
    out = tmp_path / "out"
    r = cli("predict", "--model", "tiny-seg", a, b, png, "--out", out, "--probabilities")
    assert r.rc == 0, r.err
    labels = sorted(p.name for p in out.glob("*_labels.tif"))
    assert len(labels) == 3, labels
    shapes = sorted(tifffile.imread(out / n).shape for n in labels)
    assert shapes == [(36, 40), (40, 40), (48, 40)]
    assert len(list(out.glob("*_prob.tif"))) == 3
    assert "same name" in r.out
    _unchanged(snap)


def test_predict_out_is_a_file_is_one_line(cli, all_loop_model, tmp_path):
    a = tmp_path / "x.tif"
    tifffile.imwrite(a, np.zeros((40, 40), np.uint8))
    f = tmp_path / "file"
    f.write_text("keep")
    r = cli("predict", "--model", "tiny-seg", a, "--out", f)
    assert r.rc == 1 and "not a folder" in r.error_line()
    assert f.read_text() == "keep"


# --- atomic writes: final file mode ------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_get_the_umask_mode(tmp_path, mask):
    old = os.umask(mask)
    try:
        p = write_json_atomic(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "b.tif") as tmp:
            tifffile.imwrite(tmp, np.zeros((4, 4), np.uint8))
    finally:
        os.umask(old)
    for q in (p, tmp_path / "b.tif"):
        assert stat.S_IMODE(q.stat().st_mode) == 0o666 & ~mask


def test_atomic_rewrite_keeps_the_existing_mode(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("{}")
    os.chmod(p, 0o640)
    write_json_atomic(p, {"x": 2})
    assert stat.S_IMODE(p.stat().st_mode) == 0o640 and json.loads(p.read_text()) == {"x": 2}


def test_cli_outputs_are_not_private(cli, pair, tmp_path):
    ip, lp, _ = pair
    old = os.umask(0o022)
    try:
        assert cli("labels", lp, tmp_path / "c.json").rc == 0
        assert cli("synth", "--size", "32", "32", "--out", tmp_path / "s").rc == 0
    finally:
        os.umask(old)
    for p in [tmp_path / "c.json", *(tmp_path / "s").iterdir()]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_predict_read_only_out_is_one_line_before_any_work(cli, all_loop_model, tmp_path, monkeypatch):
    import errno
    import tempfile

    a = tmp_path / "x.tif"
    tifffile.imwrite(a, np.zeros((40, 40), np.uint8))

    def refuse(*args, **kw):
        raise OSError(errno.EROFS, "Read-only file system", f"{kw.get('dir')}/.x")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "ro"
    r = cli("predict", "--model", "tiny-seg", a, "--out", out)
    assert r.rc == 1
    line = r.error_line()
    assert line.startswith("microseg predict: error: ") and str(out) in line and "read-only" in line
    assert r.out == ""  # nothing predicted
