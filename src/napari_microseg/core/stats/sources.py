"""Per-image object tables and analysed areas read from disk, for :mod:`.study`.

Two layouts are understood:

* a **batch output folder** (``microseg batch``): every ``NAME.record.json``
  with status ``"ok"`` names its ``NAME_objects.csv`` (with a ``counted``
  column) and its summary row gives the reference area
  (``reference_area_nm2`` or ``reference_area_px2``) and the unit; the foil
  thickness, when the recipe sets one, comes from ``recipe.json``;
* **measure outputs** (``microseg measure`` or the Measure dock's export):
  ``X.csv`` (objects) with ``X_summary.csv`` beside it, or one ``.xlsx`` /
  ``.json`` holding an ``objects`` and a ``summary`` table. The reference
  area, edge rule and guard come from the summary; objects are counted by the
  same rule (:func:`~napari_microseg.core.measure.count_objects`; a guard
  frame is taken as a rectangle, since the analysis mask is not stored).

and **image + labels pairs**, measured here (:func:`measure_pair`).

Readers return ``(tables, fields)`` as :func:`.study.study_from_tables` takes them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MicrosegError
from ..measure.export import read_csv_plain, read_tables
from ..measure.statistics import count_objects

#: Suffix of a batch image record (as :mod:`napari_microseg.core.batch.folder` writes it).
RECORD_SUFFIX = ".record.json"
#: The recipe a batch folder holds (as :mod:`napari_microseg.core.batch.folder` names it).
RECIPE_FILE = "recipe.json"
#: Table files beside a measure CSV that are not object tables.
_NOT_OBJECTS = ("_summary", "_hardening")


def _field_row(name, area, unit, thickness=None) -> dict:
    return {"name": str(name), "area": float(area), "unit": str(unit),
            "thickness_nm": np.nan if thickness is None else float(thickness)}


def _recipe_thickness(path: Path) -> float | None:
    """The foil thickness of a batch recipe's measure settings, if it sets one."""
    try:
        t = (json.loads(path.read_text(encoding="utf-8")).get("measure") or {}).get("thickness_nm")
        return float(t) if t is not None else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def read_batch_folder(folder) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Object tables (counted objects only) and fields of a batch output folder."""
    folder = Path(folder)
    tables, rows = {}, []
    thickness = _recipe_thickness(folder / RECIPE_FILE)
    for rec in sorted(folder.glob(f"*{RECORD_SUFFIX}")):
        name = rec.name[: -len(RECORD_SUFFIX)]
        if name.startswith("."):
            continue
        try:
            d = json.loads(rec.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            warnings.warn(f"{rec.name} cannot be read; left out of the study.", stacklevel=2)
            continue
        if not isinstance(d, dict) or d.get("status") != "ok":
            continue
        row = d.get("row") or {}
        unit = row.get("unit", "px")
        area = row.get(f"reference_area_{unit}2")
        objects = Path((d.get("outputs") or {}).get("objects") or folder / f"{name}_objects.csv")
        if not objects.is_file():
            objects = folder / f"{name}_objects.csv"
        if area is None or not objects.is_file():
            warnings.warn(f"{name}: no objects table or reference area; left out.", stacklevel=2)
            continue
        t = read_csv_plain(objects)
        if "counted" in t:
            t = t[t["counted"].astype(str).str.lower().isin(["true", "1"])].reset_index(drop=True)
        t.attrs["unit"] = unit
        tables[name] = t
        rows.append(_field_row(name, area, unit, thickness))
    return tables, pd.DataFrame(rows, columns=["name", "area", "unit", "thickness_nm"])


def _measure_pair(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    tables, prov = read_tables(path)
    if "objects" not in tables:
        if path.suffix.lower() == ".csv" and len(tables) == 1:
            tables = {"objects": next(iter(tables.values()))}
        else:
            raise MicrosegError(f"{path.name}: no 'objects' table.")
    summary = tables.get("summary")
    if summary is None and path.suffix.lower() == ".csv":
        side = path.with_name(f"{path.stem}_summary.csv")
        if side.is_file():
            summary = next(iter(read_tables(side)[0].values()))
    return tables["objects"], summary, prov


def read_measure_file(path) -> tuple[pd.DataFrame, dict]:
    """Counted objects of one measure output and its field row (name, area, unit, thickness)."""
    path = Path(path)
    table, summary, prov = _measure_pair(path)
    unit = table.attrs.get("unit") or ("nm" if "area_nm2" in table else "px")
    settings = prov.get("settings") or {}
    edges = settings.get("edge_mode", "include")
    guard = float(settings.get(f"guard_{unit}", 0.0) or 0.0)
    area = None
    if summary is not None and len(summary):
        r = summary[summary["class_id"] == -1]
        r = r.iloc[0] if len(r) else summary.iloc[0]
        area = r.get(f"reference_area_{unit}2")
        edges = r.get("edge_mode", edges)
        guard = float(r.get(f"guard_{unit}", guard) or 0.0)
    if "counted" in table:
        counted = table["counted"].to_numpy(bool)
    elif table.attrs.get("image_shape") is not None:
        c = count_objects(table, edges=edges, guard=guard)
        counted = c.counted
        if area is None and edges != "guard":
            area = table.attrs.get("analysed_area_px", c.reference_area_px) * c.pixel_area
        elif area is None:
            area = c.reference_area
    else:
        counted = table["centroid_in_analysed"].to_numpy(bool)
    if area is None or not np.isfinite(float(area)):
        raise MicrosegError(f"{path.name}: no analysed area (no summary and no image shape).")
    t = table[counted].reset_index(drop=True)
    t.attrs = dict(table.attrs)
    thickness = settings.get("thickness_nm")
    return t, _field_row(path.stem, area, unit, thickness)


def measure_pair(image, labels, *, pixel_size_nm: float | None = None) -> tuple[pd.DataFrame, dict]:
    """Measure a labels file on its micrograph (``"include"`` rule) for a study.

    The pixel size comes from ``pixel_size_nm``, else the image, else the
    labels' sidecar; the analysed area excludes the SEM information bar as
    :func:`~napari_microseg.core.reading.read_micrograph` finds it.
    """
    from ..calibration import PixelSize
    from ..labels_io import read_labels
    from ..measure.pipeline import measure_image
    from ..reading import read_micrograph

    mg = read_micrograph(image, pixel_size_nm=pixel_size_nm, as_grey=True)
    rec = read_labels(labels)
    if np.shape(rec.labels) != mg.data.shape[:2]:
        raise MicrosegError(f"{Path(labels).name} is {np.shape(rec.labels)} px but "
                            f"{Path(image).name} is {mg.data.shape[:2]} px.")
    ps = mg.pixel_size if mg.pixel_size.calibrated else (rec.pixel_size or PixelSize.uncalibrated())
    res = measure_image(np.asarray(rec.labels), ps, instance_classes=rec.instance_classes,
                        classes=rec.classes, analysis_mask=mg.analysis_mask)
    t = res.table[res.counting.counted].reset_index(drop=True)
    t.attrs = dict(res.table.attrs)
    return t, _field_row(Path(image).stem, res.counting.reference_area, ps.unit)


def read_inputs(inputs, pairs=(), pixel_size_nm: float | None = None
                ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Tables and fields from batch folders, measure outputs and ``(image, labels)`` pairs."""
    tables, rows = {}, []

    def add(name, table, row):
        key, i = name, 2
        while key in tables:
            key, i = f"{name}-{i}", i + 1
        row["name"] = key
        tables[key] = table
        rows.append(row)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            if any(p.glob(f"*{RECORD_SUFFIX}")):
                t, f = read_batch_folder(p)
                for row in f.to_dict("records"):
                    add(row["name"], t[row["name"]], row)
                continue
            files = [q for q in sorted(p.iterdir()) if _is_measure_file(q)]
            if not files:
                raise MicrosegError(f"{p}: no batch records and no measure tables (.csv/.xlsx/.json).")
            for q in files:
                t, row = read_measure_file(q)
                add(row["name"], t, row)
        elif p.is_file():
            t, row = read_measure_file(p)
            add(row["name"], t, row)
        else:
            raise MicrosegError(f"No such file or folder: {p}")
    for image, labels in pairs:
        t, row = measure_pair(image, labels, pixel_size_nm=pixel_size_nm)
        add(row["name"], t, row)
    if not tables:
        raise MicrosegError("No measured field of view found in the inputs.")
    return tables, pd.DataFrame(rows, columns=["name", "area", "unit", "thickness_nm"])


def _is_measure_file(p: Path) -> bool:
    if not p.is_file() or p.name.startswith("."):
        return False
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return not p.stem.endswith(_NOT_OBJECTS) and p.name != "summary.csv"
    return suffix == ".xlsx"  # JSON files in a folder are often sidecars: name them one by one
