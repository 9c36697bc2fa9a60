"""The child process that trains for the Train dock (no Qt or napari here).

``python -m napari_microseg.gui.train_child JOB`` unpickles ``JOB`` (the
arguments of :func:`~napari_microseg.gui.training_run.run_training`), trains,
and writes length-prefixed pickled frames to what was its standard output:
``("event", TrainEvent)`` while it runs, then ``("result", TrainResult)`` or
``("error", message)``. A line ``stop`` on its standard input, or the input
closing (the GUI went away), stops the run at the next step with a checkpoint,
so Resume can continue it.

Training in its own process keeps the GUI's event loop free: module imports,
checkpoint pickling and Python-level work of the run never hold the napari
process's GIL, and the run's torch threads are its own.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import traceback

from .train_frames import write_frame


def _watch_stdin(flag: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    flag.set()  # "stop", or the parent closed the pipe / went away


#: Niceness of the training process: the GUI (and its software rendering) gets the CPU first.
NICENESS = 10


def main(job_path: str) -> int:
    if hasattr(os, "nice"):
        os.nice(NICENESS)
    # Frames go to the original stdout; anything libraries print goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    lock = threading.Lock()

    def send(obj):
        with lock:
            write_frame(out, obj)

    try:
        with open(job_path, "rb") as f:
            job = pickle.load(f)
        from .torch_guard import block_triton

        block_triton()
        from ..core.errors import MicrosegError
        from .training_run import run_training

        args, kwargs = job
        try:
            result = run_training(
                *args, progress=lambda e: send(("event", e)), should_stop=stop.is_set, **kwargs
            )
        except MicrosegError as e:
            send(("error", str(e)))
            return 1
        send(("result", result))
        return 0
    except Exception as e:  # reported to the dock, traceback to the log
        traceback.print_exc()
        send(("error", f"{type(e).__name__}: {e}"))
        return 1
    finally:
        try:
            os.unlink(job_path)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
