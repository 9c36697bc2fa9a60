"""Labels TIFF + sidecar and COCO round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from skimage.draw import disk, ellipse

from napari_microseg.cli import main
from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.classes import ClassTable, DefectClass
from napari_microseg.core.coco import coco_to_labels, read_coco, write_coco
from napari_microseg.core.errors import LabelsError
from napari_microseg.core.labels_io import read_labels, write_labels
from napari_microseg.core.reading import read_micrograph


@pytest.fixture
def labels():
    lab = np.zeros((120, 140), np.int32)
    lab[disk((30, 30), 12)] = 1
    lab[ellipse(70, 90, 9, 25, rotation=0.6)] = 2
    lab[10:30, 100:130] = 5  # ring: a rectangle with a hole
    lab[15:25, 108:120] = 0
    lab[110:120, 0:12] = 7  # touches the border
    return lab


def test_tiff_round_trip_with_classes_and_calibration(tmp_path, labels):
    ps = PixelSize.isotropic(0.39, "imagej")
    classes = ClassTable([DefectClass(1, "<111> loop", "#ff0000"), DefectClass(3, "black dot", "#0000ff")])
    out = write_labels(tmp_path / "l.tif", labels, instance_classes={1: 1, 2: 3, 5: 1}, classes=classes,
                       pixel_size=ps, metadata={"model": "test"})
    assert out["sidecar"].exists()
    with tifffile.TiffFile(out["labels"]) as tif:
        assert tif.pages.first.dtype == np.uint16
    rec = read_labels(out["labels"])
    assert np.array_equal(rec.labels, labels)
    assert rec.instance_classes == {1: 1, 2: 3, 5: 1}
    assert rec.classes == classes
    assert rec.pixel_size.x_nm == pytest.approx(0.39)
    assert rec.metadata == {"model": "test"}
    # The TIFF alone carries the calibration (ImageJ, nm).
    assert read_micrograph(out["labels"]).pixel_size.x_nm == pytest.approx(0.39)


def test_uint32_when_ids_exceed_uint16(tmp_path):
    lab = np.zeros((20, 20), np.int64)
    lab[2:5, 2:5] = 70000
    out = write_labels(tmp_path / "big.tif", lab, pixel_size=PixelSize.isotropic(2.0, "user"))
    with tifffile.TiffFile(out["labels"]) as tif:
        assert tif.pages.first.dtype == np.uint32
    rec = read_labels(out["labels"])
    assert rec.labels.max() == 70000 and rec.pixel_size.x_nm == pytest.approx(2.0)
    assert read_micrograph(out["labels"]).pixel_size.x_nm == pytest.approx(2.0)


def test_bad_labels_rejected_and_nothing_written(tmp_path):
    with pytest.raises(LabelsError, match="2-D"):
        write_labels(tmp_path / "a.tif", np.zeros((2, 3, 4), np.int32))
    with pytest.raises(LabelsError, match="non-negative"):
        write_labels(tmp_path / "b.tif", -np.ones((4, 4), np.int32))
    with pytest.raises(LabelsError, match="not in the class table"):
        write_labels(tmp_path / "c.tif", np.ones((4, 4), np.int32), instance_classes={1: 99})
    with pytest.raises(LabelsError, match="whole-number"):
        write_labels(tmp_path / "d.tif", np.full((4, 4), 0.5))
    assert list(tmp_path.iterdir()) == []


def test_sidecar_shape_mismatch_detected(tmp_path, labels):
    out = write_labels(tmp_path / "l.tif", labels)
    side = json.loads(out["sidecar"].read_text())
    side["shape"] = [1, 1]
    out["sidecar"].write_text(json.dumps(side))
    with pytest.raises(LabelsError, match="shape"):
        read_labels(out["labels"])


def test_coco_round_trip_is_exact(tmp_path, labels):
    inst = {1: 1, 2: 3, 5: 1}
    p = write_coco(tmp_path / "c.json", labels, instance_classes=inst, image_name="x.tif",
                   pixel_size=PixelSize.isotropic(0.5, "user"))
    coco = read_coco(p)
    assert coco["images"][0]["pixel_size_nm"] == [0.5, 0.5]
    ring = [a for a in coco["annotations"] if a["instance_id"] == 5][0]
    assert isinstance(ring["segmentation"], dict)  # holes kept via RLE
    back, inst2, classes = coco_to_labels(coco)
    # Instance ids are renumbered in annotation order; compare object by object.
    for a in coco["annotations"]:
        orig = labels == a["instance_id"]
        new = back == a["id"]
        assert np.array_equal(orig, new)
        assert a["area"] == orig.sum()
    assert {a["id"]: inst2.get(a["id"], 0) for a in coco["annotations"]} == {
        a["id"]: inst.get(a["instance_id"], 0) for a in coco["annotations"]
    }
    assert "unclassified" in [c["name"] for c in coco["categories"]]
    assert "<111> loop" in classes.names().values()


def test_cli_labels_conversions(tmp_path, labels):
    out = write_labels(tmp_path / "l.tif", labels, instance_classes={1: 1}, pixel_size=PixelSize.isotropic(1.5, "user"))
    assert main(["labels", str(out["labels"]), str(tmp_path / "l.json")]) == 0
    assert main(["labels", str(tmp_path / "l.json"), str(tmp_path / "back.tif"), "--pixel-size", "1.5"]) == 0
    rec = read_labels(tmp_path / "back.tif")
    assert rec.labels.max() == len(np.unique(labels)) - 1
    assert (rec.labels > 0).sum() == (labels > 0).sum()
    assert main(["labels", str(tmp_path / "l.json"), str(tmp_path / "x.json")]) == 1


def test_creme_coco_matches_masks(creme):
    """The shared COCO polygons rasterise onto the shared binary masks."""
    from PIL import Image

    coco = read_coco(creme / "annotations_coco.json")
    ious, n = [], 0
    for entry in coco["images"]:
        name = entry["file_name"].split("/")[-1]
        mask_path = creme / "masks" / name
        if not mask_path.exists():
            continue
        mask = np.asarray(Image.open(mask_path)) > 0
        lab, _, _ = coco_to_labels(coco, entry["id"])
        n += int(lab.max())
        inter = np.logical_and(mask, lab > 0).sum()
        ious.append(inter / np.logical_or(mask, lab > 0).sum())
    assert n >= 100, "expected the 123 COCO loop instances"
    assert np.mean(ious) > 0.8, ious
