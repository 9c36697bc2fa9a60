"""Guards for the files a command writes: an output never replaces an input or another output.

Commands collect the files they are about to write and call
:func:`check_outputs` before writing anything. Inputs count together with
their labels sidecars (``x.tif`` -> ``x.labels.json``), since overwriting the
sidecar silently changes what the input means. :func:`unique_stems` gives
batch commands (``microseg predict``) distinct output names for inputs that
share a file stem.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import MicrosegError


class OutputConflictError(MicrosegError):
    """An output path would replace an input, an input's sidecar or another output."""


def _sidecar(path: Path) -> Path | None:
    """The labels sidecar of a ``.tif``/``.tiff`` path (as :mod:`.labels_io` names it)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        return path.with_suffix(".labels.json")
    return None


def with_sidecars(paths: Iterable[str | os.PathLike | None]) -> list[Path]:
    """``paths`` (``None`` skipped) plus the labels sidecar of every TIFF among them."""
    out = []
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        out.append(p)
        side = _sidecar(p)
        if side is not None:
            out.append(side)
    return out


def _key(path: Path) -> str:
    """A comparable identity of ``path``: its resolved absolute form, case-folded where the OS is."""
    try:
        resolved = path.expanduser().resolve(strict=False)
    except (OSError, RuntimeError):
        resolved = Path(os.path.abspath(path))
    return os.path.normcase(str(resolved))


def _same(a: Path, b: Path) -> bool:
    if _key(a) == _key(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, case-insensitive file systems
    except OSError:
        return False


def check_outputs(
    inputs: Iterable[str | os.PathLike | None],
    outputs: Sequence[tuple[str, str | os.PathLike]] | Iterable[str | os.PathLike],
) -> None:
    """Refuse (one line) when an output would replace an input or another output.

    Parameters
    ----------
    inputs : iterable of path
        Files the command reads; ``None`` entries are skipped. The labels
        sidecar of every TIFF input is protected too.
    outputs : iterable of path, or of ``(what, path)`` pairs
        Every file the command will write (``None`` skipped), including sidecars it writes
        (see :func:`with_sidecars`). ``what`` names the output in the message
        (e.g. ``"--summary"``).

    Raises
    ------
    OutputConflictError
        Naming both paths and what to change; also when an output is an
        existing folder or lies under a file.
    """
    protected: list[tuple[str, Path]] = []
    for p in inputs:
        if p is None:
            continue
        p = Path(p)
        protected.append((f"the input {p}", p))
        side = _sidecar(p)
        if side is not None:
            protected.append((f"the sidecar {side} of the input {p}", side))
    seen: list[tuple[str, Path]] = []
    for item in outputs:
        what, path = item if isinstance(item, tuple) else ("output", item)
        if path is None:
            continue
        path = Path(path)
        _check_writable_place(path, what)
        for desc, src in protected:
            if _same(path, src):
                raise OutputConflictError(
                    f"{what} {path} would overwrite {desc}; choose another output name."
                )
        for other_what, other in seen:
            if _same(path, other):
                raise OutputConflictError(
                    f"{what} {path} and {other_what} {other} are the same file; "
                    "give them different names."
                )
        seen.append((what, path))


def _check_writable_place(path: Path, what: str) -> None:
    """Refuse an output that is an existing folder or lies under a file."""
    if path.is_dir():
        raise OutputConflictError(f"{what} {path} is a folder; give a file name.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputConflictError(f"{what} {path}: {parent} is a file, not a folder.")
            return


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create the output folder ``path`` if needed and check that it takes files.

    Raises :class:`OutputConflictError` when a file is in the way, and an
    :class:`OSError` naming the folder when it cannot be written to (read-only,
    permission denied, full), before any work is done.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputConflictError(f"{what} {path} is a file, not a folder; give a folder name.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputConflictError(f"{what} {path}: {parent} is a file, not a folder.")
            break
    path.mkdir(parents=True, exist_ok=True)
    _probe_writable(path)
    return path


def _probe_writable(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``; an :class:`OSError` names the folder."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=".microseg-probe.", dir=folder)
    except OSError as e:
        reason = {errno.EROFS: "read-only file system; choose another output folder",
                  errno.EACCES: "permission denied; choose a folder you can write to",
                  errno.ENOSPC: "no space left on device"}.get(e.errno, e.strerror or str(e))
        raise type(e)(e.errno, reason, str(folder)) from e
    os.close(fd)
    os.unlink(tmp)


def unique_stems(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Distinct output stems for ``paths``: the file stem, disambiguated when stems collide.

    Colliding stems (``a/x.tif`` and ``b/x.tif``, or ``x.tif`` and ``x.png``)
    get the parent folder's name prefixed (``a_x``, ``b_x``) when that makes
    them unique, else a suffix ``_2``, ``_3``, ... in input order; a unique
    stem is kept as is.
    """
    stems = [Path(p).stem for p in paths]
    folded = [s.casefold() for s in stems]
    out = list(stems)
    for i, s in enumerate(folded):
        if folded.count(s) < 2:
            continue
        group = [j for j, t in enumerate(folded) if t == s]
        parents = [Path(paths[j]).resolve().parent.name for j in group]
        if len({p.casefold() for p in parents}) == len(group) and all(parents):
            out[i] = f"{Path(paths[i]).resolve().parent.name}_{stems[i]}"
    taken: set[str] = set()
    for i, s in enumerate(out):
        base, n = s, 1
        while s.casefold() in taken:
            n += 1
            s = f"{base}_{n}"
        taken.add(s.casefold())
        out[i] = s
    return out
