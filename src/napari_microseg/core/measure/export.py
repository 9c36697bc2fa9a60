"""Write and re-read measurement tables with their provenance (CSV, XLSX, JSON).

Every file carries a provenance dict (:func:`make_provenance`: plugin version,
image file and its SHA-256, pixel size and its source, model and prompts when
given, settings, UTC time) and, per table, its column dtypes and ``attrs`` so
that the readers return a DataFrame equal to the one written.

* **CSV** holds one table, a plain header row then the rows, so that
  ``pandas.read_csv`` and Excel open it without options. The provenance and
  the table's name, dtypes, ``attrs`` and row count are in a JSON sidecar
  ``NAME.csv.json`` beside it (:func:`sidecar_path`). Files of older versions,
  with ``# key: json-value`` lines before the table, are still read.
* **XLSX** (:mod:`.export_xlsx`) has one sheet per table plus a ``provenance`` sheet of
  ``key | json-value`` rows (per-table dtypes and attrs under ``_tables``).
  Cells hold numbers as Excel shows them (16 significant digits); the few
  floats that need a 17th digit are also kept, exactly, in a hidden sheet.
* **JSON** is ``{"provenance": {...}, "tables": {name: {"columns", "dtypes",
  "attrs", "rows", "data"}}}`` with non-finite floats written as ``null`` / ``"inf"``.

Every file is written atomically (:func:`~napari_microseg.core.atomic.atomic_path`:
complete, or absent / its previous version after a failure) and streamed
(CSV and JSON a chunk of rows at a time, XLSX in openpyxl's write-only mode),
so memory does not grow with the table. Each table records its row count; the
readers raise :class:`~napari_microseg.core.errors.CorruptFileError` for a
file that holds fewer rows (or, for CSV, ends inside a row), e.g. a copy cut
short.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ... import __version__
from ..atomic import atomic_path
from ..calibration import PixelSize
from ..errors import CorruptFileError, MicrosegError
from ..hashing import file_sha256
from .export_xlsx import read_xlsx, write_xlsx
from .table_codec import STR_DTYPES, check_table, dtypes_of, jsonable, restore, truncated_error

_META_PREFIX = "_"
#: ``format`` of a CSV table's JSON sidecar.
SIDECAR_FORMAT = "napari-microseg-table"
# pandas < 3 parses floats with a fast but not always round-trip converter
_ROUND_TRIP = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
#: Rows converted and written at a time by the CSV and JSON writers (bounded memory).
CHUNK_ROWS = 20_000




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
    return jsonable(prov)


# --- CSV ---------------------------------------------------------------------


def sidecar_path(path) -> Path:
    """The JSON sidecar of a CSV table: ``NAME.csv`` -> ``NAME.csv.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _csv_meta(table: pd.DataFrame, provenance: Mapping, name: str) -> dict:
    """The sidecar of a CSV table: provenance and what restores the table exactly."""
    for k in provenance:
        if str(k).startswith(_META_PREFIX):
            raise MicrosegError(f"Provenance key {k!r} may not start with '_'.")
    return {
        "format": SIDECAR_FORMAT,
        "table": name,
        "rows": len(table),
        "dtypes": dtypes_of(table),
        "attrs": jsonable(table.attrs),
        "provenance": jsonable(dict(provenance)),
    }


def write_csv(
    path, table: pd.DataFrame, provenance: Mapping, *, name: str = "objects", progress=None
) -> Path:
    """Write one table as a plain CSV and its provenance into ``NAME.csv.json`` beside it.

    Both files are written atomically (complete or absent, see
    :func:`~napari_microseg.core.atomic.atomic_path`), the CSV
    :data:`CHUNK_ROWS` rows at a time. The sidecar records the row count so
    that :func:`read_csv` recognises a copy that was cut short, and the dtypes
    and ``attrs`` so that it returns the table written. ``progress(n)``, when
    given, is called with the number of rows just written.
    """
    check_table(table)
    path = Path(path)
    meta = _csv_meta(table, provenance, name)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        for start in range(0, max(len(table), 1), CHUNK_ROWS):
            chunk = table.iloc[start : start + CHUNK_ROWS]
            chunk.to_csv(f, index=False, header=start == 0, lineterminator="\n")
            if progress is not None:
                progress(len(chunk))
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return path


def _read_sidecar(path) -> tuple[dict, dict]:
    """``(provenance, meta)`` of a CSV from its sidecar; meta keys as the old ``# _`` lines."""
    side = sidecar_path(path)
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, {}
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{side.name}: cannot be read ({_first_line(e)}); export the table again.") from e
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        raise MicrosegError(f"{side.name}: not a napari-microseg table sidecar.")
    meta = {"_table": doc.get("table"), "_dtypes": doc.get("dtypes"), "_attrs": doc.get("attrs") or {},
            "_rows": doc.get("rows")}
    return dict(doc.get("provenance") or {}), meta


def _csv_meta_of(f, path) -> tuple[dict, dict]:
    """Provenance and meta of a CSV: the legacy ``# `` lines (``f`` is left after them) or the sidecar."""
    prov, meta = _read_csv_header(f, path)
    if meta or prov:
        return prov, meta
    return _read_sidecar(path)


def _read_csv_header(f, path) -> tuple[dict, dict]:
    """Parse the ``# `` lines older versions wrote at the start of ``f``; leave ``f`` after them."""
    prov, meta = {}, {}
    n = 0
    while True:
        pos = f.tell()
        raw = f.readline()
        if not raw.startswith(b"# "):
            f.seek(pos)
            return prov, meta
        n += 1
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
            key, sep, val = line[2:].partition(": ")
            if not sep:
                raise ValueError("no ': '")
            (meta if key.startswith(_META_PREFIX) else prov)[key] = json.loads(val)
        except ValueError as e:
            raise CorruptFileError(
                f"{Path(path).name}: malformed header line {n}: {raw[:80]!r}; "
                "export the table again."
            ) from e


def read_csv(path) -> tuple[pd.DataFrame, dict]:
    """Read a CSV written by :func:`write_csv` (and its sidecar); returns ``(table, provenance)``.

    ``table.attrs`` is restored and ``table.attrs["_table"]`` is not set; the
    table's name is in the returned provenance only if it was there.

    Raises
    ------
    CorruptFileError
        When the file holds fewer rows than its sidecar says, ends in
        the middle of a row, or cannot be parsed (a file cut short).
    """
    with open(path, "rb") as f:
        prov, meta = _csv_meta_of(f, path)
        dtypes = meta.get("_dtypes")
        if dtypes is None:
            raise MicrosegError(
                f"{path}: not a napari-microseg table (no sidecar {sidecar_path(path).name})."
            )
        rows = meta.get("_rows")
        body_at = f.tell()
        size = f.seek(0, 2)
        if rows is not None and size > body_at:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # every row ends with a newline: cut inside a row
                raise truncated_error(path, max(rows - 1, 0), rows)
        f.seek(body_at)
        str_cols = [c for c, t in dtypes.items() if t == "object" or t in STR_DTYPES]
        try:
            df = (
                pd.read_csv(
                    f,
                    encoding="utf-8",
                    dtype={c: str for c in str_cols},
                    keep_default_na=False,
                    na_values={c: [""] for c in dtypes if c not in str_cols},
                    **_ROUND_TRIP,
                )
                if dtypes
                else pd.DataFrame()
            )
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            if rows is not None:
                raise CorruptFileError(
                    f"{Path(path).name}: the table cannot be parsed ({_first_line(e)}); it may "
                    "be truncated or damaged, export it again."
                ) from e
            raise
    if rows is not None and len(df) != int(rows):
        raise truncated_error(path, len(df), int(rows))
    return restore(df, dtypes, meta.get("_attrs", {})), prov


def read_csv_plain(path, usecols=None) -> pd.DataFrame:
    """A CSV table read by pandas alone: fast for many files, no dtype restoring or row check.

    Skips the ``# `` lines older versions wrote first; ``usecols`` as in
    :func:`pandas.read_csv`. Use :func:`read_csv` to get the exact table back.
    """
    with open(path, "rb") as f:
        skip = 0
        for line in f:
            if not line.startswith(b"# "):
                break
            skip += 1
    return pd.read_csv(path, skiprows=skip, usecols=usecols, encoding="utf-8")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# --- JSON --------------------------------------------------------------------


def _enc_float(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def write_json(
    path, tables: Mapping[str, pd.DataFrame], provenance: Mapping, *, progress=None
) -> Path:
    """Write tables and provenance to one JSON file.

    The file is written atomically, :data:`CHUNK_ROWS` rows at a time; each
    table records its row count (``"rows"``), which :func:`read_json` checks.
    ``progress(n)``, when given, is called with the number of rows just written.
    """
    for df in tables.values():
        check_table(df)
    path = Path(path)

    def dumps(obj, **kw):
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, **kw)

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write('{\n "provenance": ' + dumps(jsonable(provenance), indent=1) + ',\n "tables": {')
        for i, (name, df) in enumerate(tables.items()):
            head = {
                "columns": [str(c) for c in df.columns],
                "dtypes": dtypes_of(df),
                "attrs": jsonable(df.attrs),
                "rows": len(df),
            }
            f.write(("," if i else "") + "\n  " + dumps(str(name)) + ": ")
            f.write(dumps(head)[:-1] + ', "data": [')
            for start in range(0, len(df), CHUNK_ROWS):
                rows = [
                    dumps([_enc_float(v) for v in jsonable(r)])
                    for r in df.iloc[start : start + CHUNK_ROWS].itertuples(index=False)
                ]
                f.write(("," if start else "") + "\n   " + ",\n   ".join(rows))
                if progress is not None:
                    progress(len(rows))
            f.write("\n  ]}")
        f.write("\n }\n}\n")
    return path


def read_json(path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read a file written by :func:`write_json`; returns ``(tables, provenance)``."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        tables = {}
        for name, t in doc["tables"].items():
            dtypes = t["dtypes"]
            if "rows" in t and len(t["data"]) != int(t["rows"]):
                raise truncated_error(path, len(t["data"]), int(t["rows"]))
            df = pd.DataFrame(t["data"], columns=t["columns"], dtype=object)
            for col, typ in dtypes.items():
                if typ.startswith(("float", "int")):
                    df[col] = [float("nan") if v is None else float(v) for v in df[col]]
            tables[name] = restore(df, dtypes, t.get("attrs", {}))
        return tables, doc["provenance"]
    except (KeyError, TypeError, ValueError) as e:
        raise MicrosegError(f"{path}: not a napari-microseg JSON table file ({e}).") from e


# --- dispatch ----------------------------------------------------------------


def export_tables(
    path, tables: Mapping[str, pd.DataFrame], provenance: Mapping, *, progress=None
) -> list[Path]:
    """Write ``tables`` to ``path`` by its suffix (.csv, .xlsx, .json).

    A ``.csv`` path holds the first table; each further table goes to
    ``<stem>_<name>.csv`` beside it, each with its ``.csv.json`` sidecar. Every file is written atomically: after a
    failure (full disk, ...) it is absent or still its previous version, never
    cut short. ``progress(n)``, when given, is called with the number of rows
    just written (all tables together). Returns the files written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return [write_xlsx(path, tables, provenance, progress=progress)]
    if suffix == ".json":
        return [write_json(path, tables, provenance, progress=progress)]
    if suffix == ".csv":
        out = []
        for i, (name, df) in enumerate(tables.items()):
            p = path if i == 0 else path.with_name(f"{path.stem}_{name}.csv")
            out.append(write_csv(p, df, provenance, name=name, progress=progress))
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
    with open(path, "rb") as f:
        _, meta = _csv_meta_of(f, path)
    name = meta.get("_table")
    return name if isinstance(name, str) else Path(path).stem
