"""The batch output folder: one run at a time, one recipe per folder, its records.

* :class:`FolderLock` -- a lock file (``.microseg-batch.lock``, created with
  ``O_CREAT | O_EXCL``, holding pid, host and start time) so two batches never
  write into one folder at once; the lock of a dead process on this host is
  taken over with a warning.
* :func:`check_recipe` -- refuse a recipe other than the one the folder's
  ``recipe.json`` holds, unless the caller overwrites.
* :func:`folder_results` -- every image record the folder holds for a recipe,
  so the summary and the report cover all of them, not only this run's images.
* :func:`check_scheduler` and :func:`clamp_workers` -- the cluster options,
  checked before anything is written.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import warnings
from pathlib import Path

from ..errors import MicrosegError

LOCK_FILE = ".microseg-batch.lock"
RECIPE_FILE = "recipe.json"
RECORD_SUFFIX = ".record.json"
#: Address schemes a Dask scheduler listens on.
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
_ADDRESS = re.compile(
    r"^(?P<scheme>[a-z]+)://(?P<host>\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(?P<port>\d{1,5})/?$"
)


class OutputFolderError(MicrosegError):
    """The output folder is in use by another batch or holds another recipe's results."""


class FolderLock:
    """Exclusive use of a batch output folder by this process (a context manager).

    Parameters
    ----------
    folder : str or Path
        The output folder (must exist).
    """

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_FILE
        self.held = False

    def acquire(self) -> FolderLock:
        """Create the lock file; take over a dead local holder's; else raise :class:`OutputFolderError`."""
        for _ in range(3):
            if self._create():
                self.held = True
                return self
            holder = self._holder()
            if holder is None:  # vanished meanwhile, or still being written: try again
                time.sleep(0.05)
                continue
            if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
                warnings.warn(
                    f"{self.path}: taking over the lock of an earlier batch (pid "
                    f"{holder.get('pid')}, started {holder.get('started_utc', '?')}) that is "
                    "no longer running.",
                    stacklevel=2,
                )
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            raise OutputFolderError(
                f"{self.path.parent} is in use by another microseg batch (pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')} since "
                f"{holder.get('started_utc', '?')}); wait for it to finish or choose another "
                f"output folder (delete {self.path.name} only if that batch is gone)."
            )
        raise OutputFolderError(
            f"{self.path.parent} is in use by another microseg batch ({self.path.name} exists); "
            "wait for it to finish or choose another output folder."
        )

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if self.held:
            self.held = False
            try:
                holder = self._holder()
                if holder is not None and holder.get("pid") == os.getpid():
                    self.path.unlink()
            except OSError:
                pass

    def _create(self) -> bool:
        from .recipe import _now

        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_utc": _now()}
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(info))
        return True

    def _holder(self) -> dict | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            d = json.loads(text)
        except ValueError:
            # an empty file is a lock being written right now; an old one is garbage
            age = time.time() - self.path.stat().st_mtime if self.path.exists() else 0
            return (
                {"pid": None, "host": "?"}
                if age < 60
                else {"pid": -1, "host": socket.gethostname()}
            )
        return d if isinstance(d, dict) else {"pid": -1, "host": socket.gethostname()}

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _alive(pid) -> bool:
    """Whether process ``pid`` exists on this host."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def check_recipe(folder, recipe, overwrite: bool) -> None:
    """Refuse to mix recipes in one folder: raise unless ``recipe.json`` is absent, equal, or ``overwrite``."""
    from .recipe import Recipe, RecipeError

    path = Path(folder) / RECIPE_FILE
    if overwrite or not path.is_file():
        return
    try:
        other = Recipe.load(path)
    except RecipeError:
        other = None
    if other is not None and other.recipe_hash() == recipe.recipe_hash():
        return
    what = (
        f"recipe {other.recipe_hash()[:12]} (model {other.model_name!r}"
        + (f", {other.description!r}" if other.description else "")
        + ")"
        if other is not None
        else f"an unreadable {RECIPE_FILE}"
    )
    raise OutputFolderError(
        f"{Path(folder)} holds the results of another {what}, not recipe "
        f"{recipe.recipe_hash()[:12]}; choose another output folder or pass --overwrite "
        "to replace them."
    )


def read_record(path) -> dict | None:
    """The JSON of one ``NAME.record.json``, or ``None`` when unreadable."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def folder_results(folder, recipe_hash: str, exclude=()) -> list:
    """:class:`ImageResult` of every record in ``folder`` made with ``recipe_hash``.

    Records named in ``exclude`` (this run's output names) are left out; the
    others are sorted by name. An ``"ok"`` record is returned as
    ``"skipped"`` (done by an earlier run); one whose outputs are gone is left out.
    """
    from .process import RECORD_VERSION, ImageResult

    skip, out = set(exclude), []
    for p in sorted(Path(folder).glob(f"*{RECORD_SUFFIX}")):
        name = p.name[: -len(RECORD_SUFFIX)]
        if name in skip or name.startswith("."):
            continue
        d = read_record(p)
        if d is None or d.get("version") != RECORD_VERSION or d.get("recipe_hash") != recipe_hash:
            continue
        try:
            res = ImageResult.from_dict(d)
        except TypeError:
            continue
        if res.status == "ok":
            if not all(Path(f).is_file() for f in (res.outputs or {}).values()):
                continue  # outputs deleted since: no longer a result the folder holds
            res.status = "skipped"
        out.append(res)
    return out


def check_scheduler(address: str | None) -> str | None:
    """``address`` stripped when it is a Dask scheduler address (``tcp://HOST:PORT``); else raise."""
    if address is None or not str(address).strip():
        return None
    address = str(address).strip()
    m = _ADDRESS.match(address)
    if m is None or m["scheme"] not in SCHEDULER_SCHEMES or not 0 < int(m["port"]) < 65536:
        raise MicrosegError(
            f"scheduler {address!r} is not a Dask scheduler address; give "
            "tcp://HOST:PORT (or tls://, ws://, wss://, ucx://)."
        )
    return address


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def clamp_workers(workers: int, threads_per_worker: int = 1) -> int:
    """``workers`` limited to the CPU cores (a warning says so when it is lowered)."""
    if not isinstance(workers, int) or workers < 0:
        raise MicrosegError(f"workers must be an integer >= 0, got {workers!r}.")
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise MicrosegError(
            f"threads per worker must be an integer >= 1, got {threads_per_worker!r}."
        )
    cores = cpu_count()
    if workers > cores:
        warnings.warn(
            f"{workers} worker processes asked for, but this machine has {cores} CPU "
            f"core{'s' if cores != 1 else ''}; using {cores}.",
            stacklevel=2,
        )
        return cores
    return workers
