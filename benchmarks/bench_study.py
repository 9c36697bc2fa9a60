"""Benchmark: a 1,000-image study summary from per-image object tables (issue 17).

``N`` synthetic fields of view (default 1,000), each with a Poisson number of
objects (mean ``--objects``, default 100) in three classes with log-normal
equivalent diameters, as :func:`~napari_microseg.core.measure.measure_objects`
tables (the columns the study reads). Timed:

* ``in_memory_s``: :func:`study_from_tables` on the tables in memory -- per-field
  table, pooled table with between-field and cluster-bootstrap intervals
  (1,000 resamples), outliers, distributions, log-normal fits, histograms;
* ``from_folder_s``: :func:`study_from_folder` on a batch-like output folder of
  the same tables (``NAME.record.json`` + ``NAME_objects.csv``), reading included;
* ``export_s``: writing every table as CSV (+ sidecar) and one XLSX;
* ``compare_s``: :func:`compare_studies` of the study with a second one of the same size.

Prints one JSON object with the machine load. Usage:
``python benchmarks/bench_study.py [--n 1000] [--objects 100]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ("<111> loop", "<100> loop", "black dot")


def make_tables(n: int, mean_objects: int, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        k = rng.poisson(mean_objects)
        d = rng.lognormal(np.log(8.0), 0.4, k)
        t = pd.DataFrame({
            "label": np.arange(1, k + 1),
            "class_name": rng.choice(CLASSES, k),
            "area_nm2": np.pi * d**2 / 4,
            "equivalent_diameter_nm": d,
            "centroid_in_analysed": True,
            "counted": True,
        })
        t.attrs.update(unit="nm", analysed_area_px=1024 * 1024,
                       pixel_size={"y_nm": 0.5, "x_nm": 0.5})
        out[f"img{i:04d}"] = t
    return out


def write_batch_folder(folder: Path, tables) -> None:
    from napari_microseg.core.measure import write_csv

    for name, t in tables.items():
        write_csv(folder / f"{name}_objects.csv", t, {"plugin": "napari-microseg"})
        rec = {"status": "ok", "name": name,
               "row": {"unit": "nm", "reference_area_nm2": 1024 * 1024 * 0.25},
               "outputs": {"objects": str(folder / f"{name}_objects.csv")}}
        (folder / f"{name}.record.json").write_text(json.dumps(rec))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--objects", type=int, default=100)
    args = ap.parse_args()
    from napari_microseg.core.stats import (
        compare_studies,
        export_stats,
        stats_provenance,
        study_from_folder,
        study_from_tables,
    )

    tables = make_tables(args.n, args.objects, 0)
    other = make_tables(args.n, args.objects, 1)
    t0 = time.perf_counter()
    study = study_from_tables(tables)
    in_memory = time.perf_counter() - t0
    study_b = study_from_tables(other)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "batch"
        folder.mkdir()
        write_batch_folder(folder, tables)
        t0 = time.perf_counter()
        from_folder = study_from_folder(folder)
        folder_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_stats(Path(tmp) / "out", study.to_tables(), stats_provenance(unit="nm"), xlsx=True)
        export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compare_studies(study, study_b)
    compare_s = time.perf_counter() - t0
    same = np.allclose(from_folder.pooled["density"], study.pooled["density"])
    print(json.dumps({
        "benchmark": "study_summary",
        "images": args.n,
        "objects": int(len(study.objects)),
        "in_memory_s": round(in_memory, 2),
        "from_folder_s": round(folder_s, 2),
        "export_csv_xlsx_s": round(export_s, 2),
        "compare_s": round(compare_s, 2),
        "folder_matches_memory": bool(same),
        "target": "seconds, not minutes",
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }, indent=1))


if __name__ == "__main__":
    main()
