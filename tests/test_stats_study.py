"""Studies over many fields: per-field and pooled tables, outliers, folders, hardening, comparison."""

import json

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.measure import (
    HardeningParameters,
    dispersed_barrier_hardening,
    export_tables,
    make_provenance,
    measure_image,
    measure_objects,
)
from napari_microseg.core.stats import (
    compare_studies,
    hardening_interval,
    study_from_folder,
    study_from_tables,
    study_hardening,
)

CLASSES = ("<111> loop", "black dot")
PS = PixelSize.isotropic(0.5, "user", "test")


def synthetic_tables(rng, n_fields, density_per_um2=50.0, area_um2=1.0, median_nm=10.0,
                     sigma=0.4, unit="nm"):
    """Object tables with a Poisson number of objects and log-normal diameters (nm)."""
    tables = {}
    for i in range(n_fields):
        n = rng.poisson(density_per_um2 * area_um2)
        d = rng.lognormal(np.log(median_nm), sigma, n)
        t = pd.DataFrame({
            "class_name": rng.choice(CLASSES, n),
            f"area_{unit}2": np.pi * d**2 / 4,
            f"equivalent_diameter_{unit}": d,
            "centroid_in_analysed": True,
        })
        t.attrs["unit"] = unit
        tables[f"field{i:03d}"] = t
    fields = pd.DataFrame({"name": list(tables), "area": area_um2, "unit": "µm" if unit == "nm" else "px"})
    return tables, fields


def test_pooled_values_are_the_totals_and_name_their_intervals():
    rng = np.random.default_rng(0)
    tables, fields = synthetic_tables(rng, 8)
    fields["area"] = np.linspace(0.5, 2.0, 8)
    s = study_from_tables(tables, fields, n_boot=200)
    n = np.array([len(t) for t in tables.values()])
    allrow = s.pooled[s.pooled["class_name"] == "all"].iloc[0]
    assert allrow["count"] == n.sum()
    assert allrow["density"] == pytest.approx(n.sum() / fields["area"].sum())
    assert allrow["analysed_area"] == pytest.approx(fields["area"].sum())
    assert "between-field" in allrow["density_interval"]
    assert "Garwood" in allrow["density_poisson_interval"]
    assert allrow["density_ci_low"] < allrow["density"] < allrow["density_ci_high"]
    pf = s.per_field[s.per_field["class_name"] == "all"]
    assert list(pf["count"]) == list(n)
    assert np.allclose(pf["density"], n / fields["area"])
    assert (pf["density_interval"].str.contains("Garwood")).all()
    d_all = np.concatenate([t["equivalent_diameter_nm"] for t in tables.values()])
    assert allrow["mean_size"] == pytest.approx(d_all.mean())
    assert allrow["median_size"] == pytest.approx(np.median(d_all))
    # classes add up
    cls = s.pooled[s.pooled["class_name"] != "all"]
    assert set(cls["class_name"]) == set(CLASSES) and cls["count"].sum() == n.sum()
    assert set(s.to_tables()) == {"pooled", "per_field", "outliers", "distributions", "lognormal",
                                  "histograms", "fields"}
    h = s.histograms[s.histograms["class_name"] == "all"]
    assert h["count"].sum() == n.sum()


def test_one_field_uses_the_poisson_interval():
    rng = np.random.default_rng(1)
    tables, fields = synthetic_tables(rng, 1)
    s = study_from_tables(tables, fields, n_boot=200)
    r = s.pooled.iloc[0]
    assert "Poisson" in r["density_interval"]
    assert r["density_ci_low"] == pytest.approx(r["density_poisson_ci_low"])


@pytest.mark.slow
def test_pooled_density_interval_covers_over_simulated_studies():
    """Whole studies of 10 fields whose local density varies: the pooled interval covers the truth.

    The interval itself (:func:`between_field_ci`) is checked over 1,000 simulated studies
    in test_stats_intervals; here 200 full studies check that the study uses it right.
    """
    rng = np.random.default_rng(2)
    hits = 0
    n_studies = 200
    for _ in range(n_studies):
        area = rng.uniform(0.5, 2.0, 10)
        rho = 40.0 * rng.gamma(1 / 0.3**2, 0.3**2, 10)
        tables = {}
        for i in range(10):
            n = rng.poisson(rho[i] * area[i])
            t = pd.DataFrame({"class_name": np.full(n, "a"), "area_nm2": np.ones(n),
                              "equivalent_diameter_nm": np.ones(n)})
            t.attrs["unit"] = "nm"
            tables[str(i)] = t
        s = study_from_tables(tables, pd.DataFrame({"name": list(tables), "area": area, "unit": "µm"}),
                              n_boot=1)
        r = s.pooled.iloc[0]
        hits += r["density_ci_low"] <= 40.0 <= r["density_ci_high"]
    assert 0.90 <= hits / n_studies <= 0.99


def test_an_outlier_field_is_flagged_with_a_reason():
    rng = np.random.default_rng(3)
    tables, fields = synthetic_tables(rng, 12)
    hot, _ = synthetic_tables(rng, 1, density_per_um2=200.0)
    tables["field005"] = hot["field000"]
    s = study_from_tables(tables, fields, n_boot=200)
    flagged = s.outliers[(s.outliers["class_name"] == "all") & (s.outliers["quantity"] == "density")]
    assert list(flagged["field"]) == ["field005"]
    assert "above the median" in flagged["reason"].iloc[0]
    assert not (s.outliers["field"] != "field005").any()
    allrow = s.pooled[s.pooled["class_name"] == "all"].iloc[0]
    assert allrow["dispersion_pvalue"] < 1e-6  # the fields differ more than counting noise


def test_homogeneous_fields_flag_nothing():
    rng = np.random.default_rng(4)
    flagged = 0
    for _ in range(10):
        tables, fields = synthetic_tables(rng, 30)
        flagged += len(study_from_tables(tables, fields, n_boot=100).outliers)
    # 10 studies x 30 fields x 3 classes x 2 quantities of pure noise: the threshold is the
    # Bonferroni 5 % level per study, so about 0.5 false flags are expected in all
    assert flagged <= 2


def test_inputs_are_checked():
    rng = np.random.default_rng(5)
    tables, fields = synthetic_tables(rng, 2)
    with pytest.raises(MicrosegError, match="name different fields"):
        study_from_tables(tables, fields.iloc[:1])
    px, _ = synthetic_tables(rng, 1, unit="px")
    with pytest.raises(MicrosegError, match="mix"):
        study_from_tables({**tables, "p": px["field000"]},
                          pd.concat([fields, pd.DataFrame({"name": ["p"], "area": [1.0], "unit": ["px"]})]))
    bad = fields.assign(area=[1.0, -1.0])
    with pytest.raises(MicrosegError, match="positive"):
        study_from_tables(tables, bad)
    with pytest.raises(MicrosegError, match="at least one"):
        study_from_tables({}, None)


def _labelled(rng, n_discs, shape=(256, 256)):
    lab = np.zeros(shape, np.int32)
    for i in range(1, n_discs + 1):
        c = rng.integers(10, shape[0] - 10, 2)
        lab[disk(tuple(c), rng.uniform(2, 6), shape=shape)] = i
    return lab


def test_fields_from_measured_tables_and_from_a_folder_of_measure_outputs(tmp_path):
    rng, ps = np.random.default_rng(6), PS
    tables = {}
    for i in range(3):
        res = measure_image(_labelled(rng, 25), ps)
        tables[f"img{i}"] = res.table
        prov = make_provenance(pixel_size=ps, settings=res.settings_record())
        export_tables(tmp_path / f"img{i}.csv", res.tables(), prov)
    direct = study_from_tables(tables)  # analysed areas from the tables' attrs
    assert direct.fields["area"].iloc[0] == pytest.approx(256 * 256 * 0.25 / 1e6)
    folder = study_from_folder(tmp_path, n_boot=200)
    assert set(folder.fields["name"]) == {"img0", "img1", "img2"}
    pd.testing.assert_series_equal(direct.per_field["count"], folder.per_field["count"])
    assert np.allclose(direct.pooled["density"], folder.pooled["density"])


def test_a_batch_output_folder_is_read(tmp_path):
    rng, ps = np.random.default_rng(7), PS
    counts = {}
    for i in range(3):
        res = measure_image(_labelled(rng, 20), ps)
        table = res.table.copy()
        table["counted"] = np.arange(len(table)) % 4 != 0  # a counting rule dropped some
        export_tables(tmp_path / f"im{i}_objects.csv", {"objects": table}, make_provenance(pixel_size=ps))
        row = {"unit": "nm", "reference_area_nm2": 200.0 * 200.0 * 0.25}
        rec = {"status": "ok", "name": f"im{i}", "row": row,
               "outputs": {"objects": str(tmp_path / f"im{i}_objects.csv")}}
        (tmp_path / f"im{i}.record.json").write_text(json.dumps(rec))
        counts[f"im{i}"] = int(table["counted"].sum())
    (tmp_path / "bad.record.json").write_text(json.dumps({"status": "error", "row": {}}))
    s = study_from_folder(tmp_path, n_boot=200)
    pf = s.per_field[s.per_field["class_name"] == "all"].set_index("field")
    assert pf["count"].to_dict() == counts
    assert pf["analysed_area"].iloc[0] == pytest.approx(0.01)


def test_hardening_interval_collapses_to_the_measure_result_without_uncertainty():
    rng, ps = np.random.default_rng(8), PS
    lab = _labelled(rng, 30)
    classes = {i: (1 if i % 2 else 3) for i in range(1, 31)}
    table = measure_objects(lab, ps, instance_classes=classes)
    ref = dispersed_barrier_hardening(table, 80.0)
    s = study_from_tables({"f": table}, n_boot=200)
    exact = s.pooled.copy()
    for c in ("density", "mean_size"):
        exact[f"{c}_ci_low"] = exact[f"{c}_ci_high"] = exact[c]
    h = hardening_interval(exact, 80.0).set_index("class_name")
    for _, r in ref.per_class.iterrows():
        assert h.loc[r["class_name"], "delta_sigma_mpa"] == pytest.approx(r["delta_sigma_mpa"])
        assert h.loc[r["class_name"], "ci_low"] == pytest.approx(r["delta_sigma_mpa"])
    assert h.loc["total (root-sum-square)", "delta_sigma_mpa"] == pytest.approx(ref.total_rss_mpa)
    wide = study_hardening(s, 80.0, thickness_sd_nm=10.0, alpha_sd=0.02).set_index("class_name")
    assert wide.loc["<111> loop", "ci_low"] < ref.per_class.iloc[0]["delta_sigma_mpa"] < wide.loc["<111> loop", "ci_high"]
    assert "Monte Carlo" in wide["interval"].iloc[0]


def test_hardening_interval_covers_the_true_strengthening():
    """1,000 simulated measurements: counts, sizes, thickness and alpha all uncertain."""
    rng = np.random.default_rng(9)
    p = HardeningParameters()
    rho, med, s_log, thick, t_sd, alpha, a_sd, area = 60.0, 8.0, 0.3, 100.0, 8.0, 0.11, 0.01, 2.0
    from napari_microseg.core.measure import dbh_mpa

    mean_d = med * np.exp(s_log**2 / 2)
    truth = dbh_mpa(alpha, rho * 1e12 / (thick * 1e-9) * mean_d * 1e-9, p)
    hits = 0
    for i in range(1000):
        n = rng.poisson(rho * area)
        d = rng.lognormal(np.log(med), s_log, n)
        t_obs = rng.normal(thick, t_sd)  # the thickness measurement's error
        a_obs = rng.normal(alpha, a_sd)  # the literature alpha's error
        from napari_microseg.core.stats import mean_t_ci, rate_ci

        dl, dh = rate_ci(n, area)
        ml, mh = mean_t_ci(d)
        row = pd.DataFrame({"class_name": ["<111> loop"], "density": [n / area], "density_ci_low": [dl],
                            "density_ci_high": [dh], "mean_size": [d.mean()], "mean_size_ci_low": [ml],
                            "mean_size_ci_high": [mh]})
        h = hardening_interval(row, t_obs, thickness_sd_nm=t_sd, alpha={"<111> loop": a_obs},
                               alpha_sd=a_sd, n_mc=2000, seed=i)
        hits += h["ci_low"].iloc[0] <= truth <= h["ci_high"].iloc[0]
    assert 0.93 <= hits / 1000 <= 0.97


@pytest.mark.slow
def test_compare_detects_a_difference_and_not_a_null():
    rng = np.random.default_rng(10)
    ta, fa = synthetic_tables(rng, 6, density_per_um2=60.0, median_nm=10.0)
    tb, fb = synthetic_tables(rng, 6, density_per_um2=90.0, median_nm=12.0)
    a, b = study_from_tables(ta, fa, n_boot=300), study_from_tables(tb, fb, n_boot=300)
    res = compare_studies(a, b, n_boot=300)
    d = res["densities"].set_index("class_name").loc["all"]
    assert d["difference_ci_low"] > 0 and d["ratio_ci_low"] > 1
    assert d["difference_ci_low"] < 30 < d["difference_ci_high"]
    s = res["sizes"].set_index("class_name").loc["all"]
    assert s["ks_pvalue"] < 0.001 and s["ad_pvalue"] < 0.01
    assert s["median_difference_ci_low"] > 0 and s["mean_ratio_ci_low"] > 1
    # the same population twice: no difference at 5 % in most seeds
    rejections = 0
    for seed in range(40):
        r = np.random.default_rng(100 + seed)
        ta, fa = synthetic_tables(r, 3)
        tb, fb = synthetic_tables(r, 3)
        out = compare_studies(study_from_tables(ta, fa, n_boot=100),
                              study_from_tables(tb, fb, n_boot=100), n_boot=100, seed=seed)
        srow = out["sizes"].set_index("class_name").loc["all"]
        rejections += srow["ks_pvalue"] < 0.05 or srow["ad_pvalue"] < 0.05
    assert rejections <= 6  # ~5 % each, two tests: expect about 3 of 40


def test_compare_single_fields_uses_counting_noise():
    rng = np.random.default_rng(11)
    ta, fa = synthetic_tables(rng, 1, density_per_um2=100.0)
    tb, fb = synthetic_tables(rng, 1, density_per_um2=100.0)
    res = compare_studies(study_from_tables(ta, fa, n_boot=100), study_from_tables(tb, fb, n_boot=100),
                          n_boot=100)
    d = res["densities"].iloc[0]
    assert "Poisson" in d["interval"] and d["ratio_ci_low"] < 1 < d["ratio_ci_high"]


def test_real_creme_loops_as_one_study():
    """The 12 annotated creme-316L fields (ground-truth masks) as one study."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "creme-316L-loops"
    if not root.is_dir():
        pytest.skip("shared/data/creme-316L-loops is not beside the checkout")
    from napari_microseg.core.prompting.eval_data import load_creme

    ps = PixelSize.isotropic(200.0 / 512, "user", "dataset field of view 200 nm")
    samples = load_creme(root)
    tables = {s.name: measure_objects(s.target, ps) for s in samples}
    study = study_from_tables(tables, n_boot=300)
    r = study.pooled.iloc[0]
    n_true = sum(int(len(np.unique(s.target)) - 1) for s in samples)
    assert len(samples) == 12 and r["count"] == n_true
    assert r["density"] == pytest.approx(n_true / (12 * 0.2**2))  # 200 nm x 200 nm fields
    assert r["density_ci_low"] < r["density"] < r["density_ci_high"]
    assert r["median_size_ci_low"] <= r["median_size"] <= r["median_size_ci_high"]
    assert np.isfinite(study.lognormal.iloc[0]["mu"])


def test_a_folder_mixing_px_and_nm_keeps_the_calibrated_fields(tmp_path):
    rng = np.random.default_rng(12)
    for i, ps in enumerate([PS, PS, PixelSize.uncalibrated()]):
        res = measure_image(_labelled(rng, 10), ps)
        export_tables(tmp_path / f"f{i}.csv", res.tables(),
                      make_provenance(pixel_size=ps, settings=res.settings_record()))
    with pytest.warns(UserWarning, match="1 field.*px left out.*f2"):
        s = study_from_folder(tmp_path, n_boot=100)
    assert list(s.fields["name"]) == ["f0", "f1"] and s.unit == "nm"
