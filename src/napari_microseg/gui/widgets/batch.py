"""Batch dock: run a saved recipe over a folder of micrographs, with progress and cancel.

The work is :func:`napari_microseg.core.batch.runner.batch_steps` (what
``microseg batch`` runs) in a worker thread; the Dask workers are separate
processes, so napari stays responsive (a small batch runs in that thread at
once, without starting a cluster). The pixel-size policy and value chosen
here replace the recipe's (the recipe saved in the output folder says so). :func:`save_recipe_dialog` is the
"Save recipe…" action of the Predict and Measure docks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QFileDialog, QLabel, QProgressBar, QVBoxLayout, QWidget

from ...core.errors import MicrosegError
from ..workers import start_worker

if TYPE_CHECKING:
    import napari

RECIPE_FILTER = "napari-microseg recipe (*.json *.yaml *.yml)"
#: First entry of the pixel-size policy choice: keep the recipe's policy.
FROM_RECIPE = "as in the recipe"


def save_recipe_dialog(parent, make_recipe) -> Path | None:
    """Ask where to save ``make_recipe()`` and save it; errors become notifications."""
    from napari.utils.notifications import show_error, show_info

    try:
        recipe = make_recipe()
    except MicrosegError as e:
        show_error(str(e))
        return None
    path, _ = QFileDialog.getSaveFileName(parent, "Save batch recipe", "recipe.json", RECIPE_FILTER)
    if not path:
        return None
    try:
        recipe.save(path)
    except (MicrosegError, OSError) as e:
        show_error(str(e))
        return None
    show_info(f"Saved recipe {recipe.recipe_hash()[:12]} to {path}")
    return Path(path)


class BatchWidget(QWidget):
    """Dock widget: recipe + input folder → labels, tables, summary and report in a folder."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self._cancel = False
        self._progress = (0, 0, 0)  # done, total, failed: written by the worker thread
        self.result = None
        self.worker = None
        self.recipe = FileEdit(label="recipe", mode="r", filter="*.json *.yaml *.yml")
        self.inputs = FileEdit(label="input folder", mode="d")
        self.pattern = LineEdit(label="files (glob)", value="*")
        self.out = FileEdit(label="output folder", mode="d")
        self.workers = SpinBox(
            label="worker processes (0, 1 or ≤ 4 images = here)", min=0, max=256, value=2
        )
        self.threads = SpinBox(label="threads per worker", min=1, max=64, value=1)
        self.scheduler = LineEdit(label="scheduler (tcp://…, empty = local)", value="")
        self.overwrite = CheckBox(
            text="redo images already done (and replace another recipe's results)", value=False
        )
        from ...core.batch import PIXEL_POLICIES

        self.policy = ComboBox(
            label="pixel size policy",
            choices=(FROM_RECIPE, *[p for p in PIXEL_POLICIES if p != "require"]),
            value=FROM_RECIPE,
            tooltip="metadata: the file's calibration, an uncalibrated image is an error; "
            "override: the pixel size below for every image; allow_px: measure "
            "uncalibrated images in px",
        )
        self.pixel_size = LineEdit(label="pixel size (nm/px, for override)", value="")
        self.pixel_size.tooltip = "Full precision, e.g. 0.390625; used with policy override."
        self.run_button = PushButton(text="Run batch")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.params = Container(
            widgets=[
                self.recipe,
                self.inputs,
                self.pattern,
                self.out,
                self.workers,
                self.threads,
                self.scheduler,
                self.overwrite,
                self.policy,
                self.pixel_size,
                self.run_button,
                self.cancel_button,
            ]
        )
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("no batch run yet")
        self.status = QLabel(
            "Choose a recipe (Save batch recipe… in the Predict or Measure dock), "
            "an input folder and an output folder."
        )
        self.status.setWordWrap(True)
        self.status.setOpenExternalLinks(True)
        # the report's full path, selectable: the link above may have no browser to open
        self.report_path = QLabel("")
        self.report_path.setWordWrap(True)
        self.report_path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # why images failed, so that nobody needs the report to learn it
        self.errors = QLabel("")
        self.errors.setWordWrap(True)
        self.errors.setStyleSheet("color: #e06c6c;")
        self.errors.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.errors.hide()
        layout = QVBoxLayout(self)
        for w in (self.params.native, self.bar, self.status, self.errors, self.report_path):
            layout.addWidget(w)
        layout.addStretch()
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._show_progress)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self._on_cancel)

    def _inputs(self) -> list[str]:
        folder = Path(self.inputs.value)
        pattern = self.pattern.value.strip() or "*"
        if not str(self.inputs.value).strip() or not folder.is_dir():
            raise MicrosegError("Choose an input folder.")
        return [str(folder)] if pattern == "*" else [str(folder / pattern)]

    def _with_pixel_policy(self, recipe):
        """``recipe`` with the dock's pixel-size policy and value, when one is chosen."""
        from ...core.batch import PixelSizePolicy, Recipe

        policy, text = self.policy.value, self.pixel_size.value.strip()
        if policy == FROM_RECIPE and not text:
            return recipe
        if policy == FROM_RECIPE:
            policy = "override"
        nm = None
        if policy == "override":
            try:
                nm = float(text)
            except ValueError:
                raise MicrosegError(
                    f"pixel size {text!r} is not a number; give nm/px, e.g. 0.390625."
                ) from None
            if not (nm > 0 and nm < float("inf")):
                raise MicrosegError(f"pixel size {text!r} must be a positive number of nm/px.")
        elif text:
            raise MicrosegError(
                f"the pixel size is only used with policy 'override' (policy is {policy!r}); "
                "clear it or choose override."
            )
        out = Recipe.from_dict(recipe.to_dict())
        out.pixel_size = PixelSizePolicy(policy, nm)
        out.provenance = {**out.provenance, "pixel_size_from": "Batch dock"}
        out.validate()
        return out

    def run(self, *_):
        """Start the batch in a worker; returns the worker (``None`` when inputs are missing)."""
        from napari.utils.notifications import show_error

        from ...core.batch import Recipe, collect_inputs
        from ...core.batch.folder import check_scheduler
        from ...core.batch.runner import batch_steps

        try:
            if not self.recipe.value or not Path(self.recipe.value).is_file():
                raise MicrosegError("Choose a recipe file.")
            recipe = self._with_pixel_policy(Recipe.load(self.recipe.value))
            out = Path(self.out.value)
            if not str(self.out.value).strip() or str(self.out.value) == ".":
                raise MicrosegError("Choose an output folder.")
            check_scheduler(self.scheduler.value)
            paths = collect_inputs(self._inputs(), exclude=out)
            if not paths:
                raise MicrosegError(f"No supported images in {self.inputs.value}.")
        except MicrosegError as e:
            show_error(str(e))
            self.status.setText(str(e))
            return None
        self._cancel = False
        self._progress = (0, len(paths), 0)
        self.bar.setRange(0, len(paths))
        self.bar.setFormat("%v / %m images")
        self.bar.setValue(0)
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.report_path.setText("")
        self.status.setText(f"Running {len(paths)} images with recipe {recipe.recipe_hash()[:12]}…")

        def job():
            failed = 0
            steps = batch_steps(
                recipe,
                paths,
                out,
                workers=self.workers.value,
                threads_per_worker=self.threads.value,
                scheduler=self.scheduler.value.strip() or None,
                overwrite=bool(self.overwrite.value),
                cancel=lambda: self._cancel,
            )
            while True:
                try:
                    done, total, res = next(steps)
                except StopIteration as stop:
                    return stop.value
                failed += res.status == "error"
                self._progress = (done, total, failed)
                yield done

        self._timer.start()
        self.worker = start_worker(
            job,
            on_returned=self._on_done,
            on_finished=self._on_finished,
            on_errored=self._on_error,
            progress_bar={"total": len(paths), "desc": "Batch"},
        )
        return self.worker

    def _show_progress(self):
        done, total, failed = self._progress
        self.bar.setValue(done)
        if self.worker is not None and total:
            state = "cancelling" if self._cancel else "running"
            self.status.setText(f"{done} of {total} images done, {failed} failed ({state})…")

    def _on_cancel(self, *_):
        self._cancel = True
        self.status.setText("Cancelling: finished images are kept…")

    def _on_error(self, e):
        self._timer.stop()
        self.status.setText(str(e))

    def _on_done(self, run):
        self._timer.stop()
        self.result = run
        i = run.info
        report = run.report.resolve().as_uri() if run.report is not None else None
        self.status.setText(
            f"{i['n_ok']} processed, {i['n_skipped']} already done, {i['n_failed']} failed "
            f"of {i['n_inputs']} in {i['wall_s']:.1f} s"
            + (" (cancelled)" if i["cancelled"] else "")
            + (f'. <a href="{report}">Open the report</a>' if report else "")
        )
        failed = [r for r in run.results if r.status == "error"]
        lines = [f"{Path(r.image).name}: {r.error}" for r in failed[:3]]
        if len(failed) > 3:
            lines.append(f"… and {len(failed) - 3} more (see the report)")
        self.errors.setText("\n".join(lines))
        self.errors.setVisible(bool(lines))
        if run.report is not None:
            self.report_path.setText(f"Report: {run.report.resolve()}")

    def _on_finished(self):
        self._timer.stop()
        self.bar.setValue(self._progress[0])
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
