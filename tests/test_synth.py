"""Synthetic micrographs: determinism, exact ground truth, nuisances, files, CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import tifffile
from skimage.measure import label, regionprops

from napari_microseg.cli import main
from napari_microseg.core.labels_io import read_labels, sidecar_path
from napari_microseg.core.synth import KINDS, Noise, Nuisances, generate, write_sample
from napari_microseg.core.synth.geometry import (
    COS_111_001,
    Ellipse,
    StarShape,
    clipped_area,
    fold_angle_deg,
    polygon_moments,
    rasterize,
)
from napari_microseg.core.synth.samples import SAMPLES, layer_data

SMALL = (192, 224)
EXPECTED_CLASSES = {
    "tem-loops": {1, 2, 3},
    "tem-dots": {3},
    "tem-voids": {4},
    "tem-precipitates": {5},
    "tem-mixed": {1, 2, 3, 4, 5},
    "stem-loops": {1, 2, 3},
    "stem-haadf-loops": {1, 2, 3},
    "sem-pits": {6},
    "sem-corrosion": {6, 7, 8},
}


def _props(labels):
    return {r.label: r for r in regionprops(labels)}


def _diameter_tol(d_px):
    """The acceptance tolerance: 2 % or 1 px, whichever is larger."""
    return max(0.02 * d_px, 1.0)


def check_labels_against_truth(labels, truth, ps):
    """A plain regionprops pass over ``labels`` must reproduce ``truth``."""
    props = _props(labels)
    assert sorted(props) == [t["id"] for t in truth] == list(range(1, len(truth) + 1))
    h, w = labels.shape
    n_checked = 0
    for t in truth:
        r = props[t["id"]]
        assert r.area == t["area_px"]
        r0, c0, r1, c1 = r.bbox
        assert (r0 == 0 or c0 == 0 or r1 == h or c1 == w) == t["touches_edge"]
        d_true = t["equivalent_diameter_nm"] / ps
        assert math.isclose(d_true, 2 * math.sqrt(t["area_nm2"] / math.pi) / ps, rel_tol=1e-9)
        if t["touches_edge"] or t["clipped"]:
            continue
        n_checked += 1
        assert abs(r.equivalent_diameter_area - d_true) <= _diameter_tol(d_true), t
        c_tol = 0.5 if t["area_px"] >= 10 else 0.75  # tiny dots: a few pixels
        assert abs(r.centroid[0] - t["centre_y_nm"] / ps) <= c_tol
        assert abs(r.centroid[1] - t["centre_x_nm"] / ps) <= c_tol
    return n_checked


@pytest.mark.parametrize("kind", ["tem-loops", "tem-dots", "tem-voids", "stem-loops",
                                  "sem-pits", "tem-mixed"])
def test_required_kinds_exist(kind):
    assert kind in KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_sample_other_seed_differs(kind):
    a = generate(kind, shape=SMALL, seed=7)
    b = generate(kind, shape=SMALL, seed=7)
    c = generate(kind, shape=SMALL, seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.truth == b.truth and a.instance_classes == b.instance_classes
    assert a.truth_json() == b.truth_json()
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_image_dtype_shape_and_range(kind, dtype):
    s = generate(kind, shape=SMALL, seed=1, dtype=dtype)
    top = np.iinfo(dtype).max
    assert s.image.dtype == np.dtype(dtype) and s.image.shape == SMALL
    assert s.labels.dtype == np.int32 and s.labels.shape == SMALL
    bg = np.median(s.image[s.labels == 0]) / top
    assert 0.15 < bg < 0.75  # a grey background, neither black nor saturated
    assert s.image.std() > 0.03 * top
    assert np.mean(s.image == top) < 0.01 and np.mean(s.image == 0) < 0.01
    if dtype == "uint16":
        assert s.image.max() > 255
    assert s.pixel_size.calibrated and s.pixel_size.source == "synthetic"
    assert s.kind == kind and s.seed == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regionprops_reproduces_truth(kind, seed):
    s = generate(kind, shape=(256, 256), seed=seed)
    ps = s.pixel_size.x_nm
    assert len(s.truth) >= 3
    n = check_labels_against_truth(s.labels, s.truth, ps)
    assert n >= 1
    assert set(s.instance_classes) == {t["id"] for t in s.truth}
    for t in s.truth:
        assert s.instance_classes[t["id"]] == t["class_id"]
        assert s.classes[t["class_id"]].name == t["class_name"]
        assert t["semi_major_nm"] >= t["semi_minor_nm"] > 0
        assert -90 < t["orientation_deg"] <= 90
        assert t["area_nm2"] <= t["full_area_nm2"] * (1 + 1e-9)
        if not t["clipped"]:
            assert t["area_nm2"] == pytest.approx(t["full_area_nm2"], rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_objects_do_not_overlap_or_touch(kind):
    s = generate(kind, shape=(256, 256), seed=3)
    # 8-connected components of the foreground are exactly the instances
    comps = label(s.labels > 0, connectivity=2)
    assert comps.max() == len(s.truth)
    for r in regionprops(comps, intensity_image=s.labels):
        ids = np.unique(s.labels[tuple(r.coords.T)])
        assert len(ids) == 1


def test_clipped_objects_report_clipped_area():
    n = 0
    for seed in range(6):
        s = generate("stem-loops", shape=(160, 160), seed=seed, noise=False, nuisances=False)
        ps = s.pixel_size.x_nm
        for t in s.truth:
            if not t["clipped"]:
                continue
            n += 1
            assert t["area_nm2"] < t["full_area_nm2"]
            # the clipped analytic area matches the pixel count up to edge effects
            tol = max(0.08 * t["area_px"], 2.0 * math.sqrt(t["full_area_nm2"]) / ps)
            assert abs(t["area_nm2"] / ps**2 - t["area_px"]) <= tol, t
    assert n >= 5


def test_clipped_area_is_exact_for_circles_on_the_frame():
    corner = Ellipse(-0.5, -0.5, 10.0, 10.0)
    area, clipped = clipped_area(corner, 50, 50)
    assert clipped and area == pytest.approx(math.pi * 100 / 4, rel=1e-6)
    edge = Ellipse(20.0, 49.5, 8.0, 4.0, math.pi / 2)
    area, clipped = clipped_area(edge, 50, 50)
    assert clipped and area == pytest.approx(math.pi * 32 / 2, rel=1e-6)
    inside = Ellipse(25.0, 25.0, 8.0, 4.0, 0.3)
    assert clipped_area(inside, 50, 50) == (pytest.approx(math.pi * 32), False)


def test_star_shape_area_and_moments_are_exact():
    star = StarShape(40.0, 50.0, 20.0, ((2, 0.1, 0.4), (3, -0.07, 1.0), (5, 0.05, 2.0)))
    assert star.area == pytest.approx(math.pi * 400 * (1 + 0.5 * (0.01 + 0.0049 + 0.0025)))
    _, _, _, mask = rasterize(star, 100, 100)
    assert abs(mask.sum() - star.area) < 0.01 * star.area
    cy, cx, a, b, _ = polygon_moments(Ellipse(10.0, 20.0, 9.0, 3.0, 0.7).outline())
    assert (cy, cx, a, b) == pytest.approx((10.0, 20.0, 9.0, 3.0), rel=1e-5)


def test_orientation_convention_matches_regionprops():
    checked = 0
    for kind in ("tem-loops", "tem-precipitates", "stem-loops"):
        s = generate(kind, shape=(256, 256), seed=4, noise=False, nuisances=False)
        ps = s.pixel_size.x_nm
        props = _props(s.labels)
        for t in s.truth:
            a, b = t["semi_major_nm"] / ps, t["semi_minor_nm"] / ps
            if t["touches_edge"] or a < 6 or a / b < 1.4:
                continue
            r = props[t["id"]]
            sk = fold_angle_deg(r.orientation - math.pi / 2)
            diff = (sk - t["orientation_deg"] + 90) % 180 - 90
            assert abs(diff) < 4.0, (t, sk)
            assert r.axis_major_length / 2 == pytest.approx(a, rel=0.06, abs=0.7)
            checked += 1
    assert checked >= 10


def test_projection_geometry_along_001():
    s = generate("tem-loops", shape=(512, 512), seed=2, noise=False, nuisances=False)
    theta0 = s.metadata["crystal_rotation_deg"]
    ps = s.pixel_size.x_nm
    seen = set()
    for t in s.truth:
        if t["semi_minor_nm"] / ps < 2.5:  # the px minimum may widen tiny loops
            continue
        rel = (t["orientation_deg"] - theta0) % 90.0
        if t["class_name"] == "<111> loop":
            assert t["semi_minor_nm"] / t["semi_major_nm"] == pytest.approx(COS_111_001, abs=0.02)
            assert abs(rel - 45.0) <= 2.01
            seen.add(t["appearance"])
        elif t["appearance"] == "edge-on":
            assert min(rel, 90.0 - rel) <= 2.01
            assert t["semi_minor_nm"] / t["semi_major_nm"] < 0.45
    assert "ring" in seen and "filled" in seen


@pytest.mark.parametrize("kind", KINDS)
def test_classes_present_per_kind(kind):
    s = generate(kind, shape=(384, 384), seed=0)
    assert set(s.instance_classes.values()) == EXPECTED_CLASSES[kind]
    assert [c.name for c in s.classes][:6] == [
        "<111> loop", "<100> loop", "black dot", "void", "precipitate", "pit"]


@pytest.mark.parametrize("kind", KINDS)
def test_nuisances_and_noise_leave_labels_unchanged(kind):
    base = generate(kind, shape=SMALL, seed=5)
    clean = generate(kind, shape=SMALL, seed=5, noise=False, nuisances=False)
    heavy = generate(kind, shape=SMALL, seed=5, noise=Noise(dose=5.0, gaussian=0.1),
                     nuisances=Nuisances(dislocations=25, bend_contours=3, texture=0.1,
                                         background=0.3, grains=0.05, blur_nm=1.0))
    for other in (clean, heavy):
        np.testing.assert_array_equal(base.labels, other.labels)
        assert base.truth == other.truth
        assert base.instance_classes == other.instance_classes
        assert not np.array_equal(base.image, other.image)


def test_toggling_one_nuisance_keeps_the_others():
    nuis = Nuisances(dislocations=0, bend_contours=1, texture=0.05)
    a = generate("tem-loops", shape=SMALL, seed=9, noise=False, nuisances=nuis)
    b = generate("tem-loops", shape=SMALL, seed=9, noise=False,
                 nuisances=replace(nuis, dislocations=6, dislocation_contrast=0.5))
    diff = np.abs(a.image.astype(int) - b.image.astype(int))
    # dislocation lines are thin dark curves: they change few pixels, and only darken
    assert 0 < np.mean(diff > 0) < 0.25
    assert np.mean(b.image.astype(int) - a.image.astype(int)) < 0
    np.testing.assert_array_equal(a.labels, b.labels)


def test_dislocation_lines_keep_clear_of_labels():
    nuis = Nuisances(dislocations=30, dislocation_contrast=0.6, bend_contours=0, texture=0,
                     background=0, blur_nm=0)
    a = generate("tem-loops", shape=(256, 256), seed=11, noise=False, nuisances=nuis.none())
    b = generate("tem-loops", shape=(256, 256), seed=11, noise=False, nuisances=nuis)
    changed = a.image != b.image
    assert changed.sum() > 500
    assert not np.any(changed & (b.labels > 0))


@pytest.mark.parametrize("kind", KINDS)
def test_objects_have_their_contrast(kind):
    s = generate(kind, shape=(256, 256), seed=2, noise=False, nuisances=False)
    img = s.image.astype(float)
    bg = np.median(img[s.labels == 0])
    for t in s.truth:
        if t["area_px"] < 4 or t["appearance"] == "ring":
            continue  # rings: the line carries the contrast, checked below
        mean = img[s.labels == t["id"]].mean()
        assert np.sign(mean - bg) == np.sign(t["contrast"]), t
    for t in s.truth:
        if t["appearance"] == "ring" and not t["touches_edge"]:
            mean = img[s.labels == t["id"]].mean()
            assert np.sign(mean - bg) == np.sign(t["contrast"]), t


def test_n_objects_and_crowding():
    s = generate("tem-loops", shape=(256, 256), seed=0, n_objects=12)
    assert len(s.truth) == 12 and s.metadata["n_requested"] == 12
    crowded = generate("tem-voids", shape=(64, 64), seed=0, n_objects=400)
    assert 0 < len(crowded.truth) < 400 == crowded.metadata["n_requested"]
    check_labels_against_truth(crowded.labels, crowded.truth, crowded.pixel_size.x_nm)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Unknown synthetic kind"):
        generate("tem-cats")
    with pytest.raises(ValueError, match="dtype"):
        generate(dtype="float32")
    with pytest.raises(ValueError, match="at least 16"):
        generate(shape=(8, 100))
    with pytest.raises(ValueError, match="pixel_size_nm"):
        generate(pixel_size_nm=0)
    with pytest.raises(TypeError):
        generate(noise="loud")


def test_write_sample_round_trip(tmp_path):
    s = generate("tem-mixed", shape=SMALL, pixel_size_nm=0.39, seed=3, dtype="uint16")
    paths = write_sample(s, tmp_path / "out", stem="mix")
    assert paths["image"].name == "mix.tif" and paths["truth"].name == "mix_truth.json"
    assert all(p.exists() for p in paths.values())
    with tifffile.TiffFile(paths["image"]) as tif:
        np.testing.assert_array_equal(tif.asarray(), s.image)
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.39, rel=1e-6)
        num, den = tif.pages[0].tags["YResolution"].value
        assert den / num == pytest.approx(0.39, rel=1e-6)
        assert tif.imagej_metadata["unit"] == "nm"
    rec = read_labels(paths["labels"])
    np.testing.assert_array_equal(rec.labels, s.labels)
    assert rec.instance_classes == s.instance_classes
    assert rec.pixel_size.x_nm == pytest.approx(0.39)
    truth = json.loads(paths["truth"].read_text())
    assert truth == json.loads(s.truth_json())
    assert truth["pixel_size"]["x_nm"] == 0.39 and truth["kind"] == "tem-mixed"
    assert truth["seed"] == 3 and len(truth["classes"]) == 6


def _measure_cli_output(out_dir, kind, seeds):
    """Independent regionprops pass over the written files against the JSON truth."""
    for seed in seeds:
        stem = out_dir / f"{kind}_{seed:04d}"
        with tifffile.TiffFile(f"{stem}.tif") as tif:
            num, den = tif.pages[0].tags["XResolution"].value
            ps = den / num
            image = tif.asarray()
        labels = tifffile.imread(f"{stem}_labels.tif").astype(np.int32)
        truth = json.loads(stem.with_name(stem.name + "_truth.json").read_text())
        side = json.loads(sidecar_path(f"{stem}_labels.tif").read_text())
        assert truth["seed"] == seed and truth["kind"] == kind
        assert ps == pytest.approx(truth["pixel_size"]["x_nm"], rel=1e-6)
        assert list(image.shape) == truth["shape"] == list(labels.shape)
        records = truth["truth"]
        assert len(regionprops(labels)) == len(records) > 0
        assert check_labels_against_truth(labels, records, ps) >= 1
        for t in records:
            assert side["instance_classes"][str(t["id"])] == t["class_id"]
            if not (t["touches_edge"] or t["clipped"]):
                # areas in nm² agree within the diameter tolerance as well
                a_px = t["area_nm2"] / ps**2
                d = 2 * math.sqrt(a_px / math.pi)
                tol_area = math.pi / 2 * d * _diameter_tol(d) + math.pi / 4 * _diameter_tol(d) ** 2
                assert abs(t["area_px"] - a_px) <= tol_area


@pytest.mark.parametrize("kind, size", [("tem-loops", "0.39"), ("sem-pits", "20")])
def test_cli_synth_output_matches_its_json_truth(tmp_path, capsys, kind, size):
    out = tmp_path / "synth"
    rc = main(["synth", "--kind", kind, "--n", "3", "--size", "256", "320", "--pixel-size",
               size, "--seed", "4", "--out", str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert all(f"seed {s}" in line for s, line in zip((4, 5, 6), lines, strict=True))
    assert f"{size} nm/px" in lines[0] and "instances" in lines[0]
    _measure_cli_output(out, kind, (4, 5, 6))


def test_cli_synth_options(tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["synth", "--kind", "tem-dots", "--size", "64", "64", "--objects", "5",
               "--no-noise", "--no-nuisances", "--dtype", "uint16", "--prefix", "dots",
               "--out", str(out)])
    assert rc == 0
    img = tifffile.imread(out / "dots_0000.tif")
    assert img.dtype == np.uint16
    truth = json.loads((out / "dots_0000_truth.json").read_text())
    assert len(truth["truth"]) == 5 and truth["metadata"]["noise"] is None
    rc = main(["synth", "--kind", "tem-dots", "--n", "0", "--out", str(out)])
    assert rc == 1
    assert "--n must be at least 1" in capsys.readouterr().err


def test_sample_data_functions():
    assert {"tem_loops", "stem_loops", "sem_pits"} <= set(SAMPLES)
    expected = {"tem_loops": ((512, 512), 0.39, "tem-loops"),
                "stem_loops": ((1024, 1024), 1.0, "stem-loops"),
                "sem_pits": ((1024, 1024), 20.0, "sem-pits")}
    for name, (shape, ps, kind) in expected.items():
        display, func = SAMPLES[name]
        assert isinstance(display, str) and display
        s = func()
        assert s.image.shape == shape and s.pixel_size.x_nm == ps and s.kind == kind
        assert len(s.truth) > 5
        layers = layer_data(s)
        assert [ld[2] for ld in layers] == ["image", "labels"]
        assert layers[0][1]["scale"] == (ps, ps)
        assert layers[1][1]["metadata"]["instance_classes"] == s.instance_classes
