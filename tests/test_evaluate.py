"""Instance matching, detection and pixel metrics against hand-computed values."""

import json

import numpy as np
import pytest
from skimage.draw import disk

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.errors import LabelsError
from napari_microseg.core.evaluate import (
    average_precision,
    evaluate_image,
    evaluate_images,
    match_instances,
    overlaps,
    relative_domain_transferability,
    report_to_json,
)

R = 10
# ten discs; 5 and 6 are 24 px apart so a bridge can merge them
CENTRES = {
    1: (30, 30),
    2: (30, 80),
    3: (30, 130),
    4: (30, 180),
    5: (90, 30),
    6: (90, 54),
    7: (90, 130),
    8: (90, 180),
    9: (150, 30),
    10: (150, 130),
}


def _gt(shape=(200, 300)):
    lab = np.zeros(shape, np.int32)
    for k, c in CENTRES.items():
        lab[disk(c, R, shape=shape)] = k
    return lab


def _pred():
    shape = (200, 300)
    lab = np.zeros(shape, np.int32)
    for k in (7, 8, 9, 10):  # unchanged, renumbered
        lab[disk(CENTRES[k], R, shape=shape)] = 100 + k
    lab[disk((33, 131), R, shape=shape)] = 3  # 3 shifted a little: still a match
    lab[disk((170, 260), R, shape=shape)] = 4  # 4 moved far away: FP, and GT 4 is a FN
    merged = np.zeros(shape, bool)  # 5 and 6 merged into one prediction
    merged[disk(CENTRES[5], R, shape=shape)] = True
    merged[disk(CENTRES[6], R, shape=shape)] = True
    merged[86:95, 30:55] = True
    lab[merged] = 56
    lab[disk((150, 220), 6, shape=shape)] = 77  # spurious: FP
    return lab  # GT 1 and 2 removed: FN


def test_self_evaluation_is_perfect():
    gt = _gt()
    classes = {k: 1 + k % 2 for k in CENTRES}
    rep = evaluate_image(
        gt,
        gt,
        pred_classes=classes,
        true_classes=classes,
        pixel_size=PixelSize.isotropic(0.5, "user"),
    )
    d = rep["detection"]
    assert (d["precision"], d["recall"], d["f1"]) == (1.0, 1.0, 1.0)
    assert d["tp"] == 10 and d["fp"] == 0 and d["fn"] == 0
    for entry in [*rep["per_class"].values(), rep["overall"]]:
        assert entry["size_error_pct"] == 0.0
        assert entry["heywood_error_pct"] == 0.0
        assert entry["density_error_pct"] == 0.0
    assert all(v["f1"] == 1.0 for v in rep["per_class"].values())
    assert rep["pixel"]["miou"] == 1.0 and rep["pixel"]["dice"] == 1.0
    assert rep["iou_at"] == {"50": 1.0, "75": 1.0, "90": 1.0, "95": 1.0}
    assert rep["unit"] == "nm"


def test_removed_shifted_merged_by_hand():
    gt, pred = _gt(), _pred()
    m = match_instances(pred, gt, 0.3)
    # TP: 3, one of 5/6, 7, 8, 9, 10 -> 6; predictions: 3, 4, 56, 77, 107..110 -> 8
    assert (m.tp, m.fp, m.fn) == (6, 2, 4)
    assert set(m.unmatched_pred) == {4, 77}
    assert {1, 2, 4} <= set(m.unmatched_true) and len({5, 6} & set(m.unmatched_true)) == 1
    assert m.precision == pytest.approx(6 / 8)
    assert m.recall == pytest.approx(6 / 10)
    assert m.f1 == pytest.approx(2 * 6 / (8 + 10))
    rep = evaluate_image(pred, gt)
    assert rep["detection"]["f1"] == pytest.approx(2 / 3)
    # overall density error: 8 predicted objects vs 10 true over the same area
    assert rep["overall"]["density_error_pct"] == pytest.approx(-20.0)


def test_greedy_prefers_higher_iou_and_one_to_one():
    gt = np.zeros((40, 60), np.int32)
    gt[10:20, 10:20] = 1
    pred = np.zeros_like(gt)
    pred[10:20, 10:19] = 5  # IoU 0.9 with GT 1
    pred[10:20, 19:21] = 6  # IoU 0.1 + a bit: also overlaps GT 1
    m = match_instances(pred, gt, 0.05)
    assert list(m.matched_true) == [1] and list(m.matched_pred) == [5]
    assert m.matched_iou[0] == pytest.approx(0.9)
    assert m.fp == 1


def test_overlaps_match_brute_force():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, (50, 70))
    b = rng.integers(0, 5, (50, 70))
    ov = overlaps(b, a)
    for i, j, inter, iou in zip(ov.pair_true, ov.pair_pred, ov.intersection, ov.iou, strict=True):
        ta, pb = a == ov.true_ids[i], b == ov.pred_ids[j]
        assert inter == np.count_nonzero(ta & pb)
        assert iou == pytest.approx(np.count_nonzero(ta & pb) / np.count_nonzero(ta | pb))
    n_pairs = sum(np.any((a == x) & (b == y)) for x in range(1, 6) for y in range(1, 5))
    assert len(ov.iou) == n_pairs
    with pytest.raises(LabelsError):
        overlaps(a[:10], a)


def test_type_f1_and_size_errors_per_class():
    gt = np.zeros((60, 100), np.int32)
    gt[5:15, 5:15] = 1  # 10 x 10, class 1
    gt[20:40, 20:40] = 2  # 20 x 20, class 1
    gt[5:15, 60:70] = 3  # class 3
    pred = np.zeros_like(gt)
    pred[20:40, 20:40] = 1  # matches GT 2, same class
    pred[5:15, 60:70] = 2  # matches GT 3 but predicted as class 1
    tc, pc = {1: 1, 2: 1, 3: 3}, {1: 1, 2: 1}
    rep = evaluate_image(pred, gt, pred_classes=pc, true_classes=tc)
    c1, c3 = rep["per_class"]["<111> loop"], rep["per_class"]["black dot"]
    assert (c1["n_true"], c1["n_pred"], c1["tp"]) == (2, 2, 1)
    assert c1["precision"] == 0.5 and c1["recall"] == 0.5 and c1["f1"] == 0.5
    assert (c3["n_true"], c3["n_pred"], c3["tp"]) == (1, 0, 0)
    assert c3["f1"] == 0.0
    assert rep["detection"]["f1"] == pytest.approx(2 * 2 / (2 + 3))  # class-agnostic
    d_true = (2 * np.sqrt(100 / np.pi) + 2 * np.sqrt(400 / np.pi)) / 2
    d_pred = (2 * np.sqrt(400 / np.pi) + 2 * np.sqrt(100 / np.pi)) / 2
    assert c1["mean_size_true"] == pytest.approx(d_true)
    assert c1["size_error_pct"] == pytest.approx(100 * (d_pred - d_true) / d_true)
    assert c1["density_error_pct"] == pytest.approx(0.0)
    assert c3["density_error_pct"] == pytest.approx(-100.0)
    assert rep["unit"] == "px"


def test_pixel_metrics_by_hand():
    gt = np.zeros((20, 30), np.int32)
    gt[0:10, 0:10] = 1
    pred = np.zeros_like(gt)
    pred[0:10, 5:15] = 1
    rep = evaluate_image(pred, gt, pred_classes={1: 2}, true_classes={1: 2})
    px = rep["pixel"]
    assert px["per_class_iou"]["<100> loop"] == pytest.approx(50 / 150)
    assert px["per_class_dice"]["<100> loop"] == pytest.approx(0.5)
    assert px["miou"] == pytest.approx(1 / 3)
    assert px["pixel_precision"] == 0.5 and px["pixel_recall"] == 0.5
    # background: 600 - 150 = 450 px in both, 500 in each -> 450 / 550
    assert px["background_iou"] == pytest.approx(450 / 550)
    assert px["auprc"] is None
    # IoU of 1/3 misses every IoU@ threshold; the 0.3 detection threshold matches
    assert rep["iou_at"]["50"] == 0.0 and rep["detection"]["tp"] == 1


def test_iou_at_thresholds():
    gt = np.zeros((30, 30), np.int32)
    gt[0:10, 0:10] = 1
    gt[15:25, 15:25] = 2
    pred = np.zeros_like(gt)
    pred[0:10, 0:9] = 1  # IoU 0.9
    pred[15:25, 15:23] = 2  # IoU 0.8
    rep = evaluate_image(pred, gt)
    assert rep["iou_at"] == {"50": 1.0, "75": 1.0, "90": 0.5, "95": 0.0}


def test_average_precision_by_hand():
    # thresholds 0.9 (P 1, R .5), 0.8 (P .5, R .5), 0.7 (P 2/3, R 1), 0.1 (P .5, R 1)
    ap = average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert ap == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # one tied threshold
    assert np.isnan(average_precision([0, 0], [0.2, 0.3]))


def _slow_ap(y, s):
    y, s = np.asarray(y, bool), np.asarray(s, float)
    ap, prev_r = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        sel = s >= t
        p = np.count_nonzero(y & sel) / np.count_nonzero(sel)
        r = np.count_nonzero(y & sel) / np.count_nonzero(y)
        ap += (r - prev_r) * p
        prev_r = r
    return ap


def test_average_precision_matches_threshold_loop():
    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.3
    s = np.round(np.where(y, rng.normal(0.6, 0.2, 500), rng.normal(0.4, 0.2, 500)), 2)
    assert average_precision(y, s) == pytest.approx(_slow_ap(y, s))


def test_auprc_in_report_and_rdt():
    gt = np.zeros((20, 20), np.int32)
    gt[5:10, 5:10] = 1
    prob = np.where(gt > 0, 0.9, 0.1)
    rep = evaluate_image(gt, gt, probability=prob)
    assert rep["pixel"]["auprc"] == pytest.approx(1.0)
    assert relative_domain_transferability(0.6, 0.8) == pytest.approx(-0.25)
    assert np.isnan(relative_domain_transferability(0.5, 0.0))


def test_set_pools_counts_and_json_is_strict():
    gt, pred = _gt(), _pred()
    rep = evaluate_images(
        [
            {"pred": gt, "true": gt, "name": "a"},
            {"pred": pred, "true": gt, "name": "b"},
        ]
    )
    d = rep["detection"]
    assert (d["tp"], d["n_pred"], d["n_true"]) == (16, 18, 20)
    assert d["f1"] == pytest.approx(2 * 16 / 38)
    assert [im["name"] for im in rep["images"]] == ["a", "b"]
    assert rep["images"][0]["detection"]["f1"] == 1.0
    assert rep["overall"]["density_error_pct"] == pytest.approx(100 * (18 - 20) / 20)
    text = report_to_json(rep)
    back = json.loads(text)
    assert back["detection"]["tp"] == 16 and back["n_images"] == 2


def test_empty_images():
    z = np.zeros((10, 10), np.int32)
    rep = evaluate_image(z, z)
    assert rep["detection"]["f1"] == 1.0 and rep["detection"]["n_true"] == 0
    one = z.copy()
    one[2:4, 2:4] = 1
    rep = evaluate_image(z, one)
    assert rep["detection"]["recall"] == 0.0 and rep["detection"]["f1"] == 0.0
