"""Atomic file writes: a file is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; move it into place on success.

    If the block raises, the temporary file is removed and ``path`` is left as
    it was (absent, or its previous content).

    Examples
    --------
    >>> with atomic_path("out.tif") as tmp:  # doctest: +SKIP
    ...     tifffile.imwrite(tmp, data)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: Names of the temporary files :func:`atomic_path` writes (``.NAME.XXXXXXXX.partSUFFIX``).
PARTIAL_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.part[^/]*$")


def remove_partials(folder, older_than: float) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes in ``folder``.

    Only files named as :func:`atomic_path` names them and last modified before
    ``older_than`` (a ``time.time()`` value, e.g. the start of the current run)
    are removed, so a write in progress now is never touched. Returns the
    removed paths.
    """
    removed = []
    for p in Path(folder).glob(".*.part*"):
        try:
            if p.is_file() and PARTIAL_NAME.match(p.name) and p.stat().st_mtime < older_than:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:
            continue
    return removed


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    return Path(path)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serialisable")
