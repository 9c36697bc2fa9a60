"""``microseg measure`` and ``microseg evaluate`` end to end on files on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_microseg.cli import main
from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.labels_io import write_labels
from napari_microseg.core.measure import read_csv, read_tables
from tiff_samples import sem_with_bar, write_fei_tiff


def _squares(shape, spec):
    lab = np.zeros(shape, np.uint16)
    for k, (r, c, s) in spec.items():
        lab[r : r + s, c : c + s] = k
    return lab


@pytest.fixture
def tem(tmp_path):
    img = np.random.default_rng(0).integers(0, 4000, (120, 160)).astype(np.uint16)
    ip = tmp_path / "tem.tif"
    tifffile.imwrite(ip, img)  # no calibration in the file
    # 1, 2 inside; 3 touches the left border; 4 touches the bottom border
    lab = _squares(img.shape, {1: (20, 20, 8), 2: (60, 90, 10), 3: (50, 0, 6), 4: (114, 70, 6)})
    lp = tmp_path / "labels.tif"
    write_labels(lp, lab, instance_classes={1: 1, 2: 3, 3: 1})
    return ip, lp, img, lab


def test_measure_end_to_end_with_summary_and_thickness(tem, tmp_path, capsys):
    ip, lp, img, lab = tem
    out, summ = tmp_path / "objects.csv", tmp_path / "summary.csv"
    rc = main(
        [
            "measure",
            str(ip),
            str(lp),
            "--out",
            str(out),
            "--summary",
            str(summ),
            "--pixel-size",
            "0.5",
            "--edges",
            "exclude",
            "--thickness-nm",
            "100",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "0.5 nm/px" in text and "barrier hardening" in text
    objs, prov = read_csv(out)
    assert list(objs["label"]) == [1, 2, 3, 4]
    assert list(objs["class_name"]) == ["<111> loop", "black dot", "<111> loop", "unclassified"]
    assert objs["area_nm2"].tolist() == [64 * 0.25, 100 * 0.25, 36 * 0.25, 36 * 0.25]
    assert objs["intensity_mean"][0] == pytest.approx(img[20:28, 20:28].mean())
    s, prov2 = read_csv(summ)
    assert prov2 == prov
    row = s.set_index("class_name").loc["all"]
    area_nm2 = 120 * 160 * 0.25
    assert row["count"] == 2  # 3 and 4 touch the border
    assert row["density_per_nm2"] == pytest.approx(2 / area_nm2)
    assert row["density_per_m3"] == pytest.approx(2 / area_nm2 / 100 * 1e27)
    assert prov["pixel_size"]["x_nm"] == 0.5 and prov["pixel_size_source"] == "user"
    assert prov["settings"]["edge_mode"] == "exclude"
    assert prov["settings"]["thickness_nm"] == 100
    assert prov["image_file"].endswith("tem.tif") and len(prov["image_sha256"]) == 64


def test_measure_sem_info_bar_is_not_analysed(tmp_path):
    ny, nx, bar = 600, 512, 64
    ip = tmp_path / "sem.tif"
    write_fei_tiff(ip, sem_with_bar(ny, nx, bar), 3e-9, scan_rows=ny - bar)
    lab = _squares((ny, nx), {1: (100, 100, 10), 2: (300, 300, 12), 3: (560, 30, 8)})  # 3 in bar
    lp = tmp_path / "lab.tif"
    tifffile.imwrite(lp, lab)  # plain TIFF, no sidecar
    out = tmp_path / "m.json"
    assert (
        main(
            ["measure", str(ip), str(lp), "--out", str(out), "--edges", "guard", "--guard-nm", "30"]
        )
        == 0
    )
    tables, prov = read_tables(out)
    s = tables["summary"].set_index("class_name").loc["all"]
    g = 10  # 30 nm at 3 nm/px
    assert s["reference_area_nm2"] == pytest.approx((ny - bar - 2 * g) * (nx - 2 * g) * 9.0)
    assert s["count"] == 2
    assert s["edge_mode"] == "guard" and s["guard_nm"] == 30.0
    assert prov["pixel_size_source"] == "fei_metadata"
    assert not tables["objects"].set_index("label").loc[3, "centroid_in_analysed"]


def test_measure_errors_are_one_line(tem, tmp_path, capsys):
    ip, lp, _, _ = tem
    out = tmp_path / "o.csv"
    assert main(["measure", str(ip), str(lp), "--out", str(out), "--edges", "guard"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--guard-nm" in err[0]
    assert main(["measure", str(ip), str(lp), "--out", str(out), "--thickness-nm", "50"]) == 1
    assert "pixel size" in capsys.readouterr().err
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((50, 50), np.uint16))
    assert main(["measure", str(small), str(lp), "--out", str(out)]) == 1
    assert "50 x 50" in capsys.readouterr().err


def test_measure_uncalibrated_px_and_classes_file(tem, tmp_path):
    ip, lp, _, _ = tem
    cls = tmp_path / "classes.json"
    cls.write_text(
        json.dumps(
            {
                "classes": [{"id": 1, "name": "void"}, {"id": 2, "name": "pit"}],
                "instance_classes": {"1": 2, "2": 2},
            }
        )
    )
    out = tmp_path / "o.xlsx"
    assert main(["measure", str(ip), str(lp), "--out", str(out), "--classes", str(cls)]) == 0
    tables, prov = read_tables(out)
    t = tables["objects"]
    assert "area_px2" in t and "area_nm2" not in t and prov["unit"] == "px"
    assert list(t["class_name"]) == ["pit", "pit", "unclassified", "unclassified"]
    assert "density_per_px2" in tables["summary"]


def test_evaluate_end_to_end(tmp_path, capsys):
    shape = (100, 100)
    gt = _squares(shape, {1: (10, 10, 10), 2: (40, 40, 10), 3: (70, 70, 10), 4: (10, 70, 10)})
    pred = _squares(shape, {1: (10, 10, 10), 2: (42, 40, 10), 5: (80, 5, 8)})  # 3 and 4 missed
    gp, pp = tmp_path / "gt.tif", tmp_path / "pred.tif"
    ps = PixelSize.isotropic(2.0, "user")
    write_labels(gp, gt, instance_classes={1: 1, 2: 1, 3: 1, 4: 1}, pixel_size=ps)
    write_labels(pp, pred, instance_classes={1: 1, 2: 1, 5: 1}, pixel_size=ps)
    assert main(["evaluate", str(pp), str(gp), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    d = rep["detection"]
    assert (d["tp"], d["fp"], d["fn"]) == (2, 1, 2)
    assert d["precision"] == pytest.approx(2 / 3) and d["recall"] == pytest.approx(0.5)
    assert d["f1"] == pytest.approx(2 * 2 / 7)
    assert rep["unit"] == "nm"
    # IoU of the shifted square: 80 / 120
    assert rep["iou_at"]["50"] == pytest.approx(0.5) and rep["iou_at"]["75"] == pytest.approx(0.25)
    assert main(["evaluate", str(pp), str(gp), "--iou", "0.7"]) == 0
    text = capsys.readouterr().out
    assert "TP 1" in text and "F1" in text and "<111> loop" in text


def test_evaluate_relative_domain_transferability(tmp_path, capsys):
    shape = (60, 60)
    gt = _squares(shape, {1: (10, 10, 20)})
    ps = PixelSize.isotropic(1.0, "user")
    gp, same, half = tmp_path / "gt.tif", tmp_path / "same.tif", tmp_path / "half.tif"
    write_labels(gp, gt, instance_classes={1: 1}, pixel_size=ps)
    write_labels(same, gt, instance_classes={1: 1}, pixel_size=ps)
    h = gt.copy()
    h[10:20, 10:30] = 0  # keep half of the square: IoU 0.5
    write_labels(half, h, instance_classes={1: 1}, pixel_size=ps)
    assert main(["evaluate", str(same), str(gp), "--json"]) == 0
    source = tmp_path / "source.json"
    source.write_text(capsys.readouterr().out)
    assert main(["evaluate", str(half), str(gp), "--json", "--source-report", str(source)]) == 0
    rdt = json.loads(capsys.readouterr().out)["rdt"]
    assert rdt["miou_source"] == pytest.approx(1.0) and rdt["miou_target"] == pytest.approx(0.5)
    assert rdt["rdt"] == pytest.approx(-0.5)
    assert main(["evaluate", str(half), str(gp), "--source-report", str(tmp_path / "nope.json")]) == 1
