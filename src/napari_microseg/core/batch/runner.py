"""Run a recipe over many micrographs on a ``dask.distributed`` cluster.

:func:`run_batch` checks everything first (inputs, the model against its
recipe, the cluster options) so a refused run leaves the output folder as it
was; then takes the folder's lock (:class:`~.folder.FolderLock`), refuses a
folder holding another recipe's results unless ``overwrite``, skips images
already done (:func:`~.process.finished`), starts a
:class:`~distributed.LocalCluster` of worker processes (or connects to
``scheduler="tcp://host:port"``), submits one task per image -- only the path
travels; the image is read in the worker -- a few at a time ahead of the free
workers, and collects results with :class:`~distributed.as_completed` as they
finish. A small batch (at most :data:`IN_PROCESS_MAX` images to compute, or
one worker) runs in this process at once: starting a cluster would cost more
than it saves. ``workers=0`` always runs in this process.

Every image's record is on disk as soon as it finishes, so a killed run loses
nothing that finished. ``summary.csv`` (rewritten atomically every few
seconds and at the end) and the report (:mod:`.report`) cover every image the
folder holds for the recipe: this run's images in input order, then those of
earlier runs.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_path, remove_partials, write_json_atomic
from ..errors import MicrosegError
from .folder import (
    RECIPE_FILE,
    FolderLock,
    check_recipe,
    check_scheduler,
    clamp_workers,
    folder_results,
)
from .process import ImageResult, finished, load_recipe_model, process_image
from .recipe import Recipe

SUMMARY_FILE, RUN_FILE = "summary.csv", "run.json"
#: Leading columns of ``summary.csv``; the recipe's classes add count/density columns.
BASE_COLUMNS = ("image", "name", "status", "error", "seconds")
#: At most this many images to compute run in this process (no cluster start-up).
IN_PROCESS_MAX = 4
#: Seconds between atomic rewrites of ``summary.csv`` during a run.
SUMMARY_EVERY_S = 10.0
#: Seconds to wait for a remote scheduler to answer.
CONNECT_TIMEOUT_S = 5


@dataclass
class BatchRun:
    """Outcome of :func:`run_batch`."""

    results: list[ImageResult]
    out_dir: Path
    info: dict = field(default_factory=dict)
    report: Path | None = None
    #: Results of earlier runs in the same folder with the same recipe (not in ``results``).
    earlier: list[ImageResult] = field(default_factory=list)

    @property
    def all_results(self) -> list[ImageResult]:
        """Every image the folder holds for the recipe: this run's, then earlier runs'."""
        return [*self.results, *self.earlier]

    def count(self, status: str) -> int:
        """Number of images with ``status`` (``"ok"``, ``"skipped"``, ``"error"``)."""
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[ImageResult]:
        """Results whose status is ``"error"``."""
        return [r for r in self.results if r.status == "error"]


def collect_inputs(inputs, exclude=None) -> list[Path]:
    """Image files from files, folders (their supported files) and glob patterns.

    Paths are de-duplicated in order; anything under ``exclude`` (the output
    folder) is left out. A file given by name is kept even when its suffix is
    not supported (it then fails with a clear error in the report).
    """
    from ..reading import is_supported

    out, seen = [], set()
    skip = Path(exclude).resolve() if exclude is not None else None

    def add(p: Path):
        r = p.resolve()
        if r in seen or (skip is not None and r.is_relative_to(skip)):
            return
        seen.add(r)
        out.append(p)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.iterdir()):
                if f.is_file() and is_supported(f) and not f.name.startswith("."):
                    add(f)
        elif p.exists():
            add(p)
        else:
            matches = sorted(glob.glob(str(item), recursive=True))
            if not matches:
                raise MicrosegError(f"No such file, folder or matching files: {item}")
            for m in matches:
                if Path(m).is_file() and is_supported(m):
                    add(Path(m))
    return out


def output_names(paths) -> list[str]:
    """Unique output stems: the file stem, plus a short path hash where stems collide."""
    stems = [Path(p).stem for p in paths]
    dup = {s for s in stems if stems.count(s) > 1}
    return [
        s
        if s not in dup
        else f"{s}-{hashlib.sha1(str(Path(p).resolve()).encode()).hexdigest()[:8]}"
        for s, p in zip(stems, paths, strict=True)
    ]


def summary_columns(recipe: Recipe) -> list[str]:
    """Columns of ``summary.csv`` for ``recipe`` (fixed for a run, so rows can be appended)."""
    cols = list(BASE_COLUMNS) + [
        "height_px",
        "width_px",
        "pixel_size_nm",
        "pixel_size_source",
        "unit",
        "reference_area_nm2",
        "reference_area_px2",
        "n_objects",
        "density_per_um2",
        "density_per_px2",
        "area_fraction",
        "mean_equivalent_diameter_nm",
        "mean_equivalent_diameter_px",
        "hardening_rss_mpa",
        "calibration_note",
    ]
    for c in recipe.classes:
        cols += [
            f"count[{c['name']}]",
            f"density_per_um2[{c['name']}]",
            f"density_per_px2[{c['name']}]",
        ]
    return cols


def _task(
    recipe_dict: dict,
    path: str,
    out_dir: str,
    name: str,
    overwrite: bool,
    threads: int,
    device: str,
) -> ImageResult:
    """What a Dask worker runs for one image (module level, so it pickles by reference)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return process_image(
        Recipe.from_dict(recipe_dict), path, out_dir, name=name, overwrite=overwrite, device=device
    )


def _warm(recipe_dict: dict, threads: int, device: str) -> None:
    """Load the recipe's model once in a worker before the images arrive."""
    import torch

    torch.set_num_threads(threads)
    load_recipe_model(Recipe.from_dict(recipe_dict), device)


def _noop(path: str) -> str:
    """A task that does nothing (the benchmark's scheduler-overhead probe)."""
    return path


def start_client(workers: int = 2, threads_per_worker: int = 1, scheduler: str | None = None):
    """``(client, cluster)``: a new local cluster of processes, or ``(client, None)`` for ``scheduler``."""
    from distributed import Client, LocalCluster

    if scheduler:
        scheduler = check_scheduler(scheduler)
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s"), None
        except Exception as e:  # OSError, TimeoutError, ValueError from a bad address
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            raise MicrosegError(
                f"Cannot reach the Dask scheduler at {scheduler} ({reason}); start it or "
                "leave out the scheduler to use a local cluster."
            ) from None
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    except Exception as e:  # RuntimeError, TimeoutError, OSError from a failed start
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise MicrosegError(
            f"Could not start a local Dask cluster of {workers} worker processes ({reason}); "
            "try fewer workers, or 0 to run in this process."
        ) from None
    return Client(cluster), cluster


def iter_batch(
    recipe: Recipe,
    paths,
    out_dir,
    *,
    names=None,
    workers: int = 2,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    cancel: Callable[[], bool] | None = None,
    info: dict | None = None,
) -> Iterator[ImageResult]:
    """Yield one :class:`ImageResult` per image as it finishes (skipped ones first).

    ``cancel()`` is polled a few times a second; when true, tasks not finished
    are cancelled and the iteration ends. ``info`` (a dict) receives the
    cluster's address and size.
    """
    out_dir = Path(out_dir)
    names = names or output_names(paths)
    cancel = cancel or (lambda: False)
    rhash = recipe.recipe_hash()
    todo = []
    for p, n in zip(paths, names, strict=True):
        done = None if overwrite else finished(rhash, p, out_dir, n)
        if done is not None:
            yield done
        else:
            todo.append((str(p), n))
    if not todo or cancel():
        return
    load_recipe_model(recipe, "cpu")  # a missing or changed model stops the run here, once
    if not scheduler and (workers <= 1 or len(todo) <= IN_PROCESS_MAX):
        if info is not None:
            info.update(mode="in process", cluster_start_s=0.0, ready_unix=time.time())
        yield from _in_process(recipe, todo, out_dir, workers, threads_per_worker, device, cancel)
        return
    yield from _on_dask(
        recipe,
        todo,
        out_dir,
        workers,
        threads_per_worker,
        scheduler,
        device,
        cancel,
        info if info is not None else {},
    )


def _in_process(recipe, todo, out_dir, workers, threads, device, cancel):
    """The images one after another in this process (the same :func:`process_image`).

    With ``workers >= 1`` torch uses ``threads`` threads meanwhile, as one worker
    would; ``workers=0`` leaves the caller's setting alone.
    """
    import torch

    before = torch.get_num_threads()
    if workers >= 1 and threads != before:
        torch.set_num_threads(threads)
    try:
        for p, n in todo:
            if cancel():
                return
            yield process_image(recipe, p, out_dir, name=n, overwrite=True, device=device)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _on_dask(recipe, todo, out_dir, workers, threads, scheduler, device, cancel, info):
    from distributed import as_completed

    t0 = time.perf_counter()
    client, cluster = start_client(workers, threads, scheduler)
    info["mode"] = "dask"
    try:
        slots = sum(client.nthreads().values()) or 1
        info.update(
            scheduler=client.scheduler.address, workers=len(client.nthreads()), threads=slots
        )
        rd, queue, owner = recipe.to_dict(), iter(todo), {}
        try:
            client.run(_warm, rd, threads, device)
        except MicrosegError:
            raise
        except Exception as e:
            raise MicrosegError(
                f"The Dask workers cannot load model {recipe.model_name!r} "
                f"({type(e).__name__}: {e})."
            ) from None
        ac = as_completed()

        def submit():
            item = next(queue, None)
            if item is not None:
                fut = client.submit(
                    _task,
                    rd,
                    item[0],
                    str(out_dir),
                    item[1],
                    True,
                    threads,
                    device,
                    pure=False,
                    key=f"image-{item[1]}-{time.time_ns()}",
                )
                owner[fut.key] = item
                ac.add(fut)

        info["cluster_start_s"] = round(time.perf_counter() - t0, 3)  # start + model loaded
        info["ready_unix"] = time.time()
        for _ in range(2 * slots):  # a little work queued ahead of every worker
            submit()
        while not ac.is_empty():
            if cancel():
                client.cancel(list(ac.futures))
                return
            if not ac.has_ready():
                time.sleep(0.05)
                continue
            for fut in ac.next_batch(block=False):
                submit()
                yield _result(fut, owner.pop(fut.key), recipe)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _result(fut, item, recipe) -> ImageResult:
    try:
        return fut.result()
    except Exception as e:  # the worker died, or the task was cancelled
        return ImageResult(
            item[0],
            item[1],
            "error",
            f"worker failed: {type(e).__name__}: {e}",
            recipe_hash=recipe.recipe_hash(),
        )


def run_batch(
    recipe: Recipe, inputs, out_dir, *, progress: Callable | None = None, **kwargs
) -> BatchRun:
    """Process every input with ``recipe``; write per-image outputs, ``summary.csv`` and the report.

    Parameters
    ----------
    recipe : Recipe
    inputs : iterable of str or Path
        Files, folders and glob patterns (see :func:`collect_inputs`).
    out_dir : str or Path
    progress : callable, optional
        ``progress(done, total, result)`` after every image.
    **kwargs
        ``workers``, ``threads_per_worker``, ``scheduler``, ``overwrite``,
        ``device``, ``cancel``, ``report``: see :func:`batch_steps`.
    """
    steps = batch_steps(recipe, inputs, out_dir, **kwargs)
    while True:
        try:
            done, total, res = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total, res)


def batch_steps(
    recipe: Recipe,
    inputs,
    out_dir,
    *,
    workers: int = 2,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    cancel: Callable[[], bool] | None = None,
    report: bool = True,
):
    """:func:`run_batch` as a generator: yields ``(done, total, result)``, returns the :class:`BatchRun`.

    Parameters
    ----------
    workers, threads_per_worker : int
        Size of the local cluster (processes; torch uses ``threads_per_worker``
        threads in each); more workers than CPU cores are lowered with a
        warning. ``workers=0`` or ``1``, or at most :data:`IN_PROCESS_MAX`
        images to compute, run serially in this process.
    scheduler : str, optional
        ``"tcp://host:port"`` of a running Dask scheduler to use instead.
    overwrite : bool
        Redo images already done with this recipe, and replace the results of
        another recipe in ``out_dir`` (refused otherwise).
    device : str
        Torch device in the workers.
    cancel : callable, optional
        Returns True to stop; finished images are kept and reported.
    report : bool
        Write ``report.html`` (with PNG plots) at the end.

    Raises
    ------
    MicrosegError
        Before anything is written: no inputs, a bad scheduler address, a
        missing or changed model, the folder locked by another batch or
        holding another recipe's results. After: a write that fails.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    # 1. everything that can refuse the run, before anything is written
    scheduler = check_scheduler(scheduler)
    if not scheduler:
        workers = clamp_workers(workers, threads_per_worker)
    recipe.validate()
    if out_dir.exists() and not out_dir.is_dir():
        raise MicrosegError(f"{out_dir} is a file, not an output folder.")
    paths = collect_inputs(inputs, exclude=out_dir)
    if not paths:
        raise MicrosegError("No input images found.")
    names = output_names(paths)
    load_recipe_model(recipe, "cpu")  # a missing or changed model: the folder stays untouched
    # 2. the folder is ours: one batch at a time, one recipe per folder
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out_dir).acquire()
    try:
        check_recipe(out_dir, recipe, overwrite)
        opts = dict(
            workers=workers,
            threads_per_worker=threads_per_worker,
            scheduler=scheduler,
            overwrite=overwrite,
            device=device,
            cancel=cancel,
        )
        return (yield from _steps(recipe, paths, names, out_dir, t0, opts, report))
    finally:
        lock.release()


def _steps(recipe, paths, names, out_dir, t0, opts: dict, report: bool):
    """The body of :func:`batch_steps` once the folder is locked and checked.

    ``opts`` holds the keyword arguments of :func:`iter_batch` (workers, ...).
    """
    # half-written files of a killed earlier run (never this run's: they are newer)
    stale = remove_partials(out_dir, older_than=time.time())
    _saving(out_dir / RECIPE_FILE, recipe.save, out_dir / RECIPE_FILE)
    cols = summary_columns(recipe)
    rhash = recipe.recipe_hash()
    info = {
        "recipe_hash": rhash,
        "n_inputs": len(paths),
        **{k: opts[k] for k in ("workers", "threads_per_worker", "scheduler", "device")},
        "overwrite": opts["overwrite"],
        "started_utc": _now(),
        "removed_partial_files": len(stale),
    }
    earlier = folder_results(out_dir, rhash, exclude=names)
    results, last = [], time.monotonic()
    for res in iter_batch(recipe, paths, out_dir, names=names, info=info, **opts):
        results.append(res)
        if time.monotonic() - last >= SUMMARY_EVERY_S:
            _saving(
                out_dir / SUMMARY_FILE,
                write_summary,
                out_dir / SUMMARY_FILE,
                [*results, *earlier],
                cols,
            )
            last = time.monotonic()
        yield len(results), len(paths), res
    order = {str(p): i for i, p in enumerate(paths)}
    results.sort(key=lambda r: order.get(r.image, len(order)))
    run = BatchRun(results, out_dir, info, earlier=earlier)
    _saving(out_dir / SUMMARY_FILE, write_summary, out_dir / SUMMARY_FILE, run.all_results, cols)
    n_px = sum(r.row.get("unit") == "px" for r in run.all_results if r.status != "error")
    info.update(
        finished_utc=_now(),
        wall_s=round(time.perf_counter() - t0, 3),
        cancelled=len(results) < len(paths),
        n_ok=sum(r.status == "ok" for r in results),
        n_skipped=sum(r.status == "skipped" for r in results),
        n_failed=sum(r.status == "error" for r in results),
        n_earlier=len(earlier),
        n_in_px=n_px,
    )
    if n_px:
        warnings.warn(
            f"{n_px} image(s) in {out_dir} are measured in px (no pixel size; "
            "pixel_size policy allow_px): their sizes and densities are per px.",
            stacklevel=2,
        )
    _saving(out_dir / RUN_FILE, write_json_atomic, out_dir / RUN_FILE, info)
    if report:
        from .report import REPORT_FILE, write_report

        run.report = _saving(out_dir / REPORT_FILE, write_report, run, recipe)
    return run


def _saving(path, fn, *args):
    """``fn(*args)``, with a failed write (a full disk, no permission) as one line naming ``path``."""
    try:
        return fn(*args)
    except OSError as e:
        raise MicrosegError(
            f"cannot write {path} ({e.strerror or e}); each finished image's results are "
            "saved: free space or fix the folder and run again (done images are skipped)."
        ) from None


def write_summary(path, results, columns) -> Path:
    """Rewrite ``summary.csv`` atomically with one row per result."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for r in results:
            writer.writerow(r.summary_record())
    return Path(path)


def _now() -> str:
    from .recipe import _now as now

    return now()
