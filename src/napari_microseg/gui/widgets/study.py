"""Statistics dock: a study over many fields of view, with intervals, and A/B comparison.

The fields are the open Labels layers (each with its image and calibration,
measured as the Measure dock measures them) or a folder of per-object tables
(a batch output, Measure exports). The dock shows the per-field table, the
pooled summary with its intervals (each table says which interval is which),
the outlier fields, the size distribution with its band and log-normal fit,
phase fractions of class labels, and the comparison of two conditions. All
numbers come from :mod:`napari_microseg.core.stats`; the work runs in a worker
(:mod:`napari_microseg.gui.study_run`).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QFileDialog,
    QLabel,
    QProgressBar,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ...core.errors import MicrosegError
from ...core.measure import EDGE_MODES, MeasureSettings
from ..layer_data import source_image_name, user_layers
from ..measure_inputs import gather_inputs
from ..study_run import (
    FieldInput,
    render_class,
    run_compare,
    run_folder_study,
    run_study,
    warm_plots,
)
from ..table_view import DataFrameView
from ..workers import start_worker

if TYPE_CHECKING:
    import napari

SOURCES = ("open layers", "folder")
GROUPS = ("A", "B")
NO_IMAGE = "(none)"
#: Columns of the fields list.
COL_FIELD, COL_IMAGE, COL_GROUP = range(3)


def open_statistics_dock(viewer):
    """Show the Statistics dock (opened, or brought to the front when already open); return the widget."""
    from ..launch import PLUGIN

    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Statistics", tabify=True)
    return widget


def image_of(viewer, labels_layer):
    """The Image layer a Labels layer belongs to: its recorded source image, else the only one of its size."""
    from napari.layers import Image

    images = user_layers(viewer, Image)
    name = source_image_name(labels_layer)
    for img in images:
        if img.name == name:
            return img
    same = [img for img in images if tuple(img.data.shape[:2]) == tuple(labels_layer.data.shape[-2:])]
    return same[0] if len(same) == 1 else None


def study_fields(viewer) -> list:
    """The 2-D Labels layers that can be fields of a study, in layer-list order."""
    from napari.layers import Labels

    return [lyr for lyr in user_layers(viewer, Labels) if lyr.ndim == 2]


class ImageView(QLabel):
    """An RGBA image (a plot rendered in a worker) scaled to the widget's width."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumHeight(160)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self._pixmap = None

    def set_rgba(self, rgba) -> None:
        """Show an ``(H, W, 4)`` uint8 image."""
        rgba = np.ascontiguousarray(rgba)
        h, w = rgba.shape[:2]
        image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
        self._pixmap = QPixmap.fromImage(image)
        self._fit()

    def _fit(self):
        if self._pixmap is not None:
            self.setPixmap(self._pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._fit()


class StudyWidget(QWidget):
    """Dock widget: study statistics over fields of view, exports and A/B comparison."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.outcome = None
        self.comparison = None
        self.worker = None
        self._plot_worker = None
        #: Class whose plots are shown.
        self.shown_class = None
        self.source = ComboBox(label="fields from", choices=list(SOURCES), value=SOURCES[0])
        self.folder = LineEdit(label="folder (condition A)", value="")
        self.folder_b = LineEdit(label="folder B (compare)", value="")
        self.browse = PushButton(text="Choose folder…")
        self.browse_b = PushButton(text="Choose folder B…")
        self.edges = ComboBox(label="edge objects", choices=list(EDGE_MODES), value="include")
        self.guard = FloatSpinBox(label="guard frame (nm)", min=0.0, max=1e6, value=0.0)
        self.thickness = FloatSpinBox(label="foil thickness (nm, 0 = none)", min=0.0, max=1e6, value=0.0)
        self.conf = FloatSpinBox(label="confidence (%)", min=50.0, max=99.9, step=0.5, value=95.0)
        self.seed = SpinBox(label="bootstrap seed", min=0, max=2**31 - 1, value=0)
        self.bins = SpinBox(label="histogram bins", min=2, max=500, value=20)
        self.klass = ComboBox(label="class (table and plots)", choices=["all"], value="all")
        self.phases = CheckBox(text="phase fractions of class labels", value=True)
        self.all_phases = CheckBox(text="… also of instance labels (classes as phases)", value=False)
        self.grid = SpinBox(label="point-count grid (px)", min=2, max=4096, value=16)
        self.build_button = PushButton(text="Build study")
        self.compare_button = PushButton(text="Compare A / B")
        self.export_button = PushButton(text="Export…", enabled=False)
        self.cancel_button = PushButton(text="Cancel (after the current field)", enabled=False)
        self.params = Container(widgets=[
            self.source, self.folder, self.browse, self.folder_b, self.browse_b,
            self.edges, self.guard, self.thickness, self.conf, self.seed, self.bins,
            self.phases, self.all_phases, self.grid,
            self.build_button, self.compare_button, self.cancel_button, self.export_button, self.klass,
        ])
        self.fields = QTableWidget(0, 3, self)
        self.fields.setHorizontalHeaderLabels(["field (Labels)", "image", "condition (click)"])
        self.fields.horizontalHeader().setStretchLastSection(True)
        self.fields.setMinimumHeight(110)
        self.fields.cellClicked.connect(self._on_cell_clicked)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("no study yet")
        self.summary = QLabel("Tick the fields (Labels layers) of the study and press Build study.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.per_field = DataFrameView(self)
        self.pooled = DataFrameView(self)
        self.outliers = DataFrameView(self)
        self.sizes = DataFrameView(self)
        self.phase_view = DataFrameView(self)
        self.compare_box = QWidget(self)
        self.compare_text = QLabel("Set the condition (A or B) of each field, then press Compare A / B.")
        self.compare_text.setWordWrap(True)
        self.compare_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.compare_densities = DataFrameView(self)
        self.compare_sizes = DataFrameView(self)
        for view in (self.per_field, self.pooled, self.outliers, self.sizes, self.phase_view,
                     self.compare_densities, self.compare_sizes):
            view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # table order until a click
        text_box = QScrollArea(self)
        text_box.setWidget(self.compare_text)
        text_box.setWidgetResizable(True)
        text_box.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        split = QSplitter(Qt.Orientation.Vertical, self.compare_box)
        for w in (text_box, self.compare_densities, self.compare_sizes):
            split.addWidget(w)
        QVBoxLayout(self.compare_box).addWidget(split)
        self.dist_plot = ImageView(self)
        self.field_plot = ImageView(self)
        self.summary_box = QScrollArea(self)
        self.summary_box.setWidget(self.summary)
        self.summary_box.setWidgetResizable(True)
        self.summary_box.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.tabs = QTabWidget(self)
        for w, name in ((self.summary_box, "Summary"), (self.per_field, "Fields"), (self.pooled, "Pooled"), (self.outliers, "Outliers"),
                        (self.dist_plot, "Distribution"), (self.sizes, "Sizes"), (self.field_plot, "Per field"),
                        (self.phase_view, "Phases"), (self.compare_box, "Compare")):
            self.tabs.addTab(w, name)
        self.tabs.setMinimumHeight(300)
        layout = QVBoxLayout(self)
        layout.addWidget(self.fields)
        for w in (self.params.native, self.bar, self.tabs):
            layout.addWidget(w)
        self.source.changed.connect(self._on_source)
        self.browse.changed.connect(lambda *_: self._choose_folder(self.folder))
        self.browse_b.changed.connect(lambda *_: self._choose_folder(self.folder_b))
        self.build_button.changed.connect(self.build)
        self.compare_button.changed.connect(self.compare)
        self.export_button.changed.connect(self._on_export)
        self.cancel_button.changed.connect(self.cancel)
        self.klass.changed.connect(self._show_class)
        viewer.layers.events.inserted.connect(self.refresh_fields)
        viewer.layers.events.removed.connect(self.refresh_fields)
        self.refresh_fields()
        self._on_source()
        self._plot_worker = start_worker(warm_plots)

    # -- fields -------------------------------------------------------------------------

    def refresh_fields(self, *_):
        """List the Labels layers; ticks and conditions already set are kept."""
        keep = {self.fields.item(r, COL_FIELD).text(): (self.fields.item(r, COL_FIELD).checkState(),
                                                        self.fields.item(r, COL_GROUP).text())
                for r in range(self.fields.rowCount())}
        layers = study_fields(self._viewer)
        self.fields.setRowCount(len(layers))
        for r, lyr in enumerate(layers):
            state, group = keep.get(lyr.name, (Qt.CheckState.Checked, GROUPS[0]))
            img = image_of(self._viewer, lyr)
            for col, text in ((COL_FIELD, lyr.name), (COL_IMAGE, img.name if img is not None else NO_IMAGE),
                              (COL_GROUP, group)):
                item = QTableWidgetItem(text)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | (Qt.ItemFlag.ItemIsUserCheckable if col == COL_FIELD
                                                           else Qt.ItemFlag.NoItemFlags))
                if col == COL_FIELD:
                    item.setCheckState(state)
                if col == COL_GROUP:
                    item.setToolTip("Condition of this field in Compare A / B: click to switch.")
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.fields.setItem(r, col, item)
        self.fields.resizeColumnsToContents()

    def _on_cell_clicked(self, row: int, col: int):
        """A click on a field's condition switches it between A and B."""
        if col == COL_GROUP:
            item = self.fields.item(row, COL_GROUP)
            item.setText(GROUPS[(GROUPS.index(item.text()) + 1) % len(GROUPS)])

    def field_row(self, name: str) -> int:
        """Row of the field ``name`` in the fields list."""
        for r in range(self.fields.rowCount()):
            if self.fields.item(r, COL_FIELD).text() == name:
                return r
        raise KeyError(name)

    def set_field(self, name: str, *, ticked: bool | None = None, group: str | None = None) -> None:
        """Tick/untick a field or set its condition (what a click in the list does)."""
        r = self.field_row(name)
        if ticked is not None:
            self.fields.item(r, COL_FIELD).setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
        if group is not None:
            if group not in GROUPS:
                raise MicrosegError(f"The condition is one of {', '.join(GROUPS)}, not {group!r}.")
            self.fields.item(r, COL_GROUP).setText(group)

    def chosen_fields(self) -> list[FieldInput]:
        """The ticked fields with the Measure dock's inputs (read in the GUI thread)."""
        out = []
        for r in range(self.fields.rowCount()):
            item = self.fields.item(r, COL_FIELD)
            if item.checkState() != Qt.CheckState.Checked:
                continue
            if item.text() not in self._viewer.layers:  # renamed since the list was made
                self.refresh_fields()
                raise MicrosegError(f"No layer is named {item.text()!r} any more: the list is refreshed, "
                                    "check the ticks and press again.")
            lyr = self._viewer.layers[item.text()]
            img = image_of(self._viewer, lyr)
            out.append(FieldInput(lyr.name, gather_inputs(lyr, img), self.fields.item(r, COL_GROUP).text()))
        return out

    def _on_source(self, *_):
        layers = self.source.value == SOURCES[0]
        self.fields.setVisible(layers)
        for w in (self.folder, self.browse, self.folder_b, self.browse_b):
            w.visible = not layers
        for w in (self.edges, self.guard, self.thickness, self.phases, self.all_phases, self.grid):
            w.visible = layers
        # the settings keep their height: the results, not the buttons, give way in a short dock
        self.params.native.setMinimumHeight(self.params.native.sizeHint().height())

    def _choose_folder(self, edit):
        path = QFileDialog.getExistingDirectory(self, "Folder of per-object tables", edit.value or "")
        if path:
            edit.value = path

    # -- settings -----------------------------------------------------------------------

    def settings(self) -> MeasureSettings:
        """Measurement settings of every field (as the Measure dock's)."""
        return MeasureSettings(edges=self.edges.value, guard=self.guard.value,
                               thickness_nm=self.thickness.value or None, bins=self.bins.value)

    @property
    def confidence(self) -> float:
        """Confidence level of the intervals (0-1)."""
        return float(self.conf.value) / 100.0

    # -- work ---------------------------------------------------------------------------

    def _busy(self, busy: bool, text: str = "", total: int = 0):
        """Buttons off and the dock's progress bar set while a worker runs.

        The dock's own bar, not napari's activity progress: creating that one the first
        time stalls the event loop for most of a second.
        """
        for b in (self.build_button, self.compare_button):
            b.enabled = not busy
        self.cancel_button.enabled = busy
        if not busy and self.bar.format().endswith("(cancelling)"):
            self.bar.setFormat("cancelled")
        if busy:
            self.bar.setRange(0, max(total, 0))
            self.bar.setValue(0)
            self.bar.setFormat(text + (" %v / %m" if total else ""))

    def cancel(self, *_):
        """Stop the running study or comparison after the field being measured."""
        if self.worker is not None:
            self.worker.quit()
            self.bar.setFormat(self.bar.format() + " (cancelling)")

    def _fail(self, e):
        self.summary.setText(f"<span style='color:#e06c6c'>{escape(str(e))}</span>")
        self.tabs.setCurrentWidget(self.summary_box)
        self.bar.setFormat("failed")

    def build(self, *_):
        """Build the study in a worker; returns the worker (None when the inputs are unusable)."""
        from napari.utils.notifications import show_error

        try:
            opts = dict(conf=self.confidence, seed=self.seed.value, bins=self.bins.value)
            if self.source.value == SOURCES[0]:
                fields = self.chosen_fields()
                if not fields:
                    raise MicrosegError("Tick at least one field (a Labels layer) for the study.")
                settings = self.settings()
                settings.validate()
                job, args, total = run_study, (fields, settings), len(fields)
                opts.update(phases=self.phases.value, grid_spacing_px=self.grid.value,
                            all_phases=self.all_phases.value)
            else:
                if not self.folder.value.strip():
                    raise MicrosegError("Choose the folder of per-object tables.")
                job, args, total = run_folder_study, (self.folder.value.strip(),), 0
        except MicrosegError as e:
            show_error(str(e))
            self._fail(e)
            return None
        self._busy(True, "measuring fields" if total else "reading the folder", total)
        self.worker = start_worker(job, *args, on_returned=self.show_outcome, on_errored=self._fail,
                                   on_finished=lambda: self._busy(False), owner=self,
                                   **opts)
        if total:
            self.worker.yielded.connect(self.bar.setValue)
        return self.worker

    def compare(self, *_):
        """Compare condition A with B (fields by their condition, or the two folders) in a worker."""
        from napari.utils.notifications import show_error

        try:
            if self.source.value == SOURCES[0]:
                fields = self.chosen_fields()
                a = [f for f in fields if f.group == "A"]
                b = [f for f in fields if f.group == "B"]
                if not a or not b:
                    raise MicrosegError("Set the condition of some ticked fields to A and of others to B.")
                settings = self.settings()
                settings.validate()
            else:
                a, b, settings = self.folder.value.strip(), self.folder_b.value.strip(), None
                if not a or not b:
                    raise MicrosegError("Choose folder A and folder B to compare.")
        except MicrosegError as e:
            show_error(str(e))
            self._fail(e)
            return None
        total = len(a) + len(b) if settings is not None else 0
        self._busy(True, "comparing: measuring fields" if total else "comparing folders", total)
        self.comparison = None
        self.worker = start_worker(run_compare, a, b, settings=settings, conf=self.confidence,
                                   seed=self.seed.value, on_returned=self.show_comparison, on_errored=self._fail,
                                   on_finished=lambda: self._busy(False), owner=self)
        self.worker.yielded.connect(lambda *_: self.bar.setValue(self.bar.value() + 1))
        return self.worker

    # -- results ------------------------------------------------------------------------

    def show_outcome(self, outcome) -> None:
        """Show a :class:`~napari_microseg.gui.study_run.StudyOutcome` in the tables and plots."""
        self.outcome = outcome
        study = outcome.study
        with self.klass.changed.blocked():
            self.klass.choices = study.classes
            self.klass.value = "all"
        self.pooled.set_dataframe(study.pooled)
        self.outliers.set_dataframe(study.outliers)
        self.sizes.set_dataframe(pd.concat([study.distributions.assign(table="distribution"),
                                            study.lognormal.assign(table="log-normal fit")], ignore_index=True))
        has_phases = outcome.phases is not None
        self.phase_view.set_dataframe(pd.concat([outcome.phases_pooled.assign(field="(pooled)"), outcome.phases],
                                                ignore_index=True) if has_phases else pd.DataFrame())
        self.tabs.setTabEnabled(self.tabs.indexOf(self.phase_view), has_phases)
        self._show_class()
        self.summary.setText(summary_html(study))
        self.bar.setFormat(f"study of {len(study.fields)} field(s)")
        self.export_button.enabled = True
        self.tabs.setCurrentWidget(self.summary_box)

    def _show_class(self, *_):
        """Per-field table and plots of the chosen class (plots rendered in a worker, then cached)."""
        if self.outcome is None:
            return
        study, name = self.outcome.study, self.klass.value or "all"
        self.per_field.set_dataframe(study.per_field[study.per_field["class_name"] == name])
        images = self.outcome.images.get(name)
        if images is not None:
            self._show_images(name, images)
            return
        outcome = self.outcome
        self._plot_worker = start_worker(render_class, study, name,
                                         on_returned=lambda im: self._cache_images(outcome, name, im),
                                         owner=self)

    def _cache_images(self, outcome, name, images):
        outcome.images[name] = images
        if outcome is self.outcome and (self.klass.value or "all") == name:
            self._show_images(name, images)

    def _show_images(self, name, images):
        self.dist_plot.set_rgba(images["distribution"])
        self.field_plot.set_rgba(images["fields"])
        self.shown_class = name

    def show_comparison(self, tables: dict) -> None:
        """Show the A/B comparison: density and size differences with intervals, KS and AD tests."""
        self.comparison = tables
        self.compare_densities.set_dataframe(tables.get("densities", pd.DataFrame()))
        self.compare_sizes.set_dataframe(tables.get("sizes", pd.DataFrame()))
        self.compare_text.setText(comparison_html(tables))
        if self.outcome is not None:
            self.outcome.comparison = dict(tables)
        self.export_button.enabled = True
        self.tabs.setCurrentWidget(self.compare_box)
        self.bar.setFormat("A / B compared")

    # -- export -------------------------------------------------------------------------

    def export_tables(self) -> dict[str, pd.DataFrame]:
        """The tables an export writes (study, distribution, phases, comparison)."""
        if self.outcome is not None:
            return self.outcome.tables()
        return {f"compare_{k}": v for k, v in (self.comparison or {}).items()}

    def _on_export(self, *_):
        path = QFileDialog.getExistingDirectory(self, "Export the study: folder for CSV + XLSX files", "")
        if path:
            self.export(path)

    def export(self, folder) -> list[Path]:
        """Write every table as ``folder/NAME.csv`` (+ JSON sidecar) and all of them in ``stats.xlsx``."""
        from napari.utils.notifications import show_error, show_info

        from ...core.stats.export import export_stats, stats_provenance

        prov = self.provenance()
        unit = self.outcome.study.unit if self.outcome is not None else None
        try:
            written = export_stats(folder, self.export_tables(), stats_provenance(
                inputs=prov.pop("fields"), settings=prov, unit=unit, extra={"saved_from": "Statistics dock"}),
                xlsx=True)
        except (MicrosegError, OSError) as e:
            show_error(str(e))
            return []
        show_info(f"Wrote {len(written)} files to {folder}")
        return written

    def provenance(self) -> dict:
        """Where the numbers come from: fields, settings, confidence, seed."""
        fields = ([self.fields.item(r, COL_FIELD).text() for r in range(self.fields.rowCount())
                   if self.fields.item(r, COL_FIELD).checkState() == Qt.CheckState.Checked]
                  if self.source.value == SOURCES[0] else [self.folder.value])
        return {"source": self.source.value, "fields": fields, "measure": self.settings().to_dict(),
                "confidence": self.confidence, "bootstrap_seed": int(self.seed.value),
                "point_count_grid_px": int(self.grid.value)}


def _ci(row, key: str, fmt: str = ".4g") -> str:
    return f"{row[key]:{fmt}} [{row[key + '_ci_low']:{fmt}}, {row[key + '_ci_high']:{fmt}}]"


def comparison_html(tables: dict) -> str:
    """B versus A for all objects: density and mean-size differences, KS and AD tests."""
    d, z = tables.get("densities", pd.DataFrame()), tables.get("sizes", pd.DataFrame())
    lines = []
    if len(d) and (d["class_name"] == "all").any():
        r = d[d["class_name"] == "all"].iloc[0]
        lines.append(f"<b>Density B − A</b>: {_ci(r, 'difference')} {r['density_unit']}, "
                     f"B / A {_ci(r, 'ratio', '.3g')}: <i>{escape(r['interval'])}</i>.")
    if len(z) and (z["class_name"] == "all").any():
        r = z[z["class_name"] == "all"].iloc[0]
        lines.append(f"<b>Mean size B − A</b>: {_ci(r, 'mean_difference')}, "
                     f"<b>median</b> {_ci(r, 'median_difference')}: <i>{escape(r['interval'])}</i>.")
        lines.append(f"<b>Size distributions</b>: Kolmogorov-Smirnov D = {r['ks_statistic']:.3g}, "
                     f"p = {r['ks_pvalue']:.3g}; Anderson-Darling p = {r['ad_pvalue']:.3g} "
                     f"({'differ' if r['ks_pvalue'] < 0.05 else 'no difference shown'} at 5 %).")
    return "<br>".join(lines) or "Nothing to compare (no class present in both conditions)."


def summary_html(study) -> str:
    """A few lines on the pooled numbers of all objects, each interval named."""
    pct = f"{100 * study.settings['conf']:g} %"
    r = study.pooled[study.pooled["class_name"] == "all"].iloc[0]
    u, du = study.unit, study.density_unit
    area_u = study.settings["area_unit"]
    lines = [
        f"<b>{int(r['n_fields'])} field(s)</b>, {int(r['count'])} objects counted over "
        f"{r['analysed_area']:.4g} {area_u}; intervals at {pct}.",
        f"<b>Density</b> (pooled Σn/ΣA): {_ci(r, 'density')} {du}: <i>{escape(r['density_interval'])}</i>; "
        f"counting noise alone [{r['density_poisson_ci_low']:.4g}, {r['density_poisson_ci_high']:.4g}]"
        " (exact Poisson).",
    ]
    if int(r["n_fields"]) > 1:
        lines.append(f"Between fields: SD {r['density_between_field_sd']:.4g} {du}, CV {r['density_cv']:.2g}; "
                     f"fields differ beyond counting noise: χ² p = {r['dispersion_pvalue']:.3g}.")
    lines.append(f"<b>Mean size</b> {_ci(r, 'mean_size')} {u}: <i>{escape(str(r.get('mean_size_interval', '')))}</i>; "
                 f"<b>median</b> {_ci(r, 'median_size')} {u}: <i>{escape(str(r.get('median_size_interval', '')))}</i>.")
    lines.append(f"<b>Area fraction</b> {_ci(r, 'area_fraction', '.3g')}: "
                 f"<i>{escape(str(r['area_fraction_interval']))}</i>.")
    fit = study.lognormal[study.lognormal["class_name"] == "all"]
    if len(fit) and np.isfinite(fit["mu"].iloc[0]):
        f = fit.iloc[0]
        lines.append(f"<b>Log-normal</b>: μ {_ci(f, 'mu', '.3g')}, σ {_ci(f, 'sigma', '.3g')} (ln {u}); "
                     f"KS p = {f['ks_pvalue']:.2g}, Anderson-Darling "
                     f"{'rejects' if f['ad_rejects_5pct'] else 'does not reject'} log-normality at 5 %.")
    out = study.outliers
    lines.append(f"<b>Outlier fields</b>: {escape(', '.join(sorted(set(out['field'].astype(str)))))}"
                 if len(out) else "No outlier field" + (" (flagged from 5 fields)." if len(study.fields) < 5 else "."))
    return "<br>".join(lines)
