"""Reading ``.pt`` files as data, never as code, and checking they did not change.

Every weights file, training checkpoint and SAM2 delta napari-microseg reads
goes through :func:`load_torch_data`: ``torch.load(weights_only=True)``
(tensors and plain containers of str / int / float / bool / None only; no
pickled object is ever built), with every way that can fail turned into one
:class:`~.errors.MicrosegError` line naming the file. A file a colleague
shares in a run folder is therefore data: a pickle that would run code is
refused, not executed.

Integrity: a checkpoint in a run folder gets a small JSON record beside it,
``NAME.sha256.json`` (written atomically together with the checkpoint, see
:func:`write_with_digest`), and registered weights carry their SHA-256 in
their card.
:func:`verify_digest` compares the file with the recorded value before it is
loaded, so a bit flip is reported instead of silently used.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

from .errors import CorruptFileError, MicrosegError
from .hashing import file_sha256

#: Suffix of the digest record written beside a checkpoint.
DIGEST_SUFFIX = ".sha256.json"


class UnsafeFileError(MicrosegError):
    """A ``.pt`` file holds something other than tensors and plain data (maybe code)."""


class IntegrityError(CorruptFileError):
    """A file's bytes no longer match the SHA-256 recorded when it was written."""




def digest_path(path) -> Path:
    """Where the digest record of ``path`` lives (``path`` + ``.sha256.json``)."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def write_with_digest(path, write) -> str:
    """Write ``path`` atomically with ``write(tmp_path)`` and record its SHA-256 beside it.

    The record is written before the new file replaces the old one and keeps
    the old file's digest as ``previous``, so a process killed at any moment
    leaves a file that matches its record. Returns the new SHA-256.
    """
    from .atomic import atomic_path

    path = Path(path)
    try:
        old = recorded_digests(path)[:1]
    except IntegrityError:
        old = []
    with atomic_path(path) as tmp:
        write(tmp)
        sha = file_sha256(tmp)
        _write_record(path, sha, old[0] if old else None)
    return sha


def record_digest(path) -> str:
    """Record the SHA-256 of the complete file ``path`` beside it; return the digest."""
    path = Path(path)
    sha = file_sha256(path)
    _write_record(path, sha, None)
    return sha


def _write_record(path: Path, sha: str, previous: str | None) -> None:
    from .atomic import write_json_atomic

    rec = {"file": path.name, "sha256": sha}
    if previous and previous != sha:
        rec["previous"] = previous
    write_json_atomic(digest_path(path), rec)


def recorded_digests(path) -> list[str]:
    """The SHA-256 values ``path`` may have by its record (empty when there is no record)."""
    rec = digest_path(path)
    if not rec.is_file():
        return []
    try:
        d = json.loads(rec.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise IntegrityError(
            f"{rec}: the SHA-256 record of {Path(path).name} is not readable JSON; "
            "delete it or restore it from a backup."
        ) from None
    sha = d.get("sha256") if isinstance(d, dict) else None
    if not _is_sha256(sha):
        raise IntegrityError(f"{rec}: holds no valid SHA-256 for {Path(path).name}.")
    out = [sha.lower()]
    if _is_sha256(d.get("previous")):  # the file before an interrupted replacement
        out.append(d["previous"].lower())
    return out


def verify_digest(path, expected: str | None = None, where=None) -> None:
    """Raise :class:`IntegrityError` when ``path`` differs from its recorded SHA-256.

    ``expected`` (e.g. from a model card) wins over the record beside the
    file; with neither there is nothing to check.
    """
    if expected is not None and not _is_sha256(expected):
        raise IntegrityError(f"{where or path}: the recorded SHA-256 {expected!r} is not valid.")
    allowed = [expected.lower()] if expected is not None else recorded_digests(path)
    if not allowed:
        return
    if file_sha256(path) not in allowed:
        raise IntegrityError(
            f"{where or path} has changed since it was written (SHA-256 mismatch); "
            "it may be corrupt."
        )


def _is_sha256(value) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdef" for c in value.lower())
    )


def load_torch_data(path, what: str = "napari-microseg checkpoint", *, expected_sha256=None,
                    where=None, verify: bool = True):
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file.

    Parameters
    ----------
    path : path-like
    what : str
        What the file should be, for messages ("napari-microseg checkpoint").
    expected_sha256 : str, optional
        SHA-256 the file must have (a card's); else the record beside the file,
        if any, is checked.
    where : str, optional
        How messages name the file (default ``path``).
    verify : bool
        Check the SHA-256 first (default).

    Raises
    ------
    UnsafeFileError
        The file is not a zip/pickle of tensors and plain data (objects,
        code, an old pickled format that needs arbitrary classes).
    CorruptFileError
        Missing, unreadable, truncated, or changed since it was written
        (:class:`IntegrityError`).
    """
    import torch

    path = Path(path)
    where = where or path
    if not path.is_file():
        raise CorruptFileError(f"{where}: the file is missing.")
    if verify:
        verify_digest(path, expected_sha256, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4"
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UnsafeFileError(
            f"{where} is not a {what} or contains code; refusing to load it."
        ) from None
    except Exception as e:  # torch raises many types for damaged files (zip, EOF, OS, ...)
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        err = CorruptFileError(f"{where} is not a readable {what} (damaged or truncated: {msg}).")
        err.detail = msg
        raise err from None


def plain(obj):
    """``obj`` with numpy scalars / arrays and tuples turned into plain Python data.

    Tensors are kept; what ``torch.load(weights_only=True)`` would refuse
    (other objects) raises :class:`TypeError` at save time instead of making
    an unloadable checkpoint.
    """
    import numpy as np
    import torch

    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    raise TypeError(f"{type(obj).__name__} cannot be stored in a checkpoint as plain data")
