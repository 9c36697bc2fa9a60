"""The ``sem-corrosion`` synthetic kind: pits, corroded areas and grain-boundary attack."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label, regionprops

from napari_microseg.cli import main
from napari_microseg.core.labels_io import read_labels
from napari_microseg.core.synth import generate
from napari_microseg.core.synth.corrosion import attack_polygon, patch_polygon
from napari_microseg.core.synth.geometry import PolygonShape, clipped_area, rasterize

KIND = "sem-corrosion"
NAMES = {6: "pit", 7: "corroded area", 8: "boundary attack"}


@pytest.fixture(scope="module")
def sample():
    return generate(KIND, shape=(384, 384), seed=0)


def test_three_classes_with_their_names(sample):
    counts = Counter(sample.instance_classes.values())
    assert set(counts) == set(NAMES) and min(counts.values()) >= 2
    for cid, name in NAMES.items():
        assert sample.classes[cid].name == name
    for t in sample.truth:
        assert t["class_name"] == NAMES[t["class_id"]] == NAMES[sample.instance_classes[t["id"]]]
    assert {t["appearance"] for t in sample.truth} == {"pit", "corroded", "groove"}


def test_instances_are_exact_separate_and_one_piece(sample):
    lab = sample.labels
    ps = sample.pixel_size.x_nm
    assert sorted(np.unique(lab[lab > 0])) == [t["id"] for t in sample.truth]
    assert label(lab > 0, connectivity=2).max() == len(sample.truth)  # no two touch
    margin = math.ceil(60.0 / ps)  # the kind's margin (nm) in px
    props = {r.label: r for r in regionprops(lab)}
    for t in sample.truth:
        own = lab == t["id"]
        assert label(own, connectivity=2).max() == 1
        near = ndi.binary_dilation(own, np.ones((3, 3), bool), iterations=margin - 1)
        assert set(np.unique(lab[near])) <= {0, t["id"]}  # others keep the margin
        r = props[t["id"]]
        assert r.area == t["area_px"]
        if t["clipped"]:
            continue
        # pixel-centre rule: the count estimates the exact area; centroid within half a pixel
        a = t["area_nm2"] / ps**2
        assert abs(r.area - a) <= max(0.04 * a, 2.5 * math.sqrt(a)), t
        assert abs(r.centroid[0] - t["centre_y_nm"] / ps) <= 0.5
        assert abs(r.centroid[1] - t["centre_x_nm"] / ps) <= 0.5


def test_attacks_are_thin_grooves_and_areas_are_irregular(sample):
    ps = sample.pixel_size.x_nm
    props = {r.label: r for r in regionprops(sample.labels)}
    by_class = {c: [t for t in sample.truth if t["class_id"] == c] for c in NAMES}
    for t in by_class[8]:
        assert t["semi_major_nm"] / t["semi_minor_nm"] > 2.5
        assert t["semi_minor_nm"] / ps < 4.0
    solidity = {c: np.mean([props[t["id"]].solidity for t in by_class[c]]) for c in (6, 7)}
    assert solidity[7] < solidity[6] - 0.05  # lobed patches, not round blobs


def test_corroded_areas_carry_their_own_texture():
    s = generate(KIND, shape=(384, 384), seed=4, noise=False, nuisances=False)
    img = s.image.astype(float)
    rough = np.abs(img - ndi.gaussian_filter(img, 2.0))
    inner = {c: np.zeros(img.shape, bool) for c in NAMES}
    for t in s.truth:
        inner[t["class_id"]] |= ndi.binary_erosion(s.labels == t["id"], iterations=3)
    background = ndi.binary_erosion(s.labels == 0, iterations=6)
    assert inner[7].sum() > 200 and inner[6].sum() > 200
    assert rough[inner[7]].mean() > 2.0 * rough[inner[6]].mean()
    assert rough[inner[7]].mean() > 2.0 * rough[background].mean()
    bg = np.median(img[s.labels == 0])
    for t in s.truth:  # every object is darker than the surface
        assert img[s.labels == t["id"]].mean() < bg


def test_seeds_reproduce_and_differ_and_both_bit_depths():
    a = generate(KIND, shape=(160, 192), seed=11)
    b = generate(KIND, shape=(160, 192), seed=11)
    c = generate(KIND, shape=(160, 192), seed=12)
    d = generate(KIND, shape=(160, 192), seed=11, dtype="uint16")
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.truth_json() == b.truth_json()
    assert not np.array_equal(a.labels, c.labels) and not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and d.image.dtype == np.uint16 and d.image.max() > 255
    np.testing.assert_array_equal(a.labels, d.labels)
    assert a.truth == d.truth


def test_object_count_is_split_over_the_families():
    s = generate(KIND, shape=(384, 384), seed=2, n_objects=9)
    counts = Counter(s.instance_classes.values())
    assert counts[8] <= 3 and counts[7] <= 2 and counts[6] <= 4 and 6 <= len(s.truth) <= 9
    assert s.metadata["n_requested"] == 9


def test_polygon_shapes_are_exact():
    square = PolygonShape(np.array([[10.3, 10.3], [10.3, 30.3], [30.3, 30.3], [30.3, 10.3]]))
    assert square.area == pytest.approx(400.0)
    assert (square.cy, square.cx) == pytest.approx((20.3, 20.3))
    _, _, _, mask = rasterize(square, 50, 50)
    assert mask.sum() == 400  # pixel centres 11 .. 30 on both axes
    d = square.signed_distance(np.array([[20.3]]), np.array([[20.3, 40.3]]))
    assert d[0, 0] == pytest.approx(-10.0, abs=0.13) and d[0, 1] == pytest.approx(10.0, abs=0.13)
    area, clipped = clipped_area(PolygonShape(square.vertices - 15.0), 50, 50)
    assert clipped and area == pytest.approx(15.8 * 15.8)
    groove = PolygonShape(attack_polygon((20.0, 10.0), (20.0, 70.0), 3.0,
                                         np.random.default_rng(0)))
    assert groove.half_widths()[1] == pytest.approx(31.5, abs=0.01)  # ends: 1.5 px caps
    assert groove.half_widths()[0] <= 3.0 + 0.8 + 1e-6
    patch = patch_polygon(20.0, 1.5, 0.3, seed=5)
    assert patch is not None and PolygonShape(patch).area > 0.3 * math.pi * 400


def test_cli_writes_corrosion_samples(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["synth", "--kind", KIND, "--n", "2", "--seed", "3", "--size", "128", "144",
                 "--dtype", "uint16", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "sem-corrosion" in lines[0] and "20 nm/px" in lines[0]
    truth = json.loads((out / "sem-corrosion_0003_truth.json").read_text())
    assert {c["name"] for c in truth["classes"]} >= set(NAMES.values())
    rec = read_labels(out / "sem-corrosion_0003_labels.tif")
    assert rec.classes[8].name == "boundary attack"
    assert rec.instance_classes == {int(k): v for k, v in truth["instance_classes"].items()}
    np.testing.assert_array_equal(rec.labels, generate(KIND, shape=(128, 144), seed=3).labels)
