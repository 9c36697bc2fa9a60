"""XLSX export: one sheet per table plus a ``provenance`` sheet (see :mod:`.export`).

Cells hold numbers as Excel shows them (16 significant digits); the few floats
that need a 17th digit are also kept, exactly, in a hidden sheet. Written in
openpyxl's write-only mode and atomically.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from ..errors import MicrosegError
from .table_codec import check_table, dtypes_of, jsonable, restore, truncated_error

#: Hidden XLSX sheet with the exact value of floats that 16 digits do not hold.
_EXACT_SHEET = "_exact_floats"
_XLSX_PROGRESS_ROWS = 5_000


def _cell(v):
    v = jsonable(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def write_xlsx(
    path, tables: Mapping[str, pd.DataFrame], provenance: Mapping, *, progress=None
) -> Path:
    """Write one sheet per table and a ``provenance`` sheet (openpyxl, full float precision).

    The workbook is streamed (openpyxl's write-only mode: memory does not grow
    with the number of rows) and written atomically; each table's row count is
    recorded under ``_tables`` and checked by :func:`read_xlsx`. ``progress(n)``,
    when given, is called with the number of rows just written.
    """
    from openpyxl import Workbook

    if "provenance" in tables or _EXACT_SHEET in tables:
        raise MicrosegError(f"'provenance' and {_EXACT_SHEET!r} are reserved sheet names.")
    for df in tables.values():
        check_table(df)
    path = Path(path)
    wb = Workbook(write_only=True)
    try:
        _fill_workbook(wb, tables, provenance, progress)
        with atomic_path(path) as tmp:
            _save_workbook(wb, tmp)
        return path
    except Exception as e:
        err = e
    # A failure (e.g. a full disk, here or in openpyxl's temporary folder) leaves
    # half-written XML streams, an open zip entry and temporary sheet files behind,
    # which would print "Exception ignored" tracebacks when garbage-collected:
    # close and remove them quietly, then raise the error alone.
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _: None
    try:
        chained = err
        while chained is not None:  # drop the frames that hold openpyxl's open streams
            chained.__traceback__ = None
            chained = chained.__context__ or chained.__cause__
        _discard_workbook(wb)
        gc.collect()
    finally:
        sys.unraisablehook = hook
    raise err


def _fill_workbook(wb, tables, provenance, progress) -> None:
    """Append every table, the exact-float sheet and the provenance sheet to ``wb``."""
    meta, exact = {}, []
    for name, df in tables.items():
        meta[name] = {"dtypes": dtypes_of(df), "attrs": jsonable(df.attrs), "rows": len(df)}
        ws = wb.create_sheet(str(name))
        ws.append([str(c) for c in df.columns])
        # only float and object columns can hold floats that need a 17th digit
        check = [j for j, t in enumerate(df.dtypes) if t.kind in "fO"]
        for i, row in enumerate(df.itertuples(index=False)):
            cells = [_cell(v) for v in row]
            ws.append(cells)
            for j in check:
                v = cells[j]
                # openpyxl writes floats with 16 significant digits; keep the rest aside
                if isinstance(v, float) and float(f"{v:.16g}") != v:
                    exact.append([str(name), i, j, repr(v)])
            if progress is not None and (i + 1) % _XLSX_PROGRESS_ROWS == 0:
                progress(_XLSX_PROGRESS_ROWS)
        if progress is not None and len(df) % _XLSX_PROGRESS_ROWS:
            progress(len(df) % _XLSX_PROGRESS_ROWS)
    ws = wb.create_sheet(_EXACT_SHEET)
    ws.sheet_state = "hidden"
    ws.append(["table", "row", "column", "value"])
    for r in exact:
        ws.append(r)
    ws = wb.create_sheet("provenance")
    ws.append(["key", "value"])
    for k, v in provenance.items():
        ws.append([str(k), json.dumps(jsonable(v), ensure_ascii=False)])
    ws.append(["_tables", json.dumps(meta, ensure_ascii=False)])


def _save_workbook(wb, tmp) -> None:
    """Save a write-only workbook to ``tmp``, as ``Workbook.save`` does."""
    from zipfile import ZIP_DEFLATED, ZipFile

    from openpyxl.writer.excel import ExcelWriter

    f = open(tmp, "wb")
    archive = None
    try:
        archive = ZipFile(f, "w", ZIP_DEFLATED, allowZip64=True)
        ExcelWriter(wb, archive).save()
    except BaseException:
        if archive is not None:
            archive.fp = None  # the file is discarded: write no zip directory on close
        with contextlib.suppress(Exception):
            f.close()
        raise
    f.close()


def _discard_workbook(wb) -> None:
    """Close a failed write-only workbook's sheet streams and delete their temporary files."""
    for ws in wb.worksheets:
        writer = getattr(ws, "_writer", None)
        for gen in (getattr(ws, "_rows", None), getattr(writer, "xf", None)):
            with contextlib.suppress(Exception):
                gen.close()
        with contextlib.suppress(Exception):
            os.remove(writer.out)


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
            if "rows" in m and len(rows) != int(m["rows"]):
                raise truncated_error(path, len(rows), int(m["rows"]))
            cols = list(m["dtypes"])
            for r in rows:  # a streamed sheet leaves out trailing empty cells
                r.extend([None] * (len(cols) - len(r)))
            for i, j, v in exact.get(name, []):
                rows[i][j] = v
            df = pd.DataFrame(rows, columns=cols, dtype=object)
            for col, typ in m["dtypes"].items():
                if typ.startswith(("float", "int")):
                    df[col] = [float("nan") if _missing(v) else float(v) for v in df[col]]
            tables[name] = restore(df, m["dtypes"], m["attrs"])
        return tables, prov
    finally:
        wb.close()


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
