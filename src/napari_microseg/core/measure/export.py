"""Write and re-read measurement tables with their provenance (CSV, XLSX, JSON).

Every file carries a provenance dict (:func:`make_provenance`: plugin version,
image file and its SHA-256, pixel size and its source, model and prompts when
given, settings, UTC time) and, per table, its column dtypes and ``attrs`` so
that the readers return a DataFrame equal to the one written.

* **CSV** holds one table. Leading ``# key: json-value`` comment lines carry
  the provenance, then ``# _table: name``, ``# _dtypes: {...}`` and
  ``# _attrs: {...}``.
* **XLSX** has one sheet per table plus a ``provenance`` sheet of
  ``key | json-value`` rows (per-table dtypes and attrs under ``_tables``).
  Cells hold numbers as Excel shows them (16 significant digits); the few
  floats that need a 17th digit are also kept, exactly, in a hidden sheet.
* **JSON** is ``{"provenance": {...}, "tables": {name: {"columns", "dtypes",
  "attrs", "data"}}}`` with non-finite floats written as ``null`` / ``"inf"``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ... import __version__
from ..calibration import PixelSize
from ..errors import MicrosegError

_META_PREFIX = "_"
_STR_DTYPES = ("str", "string")
#: Hidden XLSX sheet with the exact value of floats that 16 digits do not hold.
_EXACT_SHEET = "_exact_floats"
# pandas < 3 parses floats with a fast but not always round-trip converter
_ROUND_TRIP = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (as ``sha256sum`` prints it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(obj):
    """Convert numpy scalars/arrays and tuples inside ``obj`` to plain JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def make_provenance(
    *,
    image_path=None,
    pixel_size: PixelSize | None = None,
    model: Mapping | str | None = None,
    prompts: Mapping | list | str | None = None,
    settings: Mapping | None = None,
    extra: Mapping | None = None,
    timestamp: datetime | None = None,
) -> dict:
    """The provenance header written with every table.

    Parameters
    ----------
    image_path : path, optional
        The analysed image file; its name and SHA-256 are recorded.
    pixel_size : PixelSize, optional
        Recorded with its source (``"none"`` when uncalibrated).
    model, prompts : optional
        Model name/version/weights hash and prompts used (JSON-serialisable).
    settings : mapping, optional
        Measurement settings (edge rule, guard, thickness, ...).
    extra : mapping, optional
        More keys to add.
    timestamp : datetime, optional
        Defaults to now (UTC).

    Returns
    -------
    dict
        Keys ``plugin``, ``plugin_version``, ``image_file``, ``image_sha256``,
        ``pixel_size`` (dict), ``pixel_size_source``, ``unit``, ``model``,
        ``prompts``, ``settings``, ``created_utc`` (ISO 8601), plus ``extra``.
    """
    ps = pixel_size if pixel_size is not None else PixelSize.uncalibrated()
    ts = (timestamp or datetime.now(timezone.utc)).astimezone(timezone.utc)
    prov = {
        "plugin": "napari-microseg",
        "plugin_version": __version__,
        "image_file": str(image_path) if image_path is not None else None,
        "image_sha256": file_sha256(image_path) if image_path is not None else None,
        "pixel_size": ps.to_dict(),
        "pixel_size_source": ps.source,
        "unit": ps.unit,
        "model": model,
        "prompts": prompts,
        "settings": dict(settings or {}),
        "created_utc": ts.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    prov.update(extra or {})
    return _jsonable(prov)


# --- dtype handling -----------------------------------------------------------


def _dtypes(df: pd.DataFrame) -> dict[str, str]:
    return {str(c): str(t) for c, t in df.dtypes.items()}


def _restore(df: pd.DataFrame, dtypes: Mapping[str, str], attrs: Mapping) -> pd.DataFrame:
    for col, t in dtypes.items():
        if col not in df:
            raise MicrosegError(f"Column {col!r} listed in the header is missing from the table.")
        if t == "object":
            s = df[col]
            df[col] = s.astype(object).where(s.notna(), None)
        elif t in _STR_DTYPES:
            df[col] = df[col].astype(t)
        elif t == "bool":
            s = df[col]
            if s.dtype != bool:
                s = s.map(lambda v: v if isinstance(v, bool) else str(v).strip().lower() == "true")
            df[col] = s.astype(bool)
        else:
            df[col] = df[col].astype(t)
    df = df[list(dtypes)]
    df.attrs = dict(attrs)
    return df


def _check_table(df: pd.DataFrame):
    if not isinstance(df.index, pd.RangeIndex) or df.index.start != 0 or df.index.step != 1:
        raise MicrosegError("Tables are exported without their index; reset_index() first.")
    if len(set(map(str, df.columns))) != df.shape[1]:
        raise MicrosegError("Table column names must be unique strings.")


# --- CSV ---------------------------------------------------------------------


def write_csv(path, table: pd.DataFrame, provenance: Mapping, *, name: str = "objects") -> Path:
    """Write one table as CSV preceded by ``# key: json-value`` provenance lines."""
    _check_table(table)
    path = Path(path)
    lines = [
        f"# {k}: {json.dumps(_jsonable(v), ensure_ascii=False)}" for k, v in provenance.items()
    ]
    for k in provenance:
        if str(k).startswith(_META_PREFIX) or ":" in str(k) or "\n" in str(k):
            raise MicrosegError(f"Provenance key {k!r} may not start with '_' or contain ':'.")
    lines.append(f"# _table: {json.dumps(name)}")
    lines.append(f"# _dtypes: {json.dumps(_dtypes(table))}")
    lines.append(f"# _attrs: {json.dumps(_jsonable(table.attrs), ensure_ascii=False)}")
    body = table.to_csv(index=False, lineterminator="\n", float_format=None)
    path.write_text("\n".join(lines) + "\n" + body, encoding="utf-8")
    return path


def read_csv(path) -> tuple[pd.DataFrame, dict]:
    """Read a CSV written by :func:`write_csv`; returns ``(table, provenance)``.

    ``table.attrs`` is restored and ``table.attrs["_table"]`` is not set; the
    table's name is in the returned provenance only if it was there.
    """
    text = Path(path).read_text(encoding="utf-8")
    prov, meta = {}, {}
    lines = text.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith("# "):
        key, sep, val = lines[i][2:].partition(": ")
        if not sep:
            raise MicrosegError(f"{path}: malformed header line {i + 1}: {lines[i]!r}")
        (meta if key.startswith(_META_PREFIX) else prov)[key] = json.loads(val)
        i += 1
    dtypes = meta.get("_dtypes")
    if dtypes is None:
        raise MicrosegError(f"{path}: not a napari-microseg table (no '# _dtypes:' header line).")
    body = "\n".join(lines[i:])
    str_cols = [c for c, t in dtypes.items() if t == "object" or t in _STR_DTYPES]
    df = (
        pd.read_csv(
            io.StringIO(body),
            dtype={c: str for c in str_cols},
            keep_default_na=False,
            na_values={c: [""] for c in dtypes if c not in str_cols},
            **_ROUND_TRIP,
        )
        if dtypes
        else pd.DataFrame()
    )
    return _restore(df, dtypes, meta.get("_attrs", {})), prov


# --- JSON --------------------------------------------------------------------


def _enc_float(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def write_json(path, tables: Mapping[str, pd.DataFrame], provenance: Mapping) -> Path:
    """Write tables and provenance to one JSON file."""
    out = {"provenance": _jsonable(provenance), "tables": {}}
    for name, df in tables.items():
        _check_table(df)
        rows = [[_enc_float(v) for v in _jsonable(r)] for r in df.itertuples(index=False)]
        out["tables"][name] = {
            "columns": [str(c) for c in df.columns],
            "dtypes": _dtypes(df),
            "attrs": _jsonable(df.attrs),
            "data": rows,
        }
    path = Path(path)
    path.write_text(json.dumps(out, ensure_ascii=False, allow_nan=False, indent=1), "utf-8")
    return path


def read_json(path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read a file written by :func:`write_json`; returns ``(tables, provenance)``."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        tables = {}
        for name, t in doc["tables"].items():
            dtypes = t["dtypes"]
            df = pd.DataFrame(t["data"], columns=t["columns"], dtype=object)
            for col, typ in dtypes.items():
                if typ.startswith(("float", "int")):
                    df[col] = [float("nan") if v is None else float(v) for v in df[col]]
            tables[name] = _restore(df, dtypes, t.get("attrs", {}))
        return tables, doc["provenance"]
    except (KeyError, TypeError, ValueError) as e:
        raise MicrosegError(f"{path}: not a napari-microseg JSON table file ({e}).") from e


# --- XLSX --------------------------------------------------------------------


def _cell(v):
    v = _jsonable(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def write_xlsx(path, tables: Mapping[str, pd.DataFrame], provenance: Mapping) -> Path:
    """Write one sheet per table and a ``provenance`` sheet (openpyxl, full float precision)."""
    from openpyxl import Workbook

    if "provenance" in tables or _EXACT_SHEET in tables:
        raise MicrosegError(f"'provenance' and {_EXACT_SHEET!r} are reserved sheet names.")
    wb = Workbook()
    wb.remove(wb.active)
    meta, exact = {}, []
    for name, df in tables.items():
        _check_table(df)
        meta[name] = {"dtypes": _dtypes(df), "attrs": _jsonable(df.attrs)}
        ws = wb.create_sheet(str(name))
        ws.append([str(c) for c in df.columns])
        for i, row in enumerate(df.itertuples(index=False)):
            cells = [_cell(v) for v in row]
            ws.append(cells)
            for j, v in enumerate(cells):
                # openpyxl writes floats with 16 significant digits; keep the rest aside
                if isinstance(v, float) and float(f"{v:.16g}") != v:
                    exact.append([str(name), i, j, repr(v)])
    ws = wb.create_sheet(_EXACT_SHEET)
    ws.sheet_state = "hidden"
    ws.append(["table", "row", "column", "value"])
    for r in exact:
        ws.append(r)
    ws = wb.create_sheet("provenance")
    ws.append(["key", "value"])
    for k, v in provenance.items():
        ws.append([str(k), json.dumps(_jsonable(v), ensure_ascii=False)])
    ws.append(["_tables", json.dumps(meta, ensure_ascii=False)])
    path = Path(path)
    wb.save(path)
    return path


def read_xlsx(path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read a workbook written by :func:`write_xlsx`; returns ``(tables, provenance)``."""
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many kinds for a damaged file
        raise MicrosegError(f"{Path(path).name}: cannot open as a workbook ({e}).") from e
    try:
        if "provenance" not in wb.sheetnames:
            raise MicrosegError(f"{path}: no 'provenance' sheet; not a napari-microseg workbook.")
        prov, meta = {}, {}
        for k, v in list(wb["provenance"].values)[1:]:
            if k == "_tables":
                meta = json.loads(v)
            else:
                prov[str(k)] = json.loads(v)
        exact: dict = {}
        if _EXACT_SHEET in wb.sheetnames:
            for t, i, j, v in list(wb[_EXACT_SHEET].values)[1:]:
                exact.setdefault(t, []).append((int(i), int(j), float(v)))
        tables = {}
        for name, m in meta.items():
            rows = [list(r) for r in list(wb[name].values)[1:]]
            for i, j, v in exact.get(name, []):
                rows[i][j] = v
            cols = list(m["dtypes"])
            df = pd.DataFrame(rows, columns=cols, dtype=object)
            for col, typ in m["dtypes"].items():
                if typ.startswith(("float", "int")):
                    df[col] = [float("nan") if _missing(v) else float(v) for v in df[col]]
            tables[name] = _restore(df, m["dtypes"], m["attrs"])
        return tables, prov
    finally:
        wb.close()


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# --- dispatch ----------------------------------------------------------------


def export_tables(path, tables: Mapping[str, pd.DataFrame], provenance: Mapping) -> list[Path]:
    """Write ``tables`` to ``path`` by its suffix (.csv, .xlsx, .json).

    A ``.csv`` path holds the first table; each further table goes to
    ``<stem>_<name>.csv`` beside it. Returns the files written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return [write_xlsx(path, tables, provenance)]
    if suffix == ".json":
        return [write_json(path, tables, provenance)]
    if suffix == ".csv":
        out = []
        for i, (name, df) in enumerate(tables.items()):
            p = path if i == 0 else path.with_name(f"{path.stem}_{name}.csv")
            out.append(write_csv(p, df, provenance, name=name))
        return out
    raise MicrosegError(f"Cannot export to {path.name!r}: use a .csv, .xlsx or .json file.")


def read_tables(path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read any file written by :func:`export_tables` (one CSV gives one table)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return read_xlsx(path)
    if suffix == ".json":
        return read_json(path)
    if suffix == ".csv":
        df, prov = read_csv(path)
        return {_csv_name(path): df}, prov
    raise MicrosegError(f"Cannot read tables from {path.name!r}: expected .csv, .xlsx or .json.")


def _csv_name(path) -> str:
    for line in Path(path).read_text(encoding="utf-8").split("\n"):
        if not line.startswith("# "):
            break
        if line.startswith("# _table: "):
            return json.loads(line[len("# _table: ") :])
    return Path(path).stem
