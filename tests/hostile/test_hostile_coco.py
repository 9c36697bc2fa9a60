"""Hostile COCO files: one-line errors naming the annotation, warnings for dropped objects.

Also: the printed instance count equals what is written (duplicates no longer
print 48 and write 24), a huge declared image is refused before anything is
allocated, and ``pixel_size_nm`` survives COCO -> TIFF.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest
import tifffile

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.coco import coco_to_labels, labels_to_coco
from napari_microseg.core.errors import LabelsError
from napari_microseg.core.labels_io import read_labels, write_labels


def _squares(n=3, shape=(64, 64)):
    lab = np.zeros(shape, np.uint16)
    for k in range(n):
        r, c = 4 + 18 * (k // 3), 4 + 18 * (k % 3)
        lab[r:r + 10, c:c + 10] = k + 1
    return lab


def _poly(x0, y0, s=8):
    return [x0, y0, x0 + s, y0, x0 + s, y0 + s, x0, y0 + s]


def _coco(anns, height=64, width=64, **image):
    return {
        "images": [{"id": 1, "file_name": "m.tif", "height": height, "width": width, **image}],
        "annotations": [{"id": i, "image_id": 1, "category_id": 1, **a}
                        for i, a in enumerate(anns, start=101)],
        "categories": [{"id": 1, "name": "loop"}],
    }


def _write(tmp_path, coco, name="c.json"):
    p = tmp_path / name
    p.write_text(json.dumps(coco))
    return p


@pytest.mark.parametrize("change, words", [
    (lambda c: c["images"][0].pop("height"), "'height'"),
    (lambda c: c["images"][0].update(height=-5), "'height'"),
    (lambda c: c["images"][0].update(width="64"), "'width'"),
    (lambda c: c["annotations"][1].update(segmentation=[[1, 2, 3, 4, 5, 6, 7]]), "annotation 102"),
    (lambda c: c["annotations"][1].update(segmentation=[["1", "2", "9", "2", "9", "9"]]),
     "annotation 102"),
    (lambda c: c["annotations"][0].update(segmentation={"size": [10, 10], "counts": [0, 100]}),
     "annotation 101"),
    (lambda c: c["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), "annotation 101"),
    (lambda c: c["annotations"][0].update(category_id="loop"), "annotation 101"),
    (lambda c: c.update(images={"id": 1}), "'images'"),
], ids=["no-height", "negative-height", "string-width", "odd-length", "string-coords",
        "rle-size", "two-points", "string-category", "images-not-list"])
def test_malformed_coco_is_one_line(cli, tmp_path, change, words):
    coco = _coco([{"segmentation": [_poly(2, 2)]}, {"segmentation": [_poly(20, 20)]}])
    change(coco)
    src = _write(tmp_path, coco)
    before = src.read_bytes()
    r = cli("labels", src, tmp_path / "out.tif")
    assert r.rc == 1 and words in r.error_line()
    assert not (tmp_path / "out.tif").exists() and src.read_bytes() == before


def test_huge_declared_image_is_refused_before_allocating(cli, tmp_path):
    src = _write(tmp_path, _coco([{"segmentation": [_poly(2, 2)]}], height=100000, width=100000))
    t0 = time.perf_counter()
    r = cli("labels", src, tmp_path / "out.tif")
    assert time.perf_counter() - t0 < 5
    assert r.rc == 1 and "100000 x 100000" in r.error_line() and "limit" in r.error_line()


def test_duplicates_print_what_is_written_and_warn(cli, tmp_path):
    lab = _squares(6)
    coco = labels_to_coco(lab, instance_classes={i: 1 for i in range(1, 7)},
                          classes=None, image_name="m.tif")
    dup = [dict(a, id=a["id"] + 100) for a in coco["annotations"]]
    coco["annotations"] += dup
    src = _write(tmp_path, coco)
    r = cli("labels", src, tmp_path / "out.tif")
    assert r.rc == 0, r.err
    written = read_labels(tmp_path / "out.tif")
    n = len(np.unique(written.labels[written.labels > 0]))
    assert n == 6 and "6 instances" in r.out
    assert int(written.labels.max()) == 6 and set(written.instance_classes) == set(range(1, 7))
    w = [ln for ln in r.err.splitlines() if ": warning: " in ln]
    assert len(w) == 1 and "6 COCO annotation(s) dropped" in w[0] and "duplicates" in w[0]
    assert "ids 1, 2, 3" in w[0]


def test_nan_and_outside_polygons_are_warned_with_ids(cli, tmp_path):
    coco = _coco([
        {"segmentation": [_poly(2, 2)]},
        {"segmentation": [[float("nan"), 1, 5, 1, 5, 5]]},
        {"segmentation": [_poly(500, 500)]},
        {"segmentation": [_poly(60, 60)]},  # reaches past the 64 x 64 image: clipped
    ])
    src = tmp_path / "c.json"
    src.write_text(json.dumps(coco))  # json writes NaN, as some exporters do
    r = cli("labels", src, tmp_path / "out.tif")
    assert r.rc == 0, r.err
    w = [ln for ln in r.err.splitlines() if ln.startswith("microseg labels: warning: ")]
    assert any("NaN" in ln and "102" in ln for ln in w), r.err
    assert any("no pixel inside" in ln and "103" in ln for ln in w), r.err
    assert any("clipped" in ln and "104" in ln for ln in w), r.err
    assert "2 instances" in r.out


def test_pixel_size_survives_coco_round_trip(cli, tmp_path):
    out = write_labels(tmp_path / "l.tif", _squares(3), pixel_size=PixelSize.isotropic(0.75, "user"))
    assert cli("labels", out["labels"], tmp_path / "c.json").rc == 0
    assert json.loads((tmp_path / "c.json").read_text())["images"][0]["pixel_size_nm"] == [0.75, 0.75]
    r = cli("labels", tmp_path / "c.json", tmp_path / "back.tif")
    assert r.rc == 0, r.err
    back = read_labels(tmp_path / "back.tif")
    assert back.pixel_size.calibrated and back.pixel_size.x_nm == pytest.approx(0.75)
    assert "0.75 nm/px" in r.out
    r = cli("labels", tmp_path / "c.json", tmp_path / "user.tif", "--pixel-size", "2")
    assert read_labels(tmp_path / "user.tif").pixel_size.x_nm == pytest.approx(2.0)


def test_pixel_size_from_the_referenced_micrograph(cli, tmp_path):
    img = np.zeros((64, 64), np.uint8)
    tifffile.imwrite(tmp_path / "m.tif", img, imagej=True, resolution=(1 / 1.5, 1 / 1.5),
                     metadata={"unit": "nm"})
    src = _write(tmp_path, _coco([{"segmentation": [_poly(2, 2)]}]))
    r = cli("labels", src, tmp_path / "out.tif")
    assert r.rc == 0, r.err
    assert read_labels(tmp_path / "out.tif").pixel_size.x_nm == pytest.approx(1.5)


def test_coco_to_labels_core_api_warns_and_keeps_ids_dense():
    coco = _coco([{"segmentation": [_poly(2, 2)]}, {"segmentation": [_poly(2, 2)]},
                  {"segmentation": [_poly(30, 30)]}])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        lab, inst, classes = coco_to_labels(coco)
    assert sorted(np.unique(lab).tolist()) == [0, 1, 2] and inst == {1: 1, 2: 1}
    assert any("ids 101" in str(w.message) for w in rec)
    with pytest.raises(LabelsError, match="negative"):
        labels_to_coco(np.full((4, 4), -1, np.int16))
