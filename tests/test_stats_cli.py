"""Statistics exports (plain CSV + sidecar, XLSX) and ``microseg stats`` / ``microseg compare`` end to end."""

import json

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from napari_microseg.cli import main
from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.measure import export_tables, make_provenance, measure_image
from napari_microseg.core.measure.export import read_tables
from napari_microseg.core.stats import export_stats, stats_provenance, study_from_tables

PS = PixelSize.isotropic(0.5, "user", "test")


def write_measured_folder(folder, rng, n_images=4, n_discs=30, radius=(2, 6)):
    """Measure outputs (``imgN.csv`` + ``imgN_summary.csv``) as ``microseg measure`` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        lab = np.zeros((200, 200), np.int32)
        for j in range(1, n_discs + 1):
            c = rng.integers(8, 192, 2)
            lab[disk(tuple(c), rng.uniform(*radius), shape=lab.shape)] = j
        classes = {j: (1 if j % 3 else 3) for j in range(1, n_discs + 1)}
        res = measure_image(lab, PS, instance_classes=classes)
        export_tables(folder / f"img{i}.csv", res.tables(),
                      make_provenance(pixel_size=PS, settings=res.settings_record()))
    return folder


def test_exported_csv_and_xlsx_open_without_options(tmp_path):
    rng = np.random.default_rng(0)
    folder = write_measured_folder(tmp_path / "m", rng, n_images=2)
    tables = {p.stem: read_tables(p)[0]["objects"] for p in sorted(folder.glob("img?.csv"))}
    study = study_from_tables(tables, n_boot=100)
    prov = stats_provenance(inputs=[folder], settings=study.settings, unit=study.unit)
    files = export_stats(tmp_path / "out", study.to_tables(), prov, xlsx=True)
    assert {f.name for f in files} == {f"{n}.csv" for n in study.to_tables()} | {"stats.xlsx"}
    for name, df in study.to_tables().items():
        plain = pd.read_csv(tmp_path / "out" / f"{name}.csv")  # no options at all
        assert list(plain.columns) == list(df.columns) and len(plain) == len(df)
        assert not (tmp_path / "out" / f"{name}.csv").read_text(encoding="utf-8").startswith("#")
        side = json.loads((tmp_path / "out" / f"{name}.csv.json").read_text(encoding="utf-8"))
        assert side["table"] == name and "Garwood" in json.dumps(side["provenance"]["methods"])
    pooled = pd.read_csv(tmp_path / "out" / "pooled.csv")
    assert np.allclose(pooled["density"], study.pooled["density"])
    assert pooled["density_interval"].str.len().min() > 10  # each row names its interval
    from openpyxl import load_workbook

    wb = load_workbook(tmp_path / "out" / "stats.xlsx", read_only=True)
    assert {"pooled", "per_field", "outliers", "provenance"} <= set(wb.sheetnames)
    wb.close()
    xl = pd.read_excel(tmp_path / "out" / "stats.xlsx", sheet_name="per_field")
    assert len(xl) == len(study.per_field)


def test_cli_stats_on_measure_outputs_and_batch_folder(tmp_path, capsys):
    rng = np.random.default_rng(1)
    folder = write_measured_folder(tmp_path / "m", rng)
    out = tmp_path / "stats"
    rc = main(["stats", str(folder), "--out", str(out), "--xlsx", "--thickness", "80",
               "--thickness-sd", "5", "--alpha", "0.11", "--alpha-sd", "<111> loop=0.01",
               "--n-boot", "200"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "4 field(s)" in text and "density" in text and "hardening" in text
    hard = pd.read_csv(out / "hardening.csv")
    assert {"<111> loop", "black dot", "total (root-sum-square)"} <= set(hard["class_name"])
    assert (hard["ci_low"] <= hard["delta_sigma_mpa"]).all() and (hard["delta_sigma_mpa"] <= hard["ci_high"]).all()
    pf = pd.read_csv(out / "per_field.csv")
    assert set(pf["field"]) == {f"img{i}" for i in range(4)}
    assert (out / "stats.xlsx").is_file()
    # single files work as inputs too, and the same numbers come out
    rc = main(["stats", *[str(p) for p in sorted(folder.glob("img?.csv"))], "--out", str(tmp_path / "s2"),
               "--n-boot", "200"])
    assert rc == 0
    a = pd.read_csv(out / "pooled.csv")
    b = pd.read_csv(tmp_path / "s2" / "pooled.csv")
    assert np.allclose(a["density"], b["density"]) and np.allclose(a["density_ci_low"], b["density_ci_low"])


def test_cli_compare_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(2)
    a = write_measured_folder(tmp_path / "a", rng, n_discs=20, radius=(2, 4))
    b = write_measured_folder(tmp_path / "b", rng, n_discs=40, radius=(4, 7))
    rc = main(["compare", str(a), str(b), "--out", str(tmp_path / "c"), "--n-boot", "200"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "B - A" in text and "KS p=" in text
    d = pd.read_csv(tmp_path / "c" / "densities.csv").set_index("class_name").loc["all"]
    assert d["difference_ci_low"] > 0 and d["ratio"] > 1.5
    s = pd.read_csv(tmp_path / "c" / "sizes.csv").set_index("class_name").loc["all"]
    assert s["ks_pvalue"] < 1e-3 and s["mean_difference_ci_low"] > 0


def test_cli_stats_measures_image_and_labels_pairs(tmp_path, capsys):
    import tifffile

    from napari_microseg.core.labels_io import write_labels

    rng = np.random.default_rng(4)
    argv = ["stats", "--out", str(tmp_path / "o"), "--pixel-size", "0.5", "--n-boot", "100"]
    total = 0
    for i in range(3):
        lab = np.zeros((120, 120), np.int32)
        for j in range(1, 11):
            c = rng.integers(8, 112, 2)
            lab[disk(tuple(c), 3, shape=lab.shape)] = j
        total += len(np.unique(lab)) - 1
        tifffile.imwrite(tmp_path / f"im{i}.tif", (rng.random(lab.shape) * 255).astype(np.uint8))
        write_labels(tmp_path / f"lab{i}.tif", lab)
        argv += ["--pair", str(tmp_path / f"im{i}.tif"), str(tmp_path / f"lab{i}.tif")]
    assert main(argv) == 0, capsys.readouterr().err
    pooled = pd.read_csv(tmp_path / "o" / "pooled.csv").set_index("class_name")
    assert pooled.loc["all", "count"] == total and pooled.loc["all", "n_fields"] == 3
    assert pooled.loc["all", "density"] == pytest.approx(total / (3 * 120 * 120 * 0.25 / 1e6))


@pytest.mark.parametrize("argv, message", [
    (["stats", "{tmp}/missing", "--out", "{tmp}/o"], "No such file or folder"),
    (["stats", "{tmp}/empty", "--out", "{tmp}/o"], "no batch records and no measure tables"),
    (["stats", "{tmp}/m", "--out", "{tmp}/m"], "is an input folder"),
    (["stats", "{tmp}/m", "--out", "{tmp}/o", "--alpha", "0.1"], "need --thickness"),
    (["stats", "{tmp}/m", "--out", "{tmp}/o", "--thickness", "80", "--alpha", "x"], "expected a number"),
])
def test_cli_stats_user_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    write_measured_folder(tmp_path / "m", np.random.default_rng(3), n_images=1)
    rc = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and message in err[0] and err[0].startswith("microseg stats: error:")
