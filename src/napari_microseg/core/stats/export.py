"""Write statistics tables: CSV files with JSON sidecars, and one XLSX workbook.

Every CSV is a plain table (a header row, then rows) that ``pandas.read_csv``
and Excel open without options; its provenance -- inputs, settings, and the
method of every interval -- is in ``NAME.csv.json`` beside it
(:func:`~napari_microseg.core.measure.export.write_csv`). The workbook has one
sheet per table and a ``provenance`` sheet
(:func:`~napari_microseg.core.measure.export.write_xlsx`). All writes are atomic.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..measure.export import make_provenance, write_csv, write_xlsx

#: Name of the workbook :func:`export_stats` writes with ``xlsx=True``.
WORKBOOK = "stats.xlsx"

#: What each interval column means, written into the provenance of every export.
METHODS = {
    "count / density (one field)": "exact Poisson (Garwood) interval on the count, divided by the area",
    "pooled density": "area-weighted Σn/ΣA with a between-field t interval (k-1 df, "
    "cluster-sampling variance), never narrower than the pooled Poisson interval given beside it",
    "mean size (one field)": "Student t interval of the mean of the objects",
    "median size (one field)": "distribution-free order-statistic (binomial) interval",
    "mean / median size (pooled)": "percentile bootstrap of fields (cluster bootstrap), fixed seed",
    "area fraction (one field)": "normal interval, compound-Poisson variance Σ area²",
    "area fraction (pooled)": "area-weighted mean with a between-field t interval",
    "phase fraction": "pixel fraction with a t interval over sub-fields or fields; "
    "ASTM E562 systematic point count with mean ± t s/√n",
    "log-normal fit": "t interval for mu, chi-square interval for sigma; KS and Anderson-Darling",
    "comparison": "Welch t / delta method on between-field errors, or Poisson; bootstrap for sizes; "
    "two-sample KS and Anderson-Darling tests",
    "barrier hardening": "Monte Carlo propagation of density, size, thickness and alpha uncertainty",
}


def stats_provenance(*, inputs=(), settings: Mapping | None = None, unit: str | None = None,
                     extra: Mapping | None = None) -> dict:
    """Provenance of a statistics export: inputs, settings, unit and the interval methods."""
    more = {"inputs": [str(p) for p in inputs], "methods": METHODS, **dict(extra or {})}
    prov = make_provenance(settings=settings, extra=more)
    if unit is not None:
        prov.update(unit=unit, pixel_size=None, pixel_size_source=None)
    return prov


def export_stats(out_dir, tables: Mapping[str, pd.DataFrame], provenance: Mapping, *,
                 xlsx: bool = False) -> list[Path]:
    """Write each table to ``out_dir/NAME.csv`` (+ ``NAME.csv.json``) and optionally ``stats.xlsx``.

    Returns the files written (CSV files, then the workbook).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables.items():
        written.append(write_csv(out / f"{name}.csv", df.reset_index(drop=True), provenance,
                                 name=name))
    if xlsx:
        clean = {name: df.reset_index(drop=True) for name, df in tables.items()}
        written.append(write_xlsx(out / WORKBOOK, clean, provenance))
    return written
