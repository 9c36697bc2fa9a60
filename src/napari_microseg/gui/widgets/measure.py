"""Measure dock: calibrated per-object table, statistics, overlays and export.

The widget only gathers parameters and shows results; numbers come from
:func:`napari_microseg.core.measure.measure_image`, run in a worker thread. The
module functions below do the layer work and are tested with a headless viewer.
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
from qtpy.QtWidgets import QFileDialog, QLabel, QTabWidget, QVBoxLayout, QWidget

from ...core.errors import MicrosegError
from ...core.measure import (
    EDGE_MODES,
    HardeningParameters,
    MeasureSettings,
    export_tables,
    label_color_dict,
    make_provenance,
    measure_image,
    property_colors,
)
from ...core.measure.colors import class_color_dict
from ..colormaps import direct_colormap
from ..layer_data import helper_metadata, is_helper_layer, layer_classes
from ..layer_follow import LayerFollower, layer_picker
from ..measure_inputs import gather_inputs
from ..plots import ColorLegend, StatsPlot
from ..table_view import DataFrameView
from ..workers import start_worker

if TYPE_CHECKING:
    import napari

COLORMAPS = ("viridis", "magma", "turbo", "gray")
HIGHLIGHT_LAYER = "selected object"
#: How the objects' classes are shown on the canvas.
CLASS_DISPLAY = ("off", "colour", "outline")
INSTANCE_COLOURS = "(instance colours)"


def attach_table(labels_layer, result) -> None:
    """Put the per-object table in ``layer.features`` (row per label value)."""
    feats = result.table.copy()
    feats.insert(0, "index", feats["label"].to_numpy())
    labels_layer.features = feats
    labels_layer.metadata["measurement"] = result.settings_record()


def color_labels_by(labels_layer, table: pd.DataFrame, column: str, cmap: str = "viridis") -> tuple[float, float]:
    """Colour each object of ``labels_layer`` by ``table[column]``; return (vmin, vmax)."""
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    colors = property_colors(table, column, cmap, vmin=vmin, vmax=vmax).astype(np.float32)
    # Ids not in the table (objects drawn after the measurement) get the visible
    # "unmeasured" grey of the None key, never a transparent colour.
    mapping = {(None if k is None else int(k)): np.asarray(v, dtype=np.float32)
               for k, v in label_color_dict(table, colors).items()}
    labels_layer.colormap = direct_colormap(mapping)
    return vmin, vmax


def color_labels_by_class(labels_layer) -> None:
    """Colour each object of ``labels_layer`` by its class (class table colours; grey unclassified)."""
    inst, classes = layer_classes(labels_layer)
    ids = np.unique(np.asarray(labels_layer.data))
    colors = class_color_dict(ids, inst, {c.id: c.color for c in classes})
    labels_layer.colormap = direct_colormap({k: np.asarray(v, dtype=np.float32) for k, v in colors.items()})


def show_classes(labels_layer, mode: str) -> None:
    """Show classes as ``"colour"`` (filled), ``"outline"`` (contours) or ``"off"`` (instance colours)."""
    if mode not in CLASS_DISPLAY:
        raise MicrosegError(f"show classes as: choose one of {', '.join(CLASS_DISPLAY)}, not {mode!r}.")
    if mode == "off":
        reset_colors(labels_layer)
    else:
        color_labels_by_class(labels_layer)
    labels_layer.contour = 1 if mode == "outline" else 0


def reset_colors(labels_layer) -> None:
    """Back to napari's random instance colours."""
    from napari.utils.colormaps import label_colormap

    labels_layer.colormap = label_colormap()


def values_layer_name(labels_layer) -> str:
    """Name of the Points layer that writes values on the canvas."""
    return f"{labels_layer.name} values"


def show_values(viewer, labels_layer, table: pd.DataFrame, column: str, fmt: str = "{:.1f}"):
    """Write ``table[column]`` at each object's centroid (a text-only Points layer)."""
    name = values_layer_name(labels_layer)
    if name in viewer.layers:
        viewer.layers.remove(name)
    pts = table[["centroid_y_px", "centroid_x_px"]].to_numpy(dtype=float)
    text = [fmt.format(v) if np.isfinite(v) else "" for v in pd.to_numeric(table[column], errors="coerce")]
    return viewer.add_points(
        pts, name=name, size=0, scale=labels_layer.scale, translate=labels_layer.translate,
        units=labels_layer.units,
        features=pd.DataFrame({"value": text}), metadata=helper_metadata(labels_layer.name, "values"),
        text={"string": "{value}", "color": "yellow", "size": 8, "anchor": "center"},
        face_color="transparent", border_width=0,
    )


def viewer_camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def focus_object(viewer, labels_layer, row: pd.Series):
    """Centre the view on one object and ring it in a highlight layer."""
    yx = np.array([row["centroid_y_px"], row["centroid_x_px"]], dtype=float)
    diam_col = next(c for c in row.index if c.startswith("equivalent_diameter_"))
    scale = np.asarray(labels_layer.scale[-2:], dtype=float)
    diam_px = float(row[diam_col]) / (scale[1] if diam_col.endswith("_nm") else 1.0)
    world = np.asarray(labels_layer.data_to_world(yx))
    viewer_camera(viewer).center = tuple(world)
    if HIGHLIGHT_LAYER in viewer.layers:
        viewer.layers.remove(HIGHLIGHT_LAYER)
    layer = viewer.add_points(
        [yx], name=HIGHLIGHT_LAYER, size=max(diam_px * 1.6, 6), face_color="transparent",
        border_color="yellow", border_width=0.12, scale=labels_layer.scale, translate=labels_layer.translate,
        units=labels_layer.units, metadata=helper_metadata(labels_layer.name, "highlight"),
    )
    viewer.layers.selection.active = labels_layer
    labels_layer.selected_label = int(row["label"])
    return layer


def export_result(path, result, *, labels_layer=None, image_path=None) -> list[Path]:
    """Write the result's tables (CSV/XLSX/JSON by suffix) with a provenance header."""
    prov_md = (labels_layer.metadata.get("provenance") or {}) if labels_layer is not None else {}
    prov = make_provenance(
        image_path=image_path if image_path and Path(image_path).exists() else None,
        pixel_size=result.pixel_size,
        model=prov_md.get("model"),
        prompts=prov_md.get("prompts"),
        settings=result.settings_record(),
        extra={"labels_layer": labels_layer.name if labels_layer is not None else None,
               "labels_provenance": prov_md or None},
    )
    return export_tables(path, result.tables(), prov)


def parse_alpha(text: str) -> dict[str, float]:
    """``"<111> loop=0.11; black dot=0.1"`` -> ``{"<111> loop": 0.11, "black dot": 0.1}``."""
    out = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, _, value = part.rpartition("=")
        if not name.strip():
            raise MicrosegError(f"α entry {part.strip()!r} should read 'class name=value'.")
        try:
            out[name.strip()] = float(value)
        except ValueError as e:
            raise MicrosegError(f"α for {name.strip()!r} is not a number: {value!r}.") from e
    return out


def format_alpha(alpha: dict[str, float]) -> str:
    """Inverse of :func:`parse_alpha`."""
    return "; ".join(f"{k}={v:g}" for k, v in alpha.items())


class MeasureWidget(QWidget):
    """Dock widget: measure a Labels layer in nm and show, colour and export the results."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.result = None
        self._inputs = None
        self._worker = None
        hp = HardeningParameters()
        self.labels = layer_picker(viewer, "Labels", "labels", nullable=True)  # "-----" rather than the truth
        self.image = layer_picker(viewer, "Image", "image", nullable=True)
        self.edges = ComboBox(label="edge objects", choices=list(EDGE_MODES), value="include")
        self.guard = FloatSpinBox(label="guard frame (nm)", min=0.0, max=1e6, value=0.0)
        self.thickness = FloatSpinBox(label="foil thickness (nm, 0 = none)", min=0.0, max=1e6, value=0.0)
        self.bins = SpinBox(label="histogram bins", min=2, max=500, value=20)
        self.lognormal = CheckBox(text="fit log-normal", value=False)
        self.taylor = FloatSpinBox(label="M (Taylor)", min=0.1, max=10, step=0.01, value=hp.taylor_factor)
        self.mu = FloatSpinBox(label="μ (GPa)", min=1, max=1000, value=hp.shear_modulus_gpa)
        self.burgers = FloatSpinBox(label="b (nm)", min=0.01, max=10, step=0.001, value=hp.burgers_vector_nm)
        self.alpha = LineEdit(label="α per class", value=format_alpha(hp.alpha))
        self.measure_button = PushButton(text="Measure")
        self.export_button = PushButton(text="Export table…", enabled=False)
        self.recipe_button = PushButton(text="Save batch recipe…")
        self.study_button = PushButton(text="Statistics of many fields…")
        self.color_by = ComboBox(label="colour by", choices=[INSTANCE_COLOURS])
        self.classes_as = ComboBox(label="show classes as", choices=list(CLASS_DISPLAY), value="off")
        self.cmap = ComboBox(label="colormap", choices=list(COLORMAPS), value="viridis")
        self.show_text = CheckBox(text="write values on the canvas", value=False)
        # The buttons sit above the hardening fields, which appear only with a foil
        # thickness: showing them must not move the Measure button away.
        self.params = Container(widgets=[
            self.labels, self.image, self.edges, self.guard, self.bins, self.lognormal, self.thickness,
            self.measure_button, self.export_button, self.recipe_button, self.study_button,
            self.taylor, self.mu, self.burgers, self.alpha,
            self.classes_as, self.color_by, self.cmap, self.show_text,
        ])
        self.summary = QLabel("Choose a Labels layer and press Measure.")
        self.summary.setWordWrap(True)
        self.legend = ColorLegend(self)
        self.legend.hide()
        self.plot = StatsPlot(self)
        self.table = DataFrameView(self)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.table, "Objects")
        self.tabs.addTab(self.plot, "Plots")
        self.tabs.setMinimumHeight(240)
        layout = QVBoxLayout(self)
        for w in (self.params.native, self.summary, self.legend, self.tabs):
            layout.addWidget(w)
        self.thickness.changed.connect(self._show_hardening_fields)
        self._show_hardening_fields()
        self.measure_button.changed.connect(self.run)
        self.export_button.changed.connect(self._on_export)
        self.recipe_button.changed.connect(self._on_save_recipe)
        self.study_button.changed.connect(self._on_study)
        self.color_by.changed.connect(self._on_color)
        self.classes_as.changed.connect(self._on_color)
        self.cmap.changed.connect(self._on_color)
        self.show_text.changed.connect(self._on_color)
        self.table.row_clicked.connect(self._on_row)
        self._coloured = None  # the Labels layer whose features events recolour it
        self._result_layer = None  # the Labels layer self.result measured
        self.labels.changed.connect(self._on_labels_changed)
        self._follow = LayerFollower(viewer, image=self.image, labels=self.labels)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self._remove_helpers_of)
        self._on_labels_changed()

    def _show_hardening_fields(self, *_):
        """Hardening constants matter only with a foil thickness."""
        for w in (self.taylor, self.mu, self.burgers, self.alpha):
            w.visible = self.thickness.value > 0

    def reset_choices(self, *_):
        """Refresh the layer pickers (they follow the active layer unless the user chose one)."""
        self._follow.reset_choices()

    def _on_labels_changed(self, *_):
        """Classes shown on the canvas follow class changes (Correct, Label docks) of the target."""
        old, new = self._coloured, self.labels.value
        if old is new:
            return
        if old is not None:
            old.events.features.disconnect(self._on_features)
        if new is not None:
            new.events.features.connect(self._on_features)
        self._coloured = new

    def _on_features(self, *_):
        if self.classes_as.value != "off" and self.color_by.value == INSTANCE_COLOURS:
            self._on_color()

    def _remove_helpers_of(self, event):
        """Remove the values layer of a removed Labels layer (helpers never outlive their layer)."""
        layer = getattr(event, "value", None)
        if layer is None or is_helper_layer(layer):
            return
        name = values_layer_name(layer)
        if name in self._viewer.layers:
            self._viewer.layers.remove(name)
        if HIGHLIGHT_LAYER in self._viewer.layers and \
                self._viewer.layers[HIGHLIGHT_LAYER].metadata.get("source_image") == layer.name:
            self._viewer.layers.remove(HIGHLIGHT_LAYER)

    def settings(self) -> MeasureSettings:
        """The settings gathered from the widgets."""
        return MeasureSettings(
            edges=self.edges.value,
            guard=self.guard.value,
            thickness_nm=self.thickness.value or None,
            bins=self.bins.value,
            lognormal=self.lognormal.value,
            hardening=HardeningParameters(
                taylor_factor=self.taylor.value, shear_modulus_gpa=self.mu.value,
                burgers_vector_nm=self.burgers.value, alpha=parse_alpha(self.alpha.value),
            ),
        )

    def run(self, *_):
        """Measure in a worker; results are shown when it returns."""
        from napari.utils.notifications import show_error

        try:
            inputs = gather_inputs(self.labels.value, self.image.value)
            settings = self.settings()
        except MicrosegError as e:
            show_error(str(e))
            return None
        self._inputs = inputs
        kwargs = {k: v for k, v in inputs.items() if k != "image_path"}
        self.measure_button.enabled = False
        self._worker = start_worker(
            measure_image, settings=settings, **kwargs,
            on_returned=self.show_result, on_finished=lambda: setattr(self.measure_button, "enabled", True),
        )
        return self._worker

    def show_result(self, result) -> None:
        """Attach ``result`` to the layer and show table, summary and plots."""
        self.result = result
        layer = self._result_layer = self.labels.value
        if layer is not None:
            attach_table(layer, result)
        self.table.set_dataframe(result.table)
        self.summary.setText(summary_text(result))
        colors = {c.name: c.color for c in self._inputs["classes"]} if self._inputs else {}
        self.plot.show_result(result, colors)
        self.tabs.setCurrentWidget(self.plot)
        numeric = [c for c in result.table.columns if pd.api.types.is_numeric_dtype(result.table[c])
                   and c not in ("label", "class_id")]
        with self.color_by.changed.blocked():
            self.color_by.choices = [INSTANCE_COLOURS, *numeric]
        self.export_button.enabled = True
        self._on_color()
        if layer is not None:
            # Redraw once the dock's new content (legend, plots) has been laid out: the
            # canvas must not wait for another layer's change to show the objects again.
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, layer.refresh)

    def _on_color(self, *_):
        """Colour the target: by a measured property, else by class, else instance colours."""
        layer, result = self.labels.value, self.result
        if layer is None:
            return
        measured = result is not None and self._result_layer is layer  # a result colours its own layer only
        column = self.color_by.value if measured else INSTANCE_COLOURS
        name = values_layer_name(layer)
        if column == INSTANCE_COLOURS:
            show_classes(layer, self.classes_as.value)
            self.legend.hide()
            if name in self._viewer.layers:
                self._viewer.layers.remove(name)
            return
        layer.contour = 1 if self.classes_as.value == "outline" else 0
        vmin, vmax = color_labels_by(layer, result.table, column, self.cmap.value)
        self.legend.show_scale(column, vmin, vmax, self.cmap.value)
        self.legend.show()
        if self.show_text.value:
            show_values(self._viewer, layer, result.table, column)
        elif name in self._viewer.layers:
            self._viewer.layers.remove(name)

    def _on_row(self, row):
        if self.labels.value is not None:
            focus_object(self._viewer, self.labels.value, row)

    def recipe(self):
        """A batch recipe: the labels' model and post-processing (from the Predict dock) + these settings."""
        from ...core.batch import Recipe

        layer = self.labels.value
        if layer is None:
            raise MicrosegError("Choose the Labels layer a model predicted.")
        return Recipe.from_provenance(layer.metadata.get("provenance") or {}, measure=self.settings(),
                                      provenance={"saved_from": "Measure dock"})

    def _on_save_recipe(self, *_):
        from .batch import save_recipe_dialog

        save_recipe_dialog(self, self.recipe)

    def _on_study(self, *_):
        from .study import open_statistics_dock

        open_statistics_dock(self._viewer)

    def _on_export(self, *_):
        if self.result is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export measurements", "measurements.xlsx",
                                              "Excel (*.xlsx);;CSV (*.csv);;JSON (*.json)")
        if path:
            self.export(path)

    def export(self, path) -> list[Path]:
        """Write the current result to ``path`` and say where."""
        from napari.utils.notifications import show_info

        written = export_result(path, self.result, labels_layer=self.labels.value,
                                image_path=(self._inputs or {}).get("image_path"))
        show_info("Wrote " + ", ".join(str(p) for p in written))
        return written


def summary_text(result) -> str:
    """A few lines: counts, densities, mean size, hardening."""
    u = result.pixel_size.unit
    s = result.summary
    all_row = s[s["class_id"] == -1].iloc[0]
    dens = ("density_per_um2", "/µm²") if u == "nm" else ("density_per_px2", "/px² (UNCALIBRATED)")
    lines = [
        f"<b>{int(all_row['count'])} objects</b> counted ({result.counting.edges} edges), "
        f"{all_row[dens[0]]:.4g} {dens[1]}, area fraction {all_row['area_fraction']:.3g}"
    ]
    for _, r in s[(s["class_id"] >= 0) & (s["count"] > 0)].iterrows():
        d = r[f"mean_equivalent_diameter_{u}"]
        lines.append(f"{escape(str(r['class_name']))}: n={int(r['count'])}, {r[dens[0]]:.4g} {dens[1]}, "
                     f"mean diameter {d:.3g} {u}")
    if result.hardening is not None:
        lines.append(f"Barrier hardening: {result.hardening.total_linear_mpa:.4g} MPa (linear), "
                     f"{result.hardening.total_rss_mpa:.4g} MPa (root-sum-square)")
    return "<br>".join(lines)
