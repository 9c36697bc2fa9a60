"""The batch report's statistics section: the batch as one study, with intervals."""

from __future__ import annotations

import pandas as pd
import pytest

from batch_helpers import register_tiny_unet, write_micrographs
from napari_microseg.core.batch import InferenceSettings, Recipe, run_batch
from napari_microseg.core.batch.report_stats import batch_phases, batch_study
from napari_microseg.core.labels_io import read_labels
from napari_microseg.core.measure import MeasureSettings
from napari_microseg.core.models import PostprocessSettings


@pytest.fixture
def recipe(tmp_path, monkeypatch, torch_one_thread):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    tiny = register_tiny_unet()
    return Recipe.for_model(
        tiny.name,
        inference=InferenceSettings(tile=96, halo=8),
        postprocess=PostprocessSettings(thresholds={"1": 0.4, "3": 0.35}, min_size=2.0, min_size_unit="nm2"),
        measure=MeasureSettings(edges="exclude", bins=12),
    )


def test_report_has_the_study_with_intervals(recipe, tmp_path):
    write_micrographs(tmp_path / "in", 3, size=96)
    out = tmp_path / "out"
    run = run_batch(recipe, [tmp_path / "in"], out, workers=0)
    assert run.count("ok") == 3
    html = run.report.read_text(encoding="utf-8")
    for heading in ("<h2>Statistics</h2>", "Pooled summary", "Spread between fields", "Outlier fields",
                    "Size distribution", "Phase fractions", "Per field (3 fields"):
        assert heading in html, heading
    assert "could not be computed" not in html
    # the study's fields are the batch's images: counts and areas as in summary.csv
    summary = pd.read_csv(out / "summary.csv").set_index("name")
    study, left, _ = batch_study(run.all_results, recipe, out)
    assert left == [] and sorted(study.fields["name"]) == sorted(summary.index)
    pf = study.per_field[study.per_field["class_name"] == "all"].set_index("field")
    for name, row in summary.iterrows():
        assert pf.loc[name, "count"] == row["n_objects"]
        assert pf.loc[name, "density"] == pytest.approx(row["density_per_um2"], rel=1e-9)
    # the pooled density is Σn / ΣA over the analysed areas, and the report prints it with its interval
    pooled = study.pooled.set_index("class_name").loc["all"]
    expect = summary["n_objects"].sum() / (summary["reference_area_nm2"].sum() / 1e6)
    assert pooled["density"] == pytest.approx(expect, rel=1e-9)
    assert f"{pooled['density']:.4g}" in html and f"{pooled['density_ci_low']:.4g}" in html
    # every interval is named under its table
    assert "between-field t interval" in html and "exact Poisson" in html and "bootstrap" in html
    assert "ASTM E562" in html
    # the plots exist and the report points at them
    pngs = sorted(p.name for p in (out / "report_files").glob("stats_*.png"))
    assert "stats_density_per_field.png" in pngs and any(p.startswith("stats_sizes_") for p in pngs)
    for name in pngs:
        assert f"report_files/{name}" in html
    # phase fractions (a semantic model): exact pixel fractions of each labels image, summing to one
    phases, pooled_ph = batch_phases(run.all_results, recipe, study)
    for r in run.all_results:
        rec = read_labels(out / f"{r.name}_labels.tif")
        ph = phases[phases["field"] == r.name].set_index("class_name")
        assert ph["pixel_fraction"].sum() == pytest.approx(1.0, abs=1e-12)
        assert ph.loc["background", "pixel_fraction"] == pytest.approx((rec.labels == 0).mean(), abs=1e-12)
    assert f"{pooled_ph.set_index('class_name').loc['background', 'pixel_fraction']:.4g}" in html
