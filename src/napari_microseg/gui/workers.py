"""Run core work off the GUI thread with progress, cancel and error reporting."""

from __future__ import annotations

from collections.abc import Callable

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error


def start_worker(
    func: Callable,
    *args,
    on_returned: Callable | None = None,
    on_finished: Callable | None = None,
    on_errored: Callable | None = None,
    progress_bar: dict | None = None,
    owner=None,
    **kwargs,
):
    """Start ``func(*args, **kwargs)`` in a thread; report errors as notifications.

    Parameters
    ----------
    func : callable
        Plain function (returns a result) or generator (yields progress).
    on_returned : callable, optional
        Called in the GUI thread with the result.
    on_finished : callable, optional
        Called in the GUI thread when the worker ends, whatever the outcome.
    on_errored : callable, optional
        Called in the GUI thread with the exception (besides the notification).
    progress_bar : dict, optional
        Passed to napari's ``create_worker`` (``{"total": n, "desc": ...}``) to
        show a progress bar in the activity dock. Other keyword arguments
        (``progress=`` included) go to ``func``.
    owner : QWidget or magicgui widget, optional
        The dock the callbacks write to. Once it is closed (its Qt object
        deleted), the callbacks are skipped instead of raising in the event loop.

    Returns
    -------
    worker
        The started napari ``WorkerBase``; ``worker.quit()`` cancels a
        generator worker at its next yield.
    """
    # Errors become a notification (below), not a re-raise in the Qt event loop.
    worker = create_worker(func, *args, _progress=progress_bar or False, _ignore_errors=True, **kwargs)
    if owner is not None:
        on_returned, on_finished, on_errored = (
            None if f is None else _while_alive(owner, f) for f in (on_returned, on_finished, on_errored))
    if on_returned is not None:
        worker.returned.connect(on_returned)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.errored.connect(lambda e: show_error(str(e)))
    if on_errored is not None:
        worker.errored.connect(on_errored)
    worker.start()
    return worker


def alive(widget) -> bool:
    """Whether ``widget``'s Qt object still exists (a closed dock's is deleted while Python holds it).

    Parameters
    ----------
    widget : QObject or magicgui widget
        A magicgui widget is checked through its ``native`` Qt widget.
    """
    import qtpy
    from qtpy.QtCore import QObject

    if not isinstance(widget, QObject):  # a deleted QObject raises on any attribute look-up
        widget = widget.native
    if qtpy.PYSIDE2 or qtpy.PYSIDE6:
        from qtpy import shiboken

        return shiboken.isValid(widget)
    from qtpy import sip

    return not sip.isdeleted(widget)


def _while_alive(owner, func: Callable) -> Callable:
    def call(*args):
        if alive(owner):
            return func(*args)
        return None

    return call


def stop_workers(msecs: int = 30_000) -> list[str]:
    """Ask every running background worker to stop and wait for Qt's thread pool.

    Call before the process ends: ``QCoreApplication``'s destructor waits, holding
    the interpreter, for every thread of Qt's global pool, so a worker still running
    then makes the process hang at exit (or abort, when it finishes after its
    signals were deleted). Generator workers stop at their next ``yield``; plain
    functions are waited for.

    Parameters
    ----------
    msecs : int
        How long to wait for the workers, in milliseconds.

    Returns
    -------
    list of str
        The functions of the workers still running after ``msecs`` (empty when
        every worker has ended).
    """
    from qtpy.QtCore import QCoreApplication, QThreadPool
    from superqt.utils._qthreading import WorkerBase

    running = list(WorkerBase._worker_set)
    for worker in running:
        worker.quit()
    pool = QThreadPool.globalInstance()
    pool.clear()  # workers queued but not started never start
    done = pool.waitForDone(msecs)
    if QCoreApplication.instance() is not None:
        QCoreApplication.processEvents()  # deliver the workers' last signals
    if done:
        return []
    left = [w for w in running if w in WorkerBase._worker_set]
    names = [getattr(getattr(w, "_func", getattr(w, "_gen", None)), "__qualname__", type(w).__name__)
             for w in left]
    return names or [f"{pool.activeThreadCount()} thread(s) of Qt's global pool"]
