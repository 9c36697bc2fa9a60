"""The statistics section of the batch report: the batch as one study, with intervals.

The finished images of the output folder are the fields of a study
(:func:`napari_microseg.core.stats.study.study_from_tables`, the same numbers as
the Statistics dock and ``microseg stats``): per-field table, pooled summary
weighted by analysed area with its intervals, the spread between fields,
outlier fields, the size distribution with its band and log-normal fit, and,
for a semantic (phase) model, phase fractions by pixel and point count. Images
measured in px are left out when calibrated ones are present (and named).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

#: Confidence level and bootstrap seed of the report's intervals.
CONF, SEED = 0.95, 0
#: Per-field rows shown in the HTML.
MAX_FIELD_ROWS = 500
#: Phase fractions are computed for at most this many fields (each labels image is read again).
MAX_PHASE_FIELDS = 500
#: Point-count grid spacing of the report's phase fractions (px).
PHASE_GRID_PX = 16
#: Columns of the pooled table, in order (the ``*_interval`` texts are listed under it).
POOLED_COLUMNS = (
    "class_name", "n_fields", "count", "analysed_area", "density", "density_ci_low", "density_ci_high",
    "density_poisson_ci_low", "density_poisson_ci_high", "mean_size", "mean_size_ci_low",
    "mean_size_ci_high", "median_size", "median_size_ci_low", "median_size_ci_high", "area_fraction",
    "area_fraction_ci_low", "area_fraction_ci_high", "volume_density_per_m3", "volume_density_ci_low",
    "volume_density_ci_high",
)
SPREAD_COLUMNS = ("class_name", "n_fields", "density", "density_between_field_sd", "density_cv",
                  "dispersion_chi2", "dispersion_pvalue")
FIELD_COLUMNS = ("field", "analysed_area", "count", "count_ci_low", "count_ci_high", "density",
                 "density_ci_low", "density_ci_high", "mean_size", "mean_size_ci_low", "mean_size_ci_high",
                 "median_size", "median_size_ci_low", "median_size_ci_high", "area_fraction",
                 "area_fraction_ci_low", "area_fraction_ci_high")
DIST_COLUMNS = ("class_name", "n", "mean", "mean_ci_low", "mean_ci_high", "median", "median_ci_low",
                "median_ci_high", "d10", "d50", "d90", "d10_area", "d50_area", "d90_area")
FIT_COLUMNS = ("class_name", "n", "mu", "mu_ci_low", "mu_ci_high", "sigma", "sigma_ci_low", "sigma_ci_high",
               "ks_statistic", "ks_pvalue", "ad_statistic", "ad_critical_5pct", "ad_rejects_5pct")
PHASE_COLUMNS = ("field", "class_name", "n_fields", "pixel_fraction", "pixel_ci_low", "pixel_ci_high",
                 "point_fraction", "point_ci_low", "point_ci_high", "point_relative_accuracy_pct")


def batch_study(results, recipe, out_dir):
    """``(Study or None, names of fields left out, note)`` of the finished images of a batch."""
    from ..errors import MicrosegError
    from ..stats.sources import read_batch_folder
    from ..stats.study import study_from_tables

    done = {r.name for r in results if r.status in ("ok", "skipped")}
    if not done:
        return None, [], "No finished image."
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable records are errors of their own in the report
        tables, fields = read_batch_folder(out_dir)
    fields = fields[fields["name"].isin(done)].reset_index(drop=True)
    left = []
    if fields["unit"].nunique() > 1:
        left = list(fields.loc[fields["unit"] == "px", "name"])
        fields = fields[fields["unit"] != "px"].reset_index(drop=True)
    if not len(fields):
        return None, left, "No finished image with an objects table."
    try:
        study = study_from_tables({n: tables[n] for n in fields["name"]}, fields, conf=CONF, seed=SEED,
                                  bins=recipe.measure.bins, thickness_nm=recipe.measure.thickness_nm)
    except MicrosegError as e:
        return None, left, str(e)
    return study, left, ""


def batch_phases(results, recipe, study) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Phase fractions per field and pooled, for a semantic model's batch (else ``(None, None)``)."""
    from ..labels_io import read_labels
    from ..reading import read_micrograph
    from ..stats.phases import phase_fractions, pooled_phase_fractions

    if (recipe.model.get("card") or {}).get("task") != "semantic" or study is None:
        return None, None
    names = set(study.fields["name"])
    chosen = [r for r in results if r.name in names and "labels" in r.outputs][:MAX_PHASE_FIELDS]
    frames = []
    classes = {0: "background", **{int(c["id"]): c["name"] for c in recipe.classes}}
    for r in chosen:
        rec = read_labels(r.outputs["labels"])
        lab = np.asarray(rec.labels)
        lut = np.zeros(int(lab.max()) + 1 if lab.size else 1, np.int64)
        for i, c in rec.instance_classes.items():
            if 0 < int(i) < lut.size:
                lut[int(i)] = int(c)
        mask = None
        if Path(r.image).is_file():
            try:
                mask = read_micrograph(r.image).analysis_mask
            except Exception:  # the input went away or changed: analyse every pixel
                mask = None
        sem = lut[lab]
        df = phase_fractions(sem, classes, grid_spacing_px=min(PHASE_GRID_PX, *sem.shape),
                             analysis_mask=mask, conf=CONF)
        frames.append(df.assign(field=r.name))
    if not frames:
        return None, None
    pooled = pooled_phase_fractions([f.drop(columns="field") for f in frames], conf=CONF)
    return pd.concat(frames, ignore_index=True), pooled


def _cols(df: pd.DataFrame, cols) -> pd.DataFrame:
    return df[[c for c in cols if c in df.columns]]


def _methods(df: pd.DataFrame) -> str:
    """The ``*_interval`` columns of a table as a definition list (first row's text)."""
    items = []
    for c in df.columns:
        if c.endswith("_interval") or c == "interval":
            vals = [str(v) for v in dict.fromkeys(df[c].dropna()) if str(v)]
            if vals:
                what = c[: -len("_interval")] if c != "interval" else "interval"
                items.append(f"<li><b>{escape(what)}</b>: {escape('; '.join(vals))}</li>")
    return f"<ul class='m'>{''.join(items)}</ul>" if items else ""


def statistics_section(results, recipe, out_dir, folder: Path, *, figure, save, table, plot_dir: str) -> str:
    """HTML of the statistics section; plots are written into ``folder``.

    ``figure``, ``save`` and ``table`` are the report's figure, PNG and HTML-table helpers.
    A failure here never costs the rest of the report: the section then says what failed.
    """
    try:
        return _section(results, recipe, out_dir, folder, figure=figure, save=save, table=table,
                        plot_dir=plot_dir)
    except Exception as e:  # the report of a finished batch must be written whatever the statistics do
        return f"<h2>Statistics</h2><p>The statistics could not be computed: {escape(type(e).__name__)}: " \
               f"{escape(str(e))}</p>"


def _section(results, recipe, out_dir, folder: Path, *, figure, save, table, plot_dir: str) -> str:
    from ..study_figures import draw_class_distribution, draw_class_fields

    study, left, note = batch_study(results, recipe, out_dir)
    if study is None:
        return f"<h2>Statistics</h2><p>{escape(note)}</p>"
    pct = f"{100 * CONF:g} %"
    au, du = study.settings["area_unit"], study.density_unit
    parts = [
        "<h2>Statistics</h2>",
        f"<p>The {len(study.fields)} finished images are the fields of one study. Intervals at {pct} "
        f"(bootstrap seed {SEED}); sizes are {escape(study.settings['size'])}, areas in {au}, densities in "
        f"{du}. The pooled density is Σn/ΣA over the analysed areas.</p>",
    ]
    if left:
        parts.append(f"<p><b>{len(left)} image(s) measured in px left out</b> of the study: "
                     f"{escape(', '.join(left[:50]))}{' …' if len(left) > 50 else ''}</p>")
    parts += ["<h3>Pooled summary</h3>", table(_cols(study.pooled, POOLED_COLUMNS)),
              "<p>Intervals (columns <code>*_ci_low</code>, <code>*_ci_high</code>):</p>", _methods(study.pooled),
              "<h3>Spread between fields</h3>", table(_cols(study.pooled, SPREAD_COLUMNS)),
              "<p>SD and CV of the fields' densities (area-weighted); the χ² test asks whether the fields "
              "differ more than counting noise allows (small p: they do).</p>"]
    all_pf = study.per_field[study.per_field["class_name"] == "all"]
    out = study.outliers
    fig, _ = figure(7.0, 3.2)
    draw_class_fields(fig, study, "all", fontsize=8)
    p = save(fig, folder / "stats_density_per_field.png")
    parts.append(f'<figure><img src="{plot_dir}/{p.name}" alt="density per field with intervals"></figure>')
    parts.append(f"<h3>Outlier fields ({len(out)})</h3>")
    parts.append(table(out) if len(out) else
                 "<p>None" + (" (flagged from 5 fields on)." if len(study.fields) < 5 else ".") + "</p>")
    parts.append("<h3>Size distribution</h3>")
    for i, cname in enumerate(study.classes):
        fig, _ = figure(8.0, 3.0)
        if not draw_class_distribution(fig, study, cname, fontsize=8):
            continue
        p = save(fig, folder / f"stats_sizes_{i}.png")
        parts.append(f'<figure><img src="{plot_dir}/{p.name}" alt="{escape(cname)} size distribution">'
                     f"<figcaption>{escape(cname)}: histogram with {pct} band per bin, cumulative with "
                     f"{pct} band, log-normal fit</figcaption></figure>")
    parts += [table(_cols(study.distributions, DIST_COLUMNS)), _methods(study.distributions),
              "<p>Log-normal fits (ln size):</p>", table(_cols(study.lognormal, FIT_COLUMNS)),
              _methods(study.lognormal)]
    phases, pooled = batch_phases(results, recipe, study)
    if phases is not None:
        both = pd.concat([pooled.assign(field="(pooled)"), phases], ignore_index=True)
        parts += ["<h3>Phase fractions</h3>",
                  f"<p>Class area fractions of the analysed pixels, and the ASTM E562 systematic point count "
                  f"(grid every {PHASE_GRID_PX} px) beside them.</p>",
                  table(_cols(both, PHASE_COLUMNS)), _methods(both)]
    shown = all_pf.head(MAX_FIELD_ROWS)
    parts += [f"<h3>Per field ({len(all_pf)} fields, all objects"
              + (f"; first {MAX_FIELD_ROWS} shown" if len(all_pf) > MAX_FIELD_ROWS else "") + ")</h3>",
              table(_cols(shown, FIELD_COLUMNS)), _methods(study.per_field)]
    return "".join(parts)
