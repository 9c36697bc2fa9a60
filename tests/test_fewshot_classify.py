"""Classify like these (issue 15): few-shot object classes on synthetic TEM frames with exact truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_microseg.core.errors import InvalidImageError, MicrosegError
from napari_microseg.core.fewshot.classify import (
    ClassifyError,
    ObjectClassifier,
    classify_like,
    object_features,
    read_examples,
)
from napari_microseg.core.synth import generate

CLASSES = (1, 2, 3)  # <111> loop, <100> loop, black dot


def _draw(truth: dict, shots: int, seed: int) -> dict[int, int]:
    rng = np.random.default_rng(seed)
    ex = {}
    for c in CLASSES:
        ids = sorted(i for i, v in truth.items() if v == c)
        ex.update({int(i): c for i in rng.choice(ids, shots, replace=False)})
    return ex


@pytest.fixture(scope="module")
def scenes():
    """Two 768 x 768 three-class BF-TEM frames (seeds never used to design or tune the classifier)."""
    return [generate("tem-loops", shape=(768, 768), pixel_size_nm=0.39, seed=s) for s in (7, 8)]


@pytest.fixture(scope="module")
def small():
    """A 384 x 384 three-class frame for the quick checks."""
    return generate("tem-loops", shape=(384, 384), pixel_size_nm=0.39, seed=11)


@pytest.mark.slow
def test_accuracy_from_five_examples_per_class(scenes):
    correct = total = 0
    for s in scenes:
        clf = ObjectClassifier(s.image, s.labels, pixel_size=s.pixel_size)
        table = clf.fit(_draw(s.instance_classes, 5, seed=0)).predict()
        rest = table[~table["example"]]
        truth = rest["label"].map(s.instance_classes).to_numpy()
        correct += int((rest["class_id"].to_numpy() == truth).sum())
        total += len(rest)
        assert set(table["class_id"]) <= set(CLASSES)
        assert np.all((table["confidence"] >= 1 / 3 - 1e-9) & (table["confidence"] <= 1))
        p = table[[f"p_{c}" for c in CLASSES]].to_numpy()
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        np.testing.assert_allclose(p.max(axis=1), table["confidence"])
    assert total > 250
    assert correct / total >= 0.90, f"accuracy {correct / total:.3f} on {total} objects"


@pytest.mark.slow
def test_corrections_retrain_and_keep_or_improve(scenes):
    s = scenes[0]
    truth = s.instance_classes
    clf = ObjectClassifier(s.image, s.labels, pixel_size=s.pixel_size)
    ex = _draw(truth, 5, seed=1)
    first = clf.fit(ex).predict()
    pending = first[~first["example"]].sort_values("confidence", kind="stable")
    reviewed = {int(i): truth[int(i)] for i in pending["label"].head(10)}
    second = clf.add_examples(reviewed).predict()
    assert clf.examples == {**ex, **reviewed}
    held = ~first["label"].isin([*ex, *reviewed]).to_numpy()
    y = first["label"].map(truth).to_numpy()
    before = (first["class_id"].to_numpy() == y)[held].mean()
    after = (second["class_id"].to_numpy() == y)[held].mean()
    assert after >= before, (before, after)
    fixed = second.set_index("label").loc[list(reviewed)]
    assert fixed["example"].all() and (fixed["confidence"] == 1.0).all()
    assert (fixed["class_id"].to_numpy() == [reviewed[i] for i in reviewed]).all()
    # a correction of an example replaces it; removing examples retrains without them
    some = next(iter(reviewed))
    other = next(c for c in CLASSES if c != reviewed[some])
    assert clf.add_examples({some: other}).examples[some] == other
    assert some not in clf.remove_examples([some]).examples


@pytest.mark.slow
def test_examples_keep_their_class_and_inputs_are_unchanged(small):
    image, labels = small.image.copy(), small.labels.copy()
    ex = _draw(small.instance_classes, 3, seed=2)
    ex_copy = dict(ex)
    table = classify_like(small.image, small.labels, ex, pixel_size=small.pixel_size)
    np.testing.assert_array_equal(small.image, image)
    np.testing.assert_array_equal(small.labels, labels)
    assert ex == ex_copy
    assert list(table["label"]) == sorted(small.instance_classes)
    given = table[table["example"]].set_index("label")
    assert dict(zip(given.index, given["class_id"], strict=True)) == ex
    # the same seed gives the same answer
    again = classify_like(small.image, small.labels, ex, pixel_size=small.pixel_size)
    assert again.equals(table)


def test_any_dtype_reads_alike(small):
    """uint8, uint16 (x257) and float images give the same features and classes."""
    base = object_features(small.image, small.labels)
    for img in (small.image.astype(np.uint16) * 257, small.image.astype(np.float32) / 255 - 0.3):
        f = object_features(img, small.labels)
        np.testing.assert_allclose(f.to_numpy(), base.to_numpy(), rtol=1e-4, atol=1e-4)
    assert np.isfinite(base.drop(columns="label").to_numpy()).all()


def test_bad_input(small):
    clf = ObjectClassifier(small.image, small.labels)
    ids = sorted(small.instance_classes)
    with pytest.raises(ClassifyError, match="two classes"):
        clf.fit({ids[0]: 1, ids[1]: 1})
    with pytest.raises(ClassifyError, match="not an object"):
        clf.fit({ids[0]: 1, 99999: 2})
    with pytest.raises(ClassifyError, match="positive"):
        clf.fit({ids[0]: 1, ids[1]: 0})
    with pytest.raises(ClassifyError, match="whole numbers"):
        clf.fit({ids[0]: 1.5, ids[1]: 2})
    with pytest.raises(ClassifyError, match="first"):
        clf.predict()
    with pytest.raises(ClassifyError, match="feature_set"):
        ObjectClassifier(small.image, small.labels, feature_set="colour")
    empty = ObjectClassifier(small.image, np.zeros_like(small.labels))
    assert empty.features.empty
    with pytest.raises(ClassifyError, match="no objects"):
        empty.fit({1: 1, 2: 2})
    with pytest.raises(InvalidImageError, match="px"):
        ObjectClassifier(small.image[:-1], small.labels)
    with pytest.raises(InvalidImageError, match="2-D"):
        ObjectClassifier(np.zeros((2, 3, 4, 5)), small.labels)
    with pytest.raises(MicrosegError):
        ObjectClassifier(small.image, small.labels.astype(np.float32) + 0.5)


def test_read_examples(tmp_path):
    p = tmp_path / "ex.json"
    p.write_text(json.dumps({"3": 1, "7": "<100> loop", "9": "Black dot"}))
    assert read_examples(p) == {3: 1, 7: 2, 9: 3}
    p.write_text(json.dumps({"examples": [{"label": 4, "class_id": 2}, {"id": 5, "class": 1}]}))
    assert read_examples(p) == {4: 2, 5: 1}
    c = tmp_path / "ex.csv"
    c.write_text("label,class_name\n3,<111> loop\n8,black dot\n")
    assert read_examples(c) == {3: 1, 8: 3}
    for text, match in (("label,class_id\n", "no example"), ("x,y\n1,2\n", "malformed"),
                        ("label,class_id\n3,spinel\n", "Unknown class"),
                        ("label,class_id\n2.5,1\n", "whole number")):
        c.write_text(text)
        with pytest.raises(ClassifyError, match=match):
            read_examples(c)
    p.write_bytes(b"\xff\xfe{")
    with pytest.raises(ClassifyError, match="Cannot read"):
        read_examples(p)
    with pytest.raises(ClassifyError, match=r"\.json or \.csv"):
        read_examples(tmp_path / "ex.yaml")


def test_cli_classify_like(small, tmp_path, capsys):
    from napari_microseg.cli import main
    from napari_microseg.core.labels_io import read_labels
    from napari_microseg.core.synth import write_sample

    write_sample(small, tmp_path, "s")  # s.tif (calibrated), s_labels.tif + sidecar
    ex = _draw(small.instance_classes, 3, seed=3)
    (tmp_path / "ex.json").write_text(json.dumps({str(k): v for k, v in ex.items()}))
    rc = main(["classify-like", str(tmp_path / "s.tif"), str(tmp_path / "s_labels.tif"),
               "--examples", str(tmp_path / "ex.json"), "--out", str(tmp_path / "t.csv"),
               "--labels-out", str(tmp_path / "classified.tif")])
    out = capsys.readouterr().out
    assert rc == 0 and "wrote" in out
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table.columns[:4]) == ["label", "class_id", "class_name", "confidence"]
    assert list(table["label"]) == sorted(small.instance_classes)
    assert set(table["class_name"]) <= {"<111> loop", "<100> loop", "black dot"}
    rec = read_labels(tmp_path / "classified.tif")
    assert rec.instance_classes == dict(zip(table["label"], table["class_id"], strict=True))
    assert rec.pixel_size.x_nm == pytest.approx(0.39)
    # bad examples: one line, exit 1, nothing written
    (tmp_path / "one.json").write_text(json.dumps({str(k): 1 for k in ex}))
    (tmp_path / "gone.json").write_text(json.dumps({"99999": 1, str(next(iter(ex))): 2}))
    for name, text in (("one.json", "two classes"), ("gone.json", "99999")):
        rc = main(["classify-like", str(tmp_path / "s.tif"), str(tmp_path / "s_labels.tif"),
                   "--examples", str(tmp_path / name), "--out", str(tmp_path / "bad.csv")])
        err = capsys.readouterr().err
        assert rc == 1 and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and text in err, err
    assert not (tmp_path / "bad.csv").exists()
