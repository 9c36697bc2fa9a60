"""Training data from napari layers, and one background training run for the Train dock.

:func:`layer_train_image` snapshots an (image, labels) layer pair as a
:class:`~napari_microseg.core.training.TrainImage` (copies: the user keeps
labelling while the run trains on what was there at Start).
:class:`TrainingRun` runs :func:`~napari_microseg.core.training.train` in a
child process (:mod:`.train_child`; or, for tests and debugging, in a thread of
this process). Its progress events, then its result or error, go into a
thread-safe queue that the dock drains on a timer, so nothing but the GUI
thread touches Qt. No Qt or napari import here: the child imports this module.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.training import TrainConfig, TrainImage, load_folder, train
from ..core.training.data import class_names_of
from .layer_data import layer_classes, layer_pixel_size


def training_threads() -> int:
    """Torch threads for a run: every core but one, which stays with the GUI."""
    return max(1, (os.cpu_count() or 2) - 1)


def layer_image_array(layer) -> np.ndarray:
    """A copy of an Image layer's full-resolution data."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.array(data)


def layer_train_image(image_layer, labels_layer) -> TrainImage:
    """A :class:`TrainImage` from an Image layer and its instance Labels layer.

    Instance classes come from the labels layer's features (see
    :func:`~napari_microseg.gui.layer_data.layer_classes`); the pixel size from
    the labels layer, else the image.
    """
    inst, table = layer_classes(labels_layer)
    ps = layer_pixel_size(labels_layer)
    if not ps.calibrated:
        ps = layer_pixel_size(image_layer)
    return TrainImage(
        name=f"{image_layer.name} / {labels_layer.name}",
        image=layer_image_array(image_layer),
        labels=np.array(labels_layer.data),
        instance_classes=inst,
        pixel_size_nm=ps.x_nm if ps.calibrated else None,
        class_names=class_names_of(table),
    )


def run_training(config, images, val_images, folders=(), val_folders=(), **kwargs):
    """Read dataset ``folders`` (training) and ``val_folders``, then :func:`train` everything.

    Runs in the worker: folder reading is slow, and :func:`train` checks the
    data before it writes anything.
    """
    images, val_images = list(images), list(val_images or [])
    source = dict(kwargs.pop("source", None) or {})
    for key, paths, out in (("folders", folders, images), ("val_folders", val_folders, val_images)):
        for path in paths:
            loaded, src = load_folder(path)
            out.extend(loaded)
            source.setdefault(key, []).append(src)
    return train(config, images, val_images or None, source=source, **kwargs)


@dataclass
class TrainingRun:
    """Everything one run needs, kept so that a stopped run can be resumed as it was.

    ``in_process=False`` (the default) trains in a child Python process: the
    GUI's event loop then never waits for the run's imports, checkpoint writes
    or Python work (measured in ``benchmarks/bench_train_responsiveness.py``).
    """

    config: TrainConfig
    images: list
    val_images: list
    folders: list
    val_folders: list
    run_dir: Path
    source: dict
    overwrite: bool = False
    preview_image: np.ndarray | None = None
    preview_every: int = 0
    #: Register only a model that learnt something (``"if-learned"``), or always (``True``).
    register: bool | str = "if-learned"
    #: On Stop, register the best weights so far as ``NAME-partial``.
    register_on_stop: bool = False
    in_process: bool = False
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    stop_flag: threading.Event = field(default_factory=threading.Event)
    #: The child process (``None`` in-process or before start).
    process: subprocess.Popen | None = None
    #: Set once the run has ended, whatever the outcome.
    ended: threading.Event = field(default_factory=threading.Event)

    def _job(self, resume: bool) -> tuple:
        args = (self.config, self.images, self.val_images, self.folders, self.val_folders)
        kwargs = dict(
            run_dir=self.run_dir,
            resume=resume,
            overwrite=self.overwrite,
            preview_image=self.preview_image,
            preview_every=self.preview_every,
            source=self.source,
            register=self.register,
            register_on_stop=self.register_on_stop,
        )
        return args, kwargs

    def start(self, *, resume: bool) -> None:
        """Start (or resume) the run; its frames arrive through :meth:`drain`."""
        self.stop_flag.clear()
        self.ended.clear()
        target = self._run_here if self.in_process else self._run_child
        threading.Thread(target=target, args=(resume,), daemon=True, name="microseg-train").start()

    def _finish(self, kind: str, value) -> None:
        self.events.put((kind, value))
        self.ended.set()

    def _run_here(self, resume: bool) -> None:
        from ..core.errors import MicrosegError

        args, kwargs = self._job(resume)
        try:
            result = run_training(
                *args,
                progress=lambda e: self.events.put(("event", e)),
                should_stop=self.stop_flag.is_set,
                **kwargs,
            )
        except MicrosegError as e:
            self._finish("error", str(e))
        except Exception as e:
            self._finish("error", f"{type(e).__name__}: {e}")
        else:
            self._finish("result", result)

    def _run_child(self, resume: bool) -> None:
        from .train_frames import read_frame

        fd, job_path = tempfile.mkstemp(prefix="microseg-train-", suffix=".pkl")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(self._job(resume), f, protocol=pickle.HIGHEST_PROTOCOL)
        self.log_path = Path(job_path).with_suffix(".log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "napari_microseg.gui.train_child", job_path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        if self.stop_flag.is_set():
            self.stop()
        outcome = None
        while True:
            frame = read_frame(self.process.stdout)
            if frame is None:
                break
            if frame[0] == "event":
                self.events.put(frame)
            else:
                outcome = frame
        code = self.process.wait()
        self.process.stdin.close()
        if outcome is None:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            outcome = (
                "error",
                f"The training process ended unexpectedly (exit code {code}). " + " ".join(tail),
            )
        self._finish(*outcome)

    def stop(self) -> None:
        """Ask the run to checkpoint and return after the current step."""
        self.stop_flag.set()
        proc = self.process
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.write(b"stop\n")
                proc.stdin.flush()
            except OSError:  # already gone
                pass

    def drain(self) -> list:
        """``(kind, value)`` frames that arrived since the last call.

        ``kind`` is ``"event"`` (a TrainEvent), then once ``"result"`` (a
        TrainResult) or ``"error"`` (a message).
        """
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    @property
    def resumable(self) -> bool:
        return (self.run_dir / "last.pt").is_file()
