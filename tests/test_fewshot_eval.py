"""``microseg fewshot-eval``: the simulated few-shot user, end to end on tiny datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_microseg.cli import main
from napari_microseg.core.fewshot.evaluation import (
    boxes_to_labels,
    ellipse_in_box,
    label_boxes,
    match_boxes,
)
from napari_microseg.core.prompting.eval_data import load_dataset
from napari_microseg.core.synth.generator import generate


@pytest.fixture(scope="module")
def pit_sets(tmp_path_factory):
    """Two synthetic pit images as a mask dataset (uint16 instances) and a box dataset."""
    root = tmp_path_factory.mktemp("fewshot")
    masks, boxes = root / "masks_set", root / "boxes_set"
    for d in (masks / "images", masks / "masks", boxes / "images", boxes / "boxes"):
        d.mkdir(parents=True)
    for i in (1, 2):
        s = generate("sem-pits", shape=(192, 192), seed=10 + i, n_objects=14, nuisances=False)
        Image.fromarray(s.image).save(masks / "images" / f"{i}.png")
        Image.fromarray(s.labels.astype(np.uint16)).save(masks / "masks" / f"{i}.png")
        Image.fromarray(s.image).save(boxes / "images" / f"b{i}.png")
        lines = [" ".join(str(int(v)) for v in b) for b in label_boxes(s.labels)]
        (boxes / "boxes" / f"b{i}.txt").write_text("\n".join(lines) + "\n")
    return masks, boxes


def test_uint16_instance_masks_load_as_instances(pit_sets):
    masks, _ = pit_sets
    layout, samples = load_dataset(masks)
    s = generate("sem-pits", shape=(192, 192), seed=11, n_objects=14, nuisances=False)
    assert layout == "masks"
    np.testing.assert_array_equal(samples[0].target, s.labels)


def test_box_helpers_exact():
    boxes = np.array([[10, 10, 19, 29], [40, 40, 44, 44]], float)
    lab = boxes_to_labels((64, 64), boxes)
    np.testing.assert_array_equal(label_boxes(lab), boxes)
    assert ellipse_in_box((64, 64), boxes[0])[15, 20] and not ellipse_in_box((64, 64), boxes[0])[10, 10]
    tp, ious, idx = match_boxes(boxes[::-1] + [0, 0, 0, 1], boxes, 0.5)
    assert tp == 2 and list(idx) == [1, 0] or list(idx) == [0, 1]
    assert ious[0] == pytest.approx(200 / 210) or ious[0] == pytest.approx(25 / 30)
    assert match_boxes(np.zeros((0, 4)), boxes, 0.5)[0] == 0


def test_cli_masks_end_to_end(pit_sets, tmp_path, capsys):
    masks, _ = pit_sets
    out = tmp_path / "r.json"
    rc = main(["fewshot-eval", str(masks), "--shots", "4", "--rounds", "1", "--top", "5",
               "--methods", "find-similar", "otsu-flood", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "find-similar" in text and "otsu-flood" in text
    res = json.loads(out.read_text())
    fs = res["summary"]["find-similar"]
    assert [r["round"] for r in fs] == [0, 1]
    for key in ("f1@50", "f1@30", "precision@50", "recall@50", "mean_iou_matched",
                "abs_count_error", "abs_density_error", "seconds"):
        assert key in fs[0]
    per = res["per_image"]["find-similar"]
    assert [p["image"] for p in per] == ["1", "2"] and all(p["n_exemplars"] == 4 for p in per)
    # Round 1 counts what the simulated user accepted.
    assert all(p["rounds"][1]["n_accepted"] >= 1 for p in per)
    # Found like the exemplars beats a classical grid on F1 (the grid's recall comes cheap: it
    # proposes everything dark, at a precision of about 0.3 here).
    assert fs[0]["f1@50"] > res["summary"]["otsu-flood"][0]["f1@50"] + 0.15


def test_cli_boxes_and_exemplars_from(pit_sets, tmp_path):
    _, boxes = pit_sets
    out = tmp_path / "b.json"
    rc = main(["fewshot-eval", str(boxes), "--shots", "3", "--images", "b2", "--exemplars-from",
               "b1", "--methods", "find-similar", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["layout"] == "boxes" and res["exemplars_from"] == "b1"
    assert res["per_image"]["find-similar"][0]["n_exemplars"] == 0
    assert res["summary"]["find-similar"][0]["recall@30"] >= 0.3


def test_cli_bad_arguments_one_line(pit_sets, capsys):
    masks, _ = pit_sets
    assert main(["fewshot-eval", str(masks), "--methods", "nope"]) == 1
    assert main(["fewshot-eval", str(masks), "--exemplars-from", "1", "--images", "1"]) == 1
    assert main(["fewshot-eval", str(masks), "--shots", "0", "--methods", "find-similar"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 3


@pytest.mark.slow
def test_cli_on_one_creme_image(creme, tmp_path):
    out = tmp_path / "c.json"
    rc = main(["fewshot-eval", str(creme), "--shots", "3", "--images", "9",
               "--methods", "find-similar", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["per_image"]["find-similar"][0]["n_true"] == 13
