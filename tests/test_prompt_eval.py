"""Simulated-user evaluation of prompt backends, the baselines and ``microseg prompt-eval``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_microseg.cli import main
from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.prompting.base import Prediction, PromptBackend, Prompts
from napari_microseg.core.prompting.baselines import OracleBackend, OtsuFloodBackend
from napari_microseg.core.prompting.evaluation import (
    Sample,
    box_iou,
    evaluate_boxes,
    evaluate_clicks,
    interior_point,
    load_creme,
    mask_bbox,
    next_click,
    noc,
    plot_curves,
    simulate_object,
)
from napari_microseg.core.prompting.registry import make_backend


def disc(shape, centre, radius):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2


def synthetic(seed=0, shape=(128, 128), discs=(((30, 30), 10), ((80, 90), 14), ((95, 25), 8))):
    """Dark discs on a bright noisy background: (uint8 image, instance labels)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for k, (c, r) in enumerate(discs, 1):
        labels[disc(shape, c, r)] = k
    img = np.where(labels > 0, 0.3, 0.7) + rng.normal(0, 0.08, shape)
    return np.clip(img * 255, 0, 255).astype(np.uint8), labels


class FixedBackend(PromptBackend):
    """Returns ``masks[i]`` on the i-th prediction (the last one after that)."""

    name = "fixed"

    def __init__(self, masks):
        self.masks = list(masks)
        self.calls: list[Prompts] = []

    def set_image(self, image, *, progress=None):
        self.calls.clear()

    def predict(self, prompts):
        i = len(self.calls)
        self.calls.append(prompts)
        return Prediction(self.masks[min(i, len(self.masks) - 1)], 1.0, logits=i)


class ShiftedOracle(OracleBackend):
    """The true instance shifted ``k`` px to the right."""

    name = "shifted"

    def __init__(self, labels, k):
        super().__init__(labels)
        self.k = k

    def predict(self, prompts):
        m = super().predict(prompts).mask
        return Prediction(np.roll(m, self.k, axis=1))


# --- the simulated user ------------------------------------------------------------------


def test_interior_point_of_ring_lies_on_the_ring():
    ring = disc((64, 64), (32, 32), 16) & ~disc((64, 64), (32, 32), 10)
    r, c = interior_point(ring)
    assert ring[r, c]
    assert not ring[32, 32]  # the centre of mass is not on the object
    assert interior_point(disc((64, 64), (20, 41), 7)) == (20, 41)


def test_interior_point_counts_the_image_edge_as_border():
    m = np.zeros((20, 40), bool)
    m[:, :10] = True  # touches the left, top and bottom edges
    r, c = interior_point(m)
    assert c in (4, 5) and 4 <= r <= 15  # not c == 0, as without a border at the edge


def test_corrective_click_goes_to_largest_error_with_right_sign():
    gt = np.zeros((60, 60), bool)
    gt[10:30, 10:30] = True
    pred = gt.copy()
    pred[10:16, 10:16] = False  # 36 px missed
    pred[40:50, 40:50] = True  # 100 px spurious
    (r, c), label = next_click(pred, gt)
    assert label == 0 and 40 <= r < 50 and 40 <= c < 50
    pred[40:50, 40:50] = False
    pred[44:46, 44:46] = True  # now 4 px spurious, 36 px missed
    (r, c), label = next_click(pred, gt)
    assert label == 1 and 10 <= r < 16 and 10 <= c < 16 and gt[r, c] and not pred[r, c]
    assert next_click(gt, gt) is None


def test_noc_convention():
    assert noc([0.5, 0.86, 0.95], 0.85) == 2
    assert noc([0.5, 0.86, 0.95], 0.90) == 3
    assert noc([0.91, 0.2], 0.90) == 1
    assert noc([0.5, 0.6, 0.7], 0.85) == 3  # never reached: the maximum number of clicks
    assert noc([0.5, 0.6, 0.7], 0.85, max_clicks=9) == 9


def test_box_iou_by_hand():
    assert box_iou((0, 0, 9, 9), (0, 5, 9, 14)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert box_iou((0, 0, 4, 4), (10, 10, 12, 12)) == 0.0
    assert box_iou(None, (0, 0, 1, 1)) == 0.0
    assert mask_bbox(disc((40, 40), (20, 15), 5)) == (15, 10, 25, 20)


def test_oracle_scores_one_at_click_one_on_synthetic():
    img, lab = synthetic()
    for mode in ("point", "box"):
        r = evaluate_clicks(lambda s: OracleBackend(s.target), [Sample("a", img, lab)], mode)
        assert r["n_objects"] == 3 and r["backend"] == "oracle"
        assert r["mean_iou"] == [1.0] * 9
        assert r["noc85"] == r["noc90"] == 1 and r["failures90"] == 0
    json.dumps(r)  # JSON-ready


def test_empty_backend_curve_and_clicks():
    img, lab = synthetic()
    be = FixedBackend([np.zeros(lab.shape, bool)])
    r = evaluate_clicks(be, [Sample("a", img, lab)], n_corrective=3)
    assert r["mean_iou"] == [0.0] * 4
    assert r["noc85"] == r["noc90"] == 4 and r["failures85"] == 3
    # every click of the last object is positive, at its interior point (nothing changes)
    assert len(be.calls) == 12  # 3 objects x 4 clicks
    last = be.calls[-4:]
    assert [p.labels.tolist() for p in last] == [[1], [1, 1], [1, 1, 1], [1, 1, 1, 1]]
    assert tuple(last[0].points[0]) == interior_point(lab == 3)


def test_shifted_backend_constant_curve_by_hand():
    lab = np.zeros((100, 100), np.int32)
    lab[20:40, 20:40] = 1  # 20 x 20 square
    img = np.full(lab.shape, 200, np.uint8)
    be = lambda s: ShiftedOracle(s.target, 5)  # noqa: E731
    r = evaluate_clicks(be, [Sample("sq", img, lab)], n_corrective=4)
    assert r["mean_iou"] == pytest.approx([15 / 25] * 5, abs=1e-4)
    assert r["noc85"] == 5


def test_logits_fed_back_and_noc_from_harness():
    gt = disc((80, 80), (40, 40), 12)
    empty = np.zeros_like(gt)
    be = FixedBackend([empty, empty, gt])
    ious = simulate_object(be, gt, "point", n_corrective=5)
    assert ious == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert noc(ious, 0.85) == 3
    assert len(be.calls) == 3  # exact after click 3: nothing left to correct
    assert be.calls[0].mask_logits is None
    assert [p.mask_logits for p in be.calls[1:]] == [0, 1]


def test_box_mode_first_prompt_is_the_bbox():
    gt = disc((80, 80), (30, 50), 9)
    be = FixedBackend([gt])
    simulate_object(be, gt, "box", n_corrective=2)
    assert be.calls[0].box.tolist() == [21, 41, 39, 59] and len(be.calls[0].points) == 0


def test_max_objects_and_min_size_are_seeded():
    img, lab = synthetic()
    oracle = lambda s: OracleBackend(s.target)  # noqa: E731
    a = evaluate_clicks(oracle, [Sample("a", img, lab)], n_corrective=0, max_objects=2, seed=3)
    b = evaluate_clicks(oracle, [Sample("a", img, lab)], n_corrective=0, max_objects=2, seed=3)
    assert a["n_objects"] == 2 and [o["label"] for o in a["objects"]] == [
        o["label"] for o in b["objects"]
    ]
    small = evaluate_clicks(oracle, [Sample("a", img, lab)], n_corrective=0, min_size=250)
    assert sorted(o["label"] for o in small["objects"]) == [1, 2]  # the r=8 disc is 197 px


class ShrinkBox(PromptBackend):
    """Fills the prompt box shrunk by one pixel on every side."""

    name = "shrink"

    def set_image(self, image, *, progress=None):
        self.shape = image.shape

    def predict(self, prompts):
        m = np.zeros(self.shape, bool)
        r0, c0, r1, c1 = prompts.box.astype(int)
        m[r0 + 1 : r1, c0 + 1 : c1] = True
        return Prediction(m)


def test_box_only_scoring_by_hand():
    img = np.zeros((50, 50), np.uint8)
    boxes = np.array([[0, 0, 9, 9], [20, 20, 39, 29]], float)
    r = evaluate_boxes(ShrinkBox(), [Sample("b", img, boxes)])
    # 8x8 of 10x10 and 18x8 of 20x10
    assert [o["box_iou"] for o in r["objects"]] == pytest.approx([0.64, 144 / 200])
    assert r["mean_box_iou"] == pytest.approx((0.64 + 0.72) / 2, abs=1e-4)
    assert r["mode"] == "box-bbox" and r["n_objects"] == 2


# --- the baselines -----------------------------------------------------------------------


def test_otsu_flood_finds_dark_disc_from_one_click():
    img, lab = synthetic(seed=1)
    be = OtsuFloodBackend()
    be.set_image(img.astype(np.float32) / 255)
    for k in (1, 2, 3):
        gt = lab == k
        m = be.predict(Prompts([interior_point(gt)], [1])).mask
        assert m.shape == gt.shape
        assert (m & gt).sum() / (m | gt).sum() > 0.8


def test_otsu_flood_bright_object_and_box():
    img, lab = synthetic(seed=2)
    be = OtsuFloodBackend()
    be.set_image(1 - img.astype(np.float32) / 255)  # bright discs on dark
    gt = lab == 2
    for prompts in (Prompts([interior_point(gt)], [1]), Prompts(box=mask_bbox(gt))):
        m = be.predict(prompts).mask
        assert (m & gt).sum() / (m | gt).sum() > 0.8


def test_otsu_flood_respects_a_negative_click():
    shape = (100, 100)
    a, b = disc(shape, (50, 25), 12), disc(shape, (50, 75), 12)
    bridge = np.zeros(shape, bool)
    bridge[48:53, 25:75] = True
    rng = np.random.default_rng(0)
    img = np.where(a | b | bridge, 0.3, 0.7) + rng.normal(0, 0.05, shape)
    be = OtsuFloodBackend(crop=128)
    be.set_image(img.astype(np.float32))
    both = be.predict(Prompts([[50, 25]], [1])).mask
    assert both[50, 75] and both[50, 25]  # flooded through the bridge
    only_a = be.predict(Prompts([[50, 25], [50, 75]], [1, 0])).mask
    assert only_a[50, 25] and not only_a[50, 75]
    assert not (only_a & b).any()
    assert (only_a & a).sum() / a.sum() > 0.9


def test_registry():
    assert make_backend("otsu-flood").name == "otsu-flood"
    assert make_backend("oracle", labels=np.zeros((4, 4), int)).name == "oracle"
    assert make_backend("microseg-promptable").name == "microseg-promptable"  # shipped model
    with pytest.raises(MicrosegError, match="Unknown prompt backend"):
        make_backend("nope")
    with pytest.raises(MicrosegError, match="labels"):
        make_backend("oracle")


def test_plot_curves_writes_png(tmp_path):
    img, lab = synthetic()
    r = evaluate_clicks(lambda s: OracleBackend(s.target), [Sample("a", img, lab)], n_corrective=2)
    plot_curves([r, r], tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as im:
        assert im.format == "PNG" and im.size[0] > 100


# --- the command line --------------------------------------------------------------------


def write_mask_dataset(root, n=2):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(1, n + 1):
        img, lab = synthetic(seed=i)
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(((lab > 0) * 255).astype(np.uint8)).save(root / "masks" / f"{i}.png")
    return root


def test_cli_end_to_end_on_synthetic_mask_dataset(tmp_path, capsys):
    root = write_mask_dataset(tmp_path / "ds")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["prompt-eval", str(root), "--backend", "otsu-flood", "oracle", "--clicks", "2"]
    assert main(argv + ["--json", str(out), "--plot", str(png)]) == 0
    res = json.loads(out.read_text())["results"]
    assert [r["backend"] for r in res] == ["otsu-flood", "oracle"]
    assert res[1]["mean_iou"] == [1.0, 1.0, 1.0] and res[1]["n_objects"] == 6
    assert res[0]["mean_iou"][0] > 0.8  # clean discs: the baseline does well
    assert png.stat().st_size > 1000
    assert "NoC@85" in capsys.readouterr().out
    assert main(["prompt-eval", str(root), "--backend", "nope"]) == 1
    assert main(["prompt-eval", str(root), "--images", "7"]) == 1


def test_cli_size_prior(tmp_path, capsys):
    """--size-prior K: K objects per image committed, the rest scored without and with the hint."""
    root = tmp_path / "sp"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    discs = tuple(((20 + 40 * (i // 4), 20 + 40 * (i % 4)), 6 + i % 3) for i in range(12))
    img, lab = synthetic(seed=3, shape=(160, 160), discs=discs)
    Image.fromarray(img).save(root / "images" / "a.png")
    Image.fromarray(((lab > 0) * 255).astype(np.uint8)).save(root / "masks" / "a.png")
    out = tmp_path / "sp.json"
    argv = ["prompt-eval", str(root), "--backend", "microseg-promptable", "otsu-flood",
            "--clicks", "1", "--size-prior", "5", "--json", str(out)]
    assert main(argv) == 0
    res = json.loads(out.read_text())["results"]
    assert [r["backend"] for r in res] == ["microseg-promptable", "otsu-flood"]
    for r in res:
        assert r["k"] == 5 and r["with"]["n_objects"] == r["without"]["n_objects"] == 7
        assert r["hints"]["a"] > 0 and len(r["with"]["mean_iou"]) == 2
    assert res[1]["with"]["mean_iou"] == res[1]["without"]["mean_iou"]  # Otsu-flood ignores it
    assert "with the size of 5 committed objects" in capsys.readouterr().out
    assert main(["prompt-eval", str(root), "--size-prior", "4"]) == 1  # too few for a hint


def test_cli_box_dataset(tmp_path):
    root = tmp_path / "bx"
    (root / "images").mkdir(parents=True)
    (root / "boxes").mkdir()
    img, lab = synthetic()
    Image.fromarray(img).save(root / "images" / "a.jpg")
    lines = [" ".join(str(v) for v in mask_bbox(lab == k)) for k in (1, 2, 3)]
    (root / "boxes" / "a.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "b.json"
    for mode in ("box", "point"):
        assert main(["prompt-eval", str(root), "--mode", mode, "--json", str(out)]) == 0
        r = json.loads(out.read_text())["results"][0]
        assert r["mode"] == f"{mode}-bbox" and r["n_objects"] == 3
        assert r["mean_box_iou"] > 0.7
    assert main(["prompt-eval", str(root), "--backend", "oracle"]) == 1


# --- real data ---------------------------------------------------------------------------


def test_oracle_on_creme_and_loader(creme):
    samples = load_creme(creme)
    assert [s.name for s in samples] == [str(i) for i in range(1, 13)]
    assert sum(int(s.target.max()) for s in samples) == 124  # 8-connected components
    r = evaluate_clicks(lambda s: OracleBackend(s.target), samples, n_corrective=1)
    assert r["n_objects"] == 124 and r["mean_iou"] == [1.0, 1.0]


def test_cli_on_creme(creme, tmp_path):
    out = tmp_path / "c.json"
    argv = ["prompt-eval", str(creme), "--backend", "oracle", "otsu-flood", "--images", "1", "2"]
    assert main(argv + ["--max-objects", "3", "--clicks", "2", "--json", str(out)]) == 0
    oracle, otsu = json.loads(out.read_text())["results"]
    assert oracle["n_objects"] == otsu["n_objects"] == 6
    assert oracle["mean_iou"] == [1.0, 1.0, 1.0]
    assert 0.0 < otsu["mean_iou"][0] < 0.9
