"""How a table's columns and ``attrs`` survive a file: dtypes recorded, restored on reading.

Shared by the CSV, JSON (:mod:`.export`) and XLSX (:mod:`.export_xlsx`) writers and readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CorruptFileError, MicrosegError

#: Pandas string dtypes, restored as such.
STR_DTYPES = ("str", "string")


def jsonable(obj):
    """Convert numpy scalars/arrays and tuples inside ``obj`` to plain JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dtypes_of(df: pd.DataFrame) -> dict[str, str]:
    """``{column: dtype name}`` of ``df``."""
    return {str(c): str(t) for c, t in df.dtypes.items()}


def restore(df: pd.DataFrame, dtypes: Mapping[str, str], attrs: Mapping) -> pd.DataFrame:
    """``df`` with the recorded column ``dtypes`` (in their order) and ``attrs``."""
    for col, t in dtypes.items():
        if col not in df:
            raise MicrosegError(f"Column {col!r} listed in the header is missing from the table.")
        if t == "object":
            s = df[col]
            df[col] = s.astype(object).where(s.notna(), None)
        elif t in STR_DTYPES:
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


def check_table(df: pd.DataFrame):
    """Raise for a table that cannot be written and read back equal (index, column names)."""
    if not isinstance(df.index, pd.RangeIndex) or df.index.start != 0 or df.index.step != 1:
        raise MicrosegError("Tables are exported without their index; reset_index() first.")
    if len(set(map(str, df.columns))) != df.shape[1]:
        raise MicrosegError("Table column names must be unique strings.")


def truncated_error(path, got: int, rows: int) -> CorruptFileError:
    """The one-line error for a table file holding fewer rows than it records."""
    return CorruptFileError(
        f"{Path(path).name} is truncated: it holds {got} of its {rows} rows (the write did not "
        "finish, e.g. a full disk); export the table again."
    )
