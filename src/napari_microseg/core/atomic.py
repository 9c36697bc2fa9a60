"""Atomic file writes: a file is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; move it into place on success.

    If the block raises, the temporary file is removed and ``path`` is left as
    it was (absent, or its previous content). The final file gets the mode of
    the file it replaces, else the usual ``0o666 & ~umask`` (not the ``0o600``
    of the temporary file).

    Examples
    --------
    >>> with atomic_path("out.tif") as tmp:  # doctest: +SKIP
    ...     tifffile.imwrite(tmp, data)
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    except OSError as e:  # name the file the user asked for, not the temporary one
        raise type(e)(e.errno, _reason(e), str(path)) from e
    os.close(fd)
    try:
        yield Path(tmp)
        with contextlib.suppress(OSError):
            os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if e.errno is not None and (e.filename is None or os.fsdecode(e.filename) == tmp):
            raise type(e)(e.errno, _reason(e), str(path)) from e
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _reason(e: OSError) -> str:
    """The reason of an OS error (``strerror``), with a hint for the common write failures."""
    hint = {
        errno.EROFS: "read-only file system; choose another output location",
        errno.ENOSPC: "no space left on device",
        errno.EACCES: "permission denied; choose a folder you can write to",
        errno.ENOTDIR: "a parent of this path is a file, not a folder",
        errno.EEXIST: "a file with this name is in the way of a folder",
    }
    return hint.get(e.errno, e.strerror or str(e))


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """Mode for a file written to ``path``: the replaced file's, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


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
