"""The batch report: ``report.html`` with PNG plots beside it.

It covers every image the output folder holds for the recipe (this run's and
earlier runs', :attr:`BatchRun.all_results`). It holds the run (counts, wall
time, cluster), the images measured in px (policy ``allow_px``), totals per class (pooled
densities over the analysed area of every image), a size histogram per class
(counted objects of all images), the density of every image, the failed
images with their errors, the per-image table, and the recipe with its hash
and provenance, and the statistics of the batch as one study with intervals
(:mod:`.report_stats`). Plots are drawn with Matplotlib's Agg canvas (no GUI).
"""

from __future__ import annotations

import json
import platform
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from ... import __version__
from ..atomic import atomic_path

REPORT_FILE = "report.html"
PLOT_DIR = "report_files"
#: Rows of the per-image table shown in the HTML (all are in summary.csv).
MAX_TABLE_ROWS = 500


def read_objects(path, columns) -> pd.DataFrame:
    """The columns of a per-object CSV written by the batch (older ``# `` provenance lines skipped)."""
    from ..measure.export import read_csv_plain

    return read_csv_plain(path, usecols=lambda c: c in columns)


def pooled_objects(results) -> pd.DataFrame:
    """Counted objects of every finished image: class name, diameter, unit."""
    frames = []
    for r in results:
        if r.status not in ("ok", "skipped") or "objects" not in r.outputs:
            continue
        unit = r.row.get("unit", "px")
        col = f"equivalent_diameter_{unit}"
        try:
            df = read_objects(r.outputs["objects"], {"class_name", col, "counted"})
        except (OSError, ValueError):
            continue
        if "counted" in df:
            df = df[df["counted"].astype(bool)]
        frames.append(
            pd.DataFrame(
                {
                    "class_name": df["class_name"].astype(str),
                    "diameter": df[col].astype(float),
                    "unit": unit,
                }
            )
        )
    if not frames:
        return pd.DataFrame({"class_name": [], "diameter": [], "unit": []})
    return pd.concat(frames, ignore_index=True)


def totals(results, recipe) -> pd.DataFrame:
    """Per class: images, objects counted, pooled density (/µm², calibrated images only)."""
    rows = [r.row for r in results if r.status in ("ok", "skipped")]
    cal = [r for r in rows if r.get("unit") == "nm"]
    area_um2 = sum(r.get("reference_area_nm2", 0.0) for r in cal) / 1e6
    out = []
    for name in ["all"] + [c["name"] for c in recipe.classes]:
        key = "n_objects" if name == "all" else f"count[{name}]"
        n_all = sum(int(r.get(key, 0)) for r in rows)
        n_cal = sum(int(r.get(key, 0)) for r in cal)
        out.append(
            {
                "class": name,
                "objects": n_all,
                "images_calibrated": len(cal),
                "area_um2": area_um2,
                "pooled_density_per_um2": n_cal / area_um2 if area_um2 > 0 else float("nan"),
            }
        )
    return pd.DataFrame(out)


def _figure(width=6.0, height=3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(111)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def histogram_plots(objects: pd.DataFrame, recipe, folder: Path) -> list[tuple[str, Path]]:
    """One size histogram PNG per class (and unit) with objects; ``[(title, path)]``."""
    colors = {c["name"]: c.get("color", "#4363d8") for c in recipe.classes}
    out = []
    for i, ((name, unit), df) in enumerate(objects.groupby(["class_name", "unit"], sort=False)):
        d = df["diameter"].to_numpy(float)
        d = d[np.isfinite(d)]
        if not d.size:
            continue
        fig, ax = _figure()
        ax.hist(d, bins=recipe.measure.bins, color=colors.get(name, "#4363d8"), edgecolor="white")
        ax.set_xlabel(f"equivalent diameter ({unit})")
        ax.set_ylabel("objects")
        title = f"{name}: n = {d.size}, mean {d.mean():.3g} {unit}"
        ax.set_title(title)
        out.append((title, _save(fig, folder / f"hist_{i}.png")))
    return out


def density_plot(results, folder: Path) -> Path | None:
    """Density of every finished image (/µm², or /px² for uncalibrated ones)."""
    rows = [r for r in results if r.status in ("ok", "skipped")]
    if not rows:
        return None
    fig, ax = _figure(7.0, 3.2)
    for key, label, marker in (("density_per_um2", "/µm²", "o"), ("density_per_px2", "/px²", "s")):
        idx = [i for i, r in enumerate(rows) if r.row.get(key) is not None]
        if idx:
            ax.plot(idx, [rows[i].row[key] for i in idx], marker, ms=3, label=f"density {label}")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("image (input order)")
    ax.set_ylabel("objects per area")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, folder / "density.png")


def _table(df: pd.DataFrame) -> str:
    return df.to_html(
        index=False, border=0, classes="t", na_rep="", float_format=lambda v: f"{v:.4g}"
    )


def environment() -> dict:
    """Versions and host of the process writing the report."""
    import dask
    import torch

    return {
        "napari_microseg": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dask": dask.__version__,
        "host": platform.node(),
        "platform": platform.platform(),
    }


def write_report(run, recipe) -> Path:
    """Write ``report.html`` and its PNGs into ``run.out_dir``; return the HTML path."""
    from .report_stats import statistics_section

    out = Path(run.out_dir)
    folder = out / PLOT_DIR
    folder.mkdir(exist_ok=True)
    results, info = getattr(run, "all_results", run.results), run.info
    hists = histogram_plots(pooled_objects(results), recipe, folder)
    dens = density_plot(results, folder)
    failed = [r for r in results if r.status == "error"]
    rows = pd.DataFrame([r.summary_record() for r in results[:MAX_TABLE_ROWS]])
    rows = rows.drop(
        columns=[c for c in rows if c.startswith(("density_per_px2[", "density_per_um2["))]
    )
    state = "cancelled before every image was done" if info.get("cancelled") else "complete"
    in_px = [r for r in results if r.status != "error" and r.row.get("unit") == "px"]
    earlier = info.get("n_earlier", 0)
    parts = [
        f"<h1>napari-microseg batch report</h1><p>Run {escape(state)}: "
        f"{info.get('n_ok', 0)} processed, {info.get('n_skipped', 0)} already done (skipped), "
        f"<b>{info.get('n_failed', 0)} failed</b> of {info.get('n_inputs', len(results))} images "
        f"in {info.get('wall_s', 0):.1f} s. Recipe hash <code>{escape(info.get('recipe_hash', ''))}</code>.</p>",
        f"<p>This report covers all {len(results)} images the folder holds for this recipe"
        + (f", {earlier} of them from earlier runs" if earlier else "")
        + ".</p>",
        (
            f"<p><b>{len(in_px)} image(s) measured in px</b> (no pixel size; pixel_size "
            "policy allow_px): their sizes and densities are per px and left out of the "
            f"pooled densities: {escape(', '.join(r.name for r in in_px[:50]))}"
            + (" …" if len(in_px) > 50 else "")
            + "</p>"
        )
        if in_px
        else "",
        "<h2>Totals</h2>",
        _table(totals(results, recipe)),
        "<p>Pooled density: objects counted in calibrated images over their analysed area.</p>",
        "<h2>Sizes per class</h2>",
        "".join(
            f'<figure><img src="{PLOT_DIR}/{p.name}" alt="{escape(t)}"></figure>' for t, p in hists
        )
        or "<p>No objects.</p>",
        "<h2>Density per image</h2>",
        f'<img src="{PLOT_DIR}/{dens.name}" alt="density per image">'
        if dens
        else "<p>No images.</p>",
        statistics_section(results, recipe, out, folder, figure=_figure, save=_save, table=_table,
                           plot_dir=PLOT_DIR),
        f"<h2>Failed images ({len(failed)})</h2>",
        _table(pd.DataFrame([{"image": r.image, "error": r.error} for r in failed]))
        if failed
        else "<p>None.</p>",
        f"<h2>Images</h2><p>{len(results)} rows"
        + (
            f" (first {MAX_TABLE_ROWS} shown; all in summary.csv)"
            if len(results) > MAX_TABLE_ROWS
            else ""
        )
        + "</p>",
        _table(rows) if len(rows) else "",
        "<h2>Recipe</h2>",
        f"<pre>{escape(json.dumps(recipe.to_dict(), indent=2, ensure_ascii=False))}</pre>",
        "<h2>Provenance</h2>",
        f"<pre>{escape(json.dumps({'run': info, 'environment': environment()}, indent=2, default=str))}</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table.t{border-collapse:collapse;font-size:12px}table.t td,table.t th{padding:2px 6px;"
        "border-bottom:1px solid #ddd;text-align:right}figure{display:inline-block;margin:4px}"
        "pre{background:#f6f6f6;padding:8px;font-size:11px;overflow:auto}ul.m{font-size:12px}"
    )
    html = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Batch report</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
    path = out / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path
