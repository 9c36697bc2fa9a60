"""Calibration dock: see and set a micrograph's pixel size and excluded areas.

Shows where the pixel size came from (instrument metadata, ImageJ, sidecar,
user), the instrument fields, and whether an SEM information bar is excluded.
An uncalibrated image is flagged in red: its sizes are in px. The logic lives
in module functions so it can be tested with a headless ``ViewerModel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, Container, FloatSpinBox, Label, PushButton, create_widget

from ...core.calibration import PixelSize
from ...core.infobar import detect_info_bar
from ..layer_data import layer_pixel_size, set_layer_pixel_size

if TYPE_CHECKING:
    import napari

EXCLUDED_LAYER_SUFFIX = " excluded area"


def describe_layer(layer) -> str:
    """Several lines describing a layer's calibration and instrument."""
    if layer is None:
        return "No image layer selected."
    ps = layer_pixel_size(layer)
    md = layer.metadata
    lines = [f"Pixel size: {ps.describe()}" if ps.calibrated else "UNCALIBRATED: sizes are in px"]
    if not ps.calibrated and ps.detail:
        lines.append(f"  ({ps.detail})")
    for key, label, fmt in (
        ("instrument", "Instrument", "{}"),
        ("signal", "Signal", "{}"),
        ("accelerating_voltage_kv", "Voltage", "{:g} kV"),
        ("magnification", "Magnification", "{}"),
        ("detector", "Detector", "{}"),
        ("format", "Format", "{}"),
    ):
        if md.get(key) not in (None, ""):
            lines.append(f"{label}: {fmt.format(md[key])}")
    bar = md.get("info_bar")
    if bar:
        lines.append(f"Info bar excluded from row {bar['start_row']} ({bar['source']})")
    mask = md.get("analysis_mask")
    if mask is not None:
        lines.append(f"Analysed area: {100.0 * np.count_nonzero(mask) / mask.size:.1f} % of the image")
    for w in md.get("warnings", []):
        lines.append(f"Warning: {w}")
    return "\n".join(lines)


def override_pixel_size(viewer, layer, nm: float) -> list:
    """Set ``nm`` nm/px on ``layer`` and on every Labels layer of its shape.

    Returns the layers changed. The previous calibration stays listed in the
    layer's ``calibration_sources`` metadata for provenance.
    """
    ps = PixelSize.isotropic(nm, "user", "set in the Calibration dock")
    changed = []
    from napari.layers import Labels

    shape2d = tuple(layer.data.shape[:2])
    for other in viewer.layers:
        same = other is layer or (isinstance(other, Labels) and tuple(other.data.shape[-2:]) == shape2d)
        if same:
            old = other.metadata.get("pixel_size")
            if old:
                other.metadata.setdefault("calibration_sources", []).append(old)
            set_layer_pixel_size(other, ps)
            changed.append(other)
    return changed


def exclude_info_bar(viewer, layer, exclude: bool = True):
    """Detect (or clear) the SEM information bar of ``layer``.

    Returns the detected :class:`InfoBar` or ``None``. The raw data is never
    changed: the bar goes into ``metadata["analysis_mask"]`` and is drawn as a
    translucent rectangle in a Shapes layer.
    """
    name = layer.name + EXCLUDED_LAYER_SUFFIX
    if name in viewer.layers:
        viewer.layers.remove(name)
    if not exclude:
        layer.metadata.pop("info_bar", None)
        layer.metadata.pop("analysis_mask", None)
        return None
    data = np.asarray(layer.data)
    bar = detect_info_bar(data, scan_rows=layer.metadata.get("scan_rows"))
    if bar is None:
        return None
    layer.metadata["info_bar"] = bar.to_dict()
    layer.metadata["analysis_mask"] = bar.mask(data.shape[:2])
    ny, nx = data.shape[:2]
    rect = np.array([[bar.start_row - 0.5, -0.5], [bar.start_row - 0.5, nx - 0.5], [ny - 0.5, nx - 0.5], [ny - 0.5, -0.5]])
    viewer.add_shapes(
        [rect], shape_type="rectangle", name=name, face_color="#ff000055", edge_color="red",
        scale=layer.scale[-2:], opacity=0.6,
    )
    return bar


class CalibrationWidget(Container):
    """Dock widget: pixel size, its source, instrument fields, info-bar exclusion."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.info = Label(value="")
        self.info.native.setWordWrap(True)
        self.pixel_size = FloatSpinBox(label="pixel size (nm/px)", min=0.0, max=1e6, step=0.01, value=1.0)
        self.set_button = PushButton(text="Set pixel size")
        self.bar_box = CheckBox(text="Exclude SEM info bar from analysis")
        self.extend([
            Container(widgets=[self.image], labels=True),
            self.info,
            Container(widgets=[self.pixel_size], labels=True),
            self.set_button,
            self.bar_box,
        ])
        self.image.changed.connect(self._refresh)
        self.set_button.changed.connect(self._on_set)
        self.bar_box.changed.connect(self._on_bar)
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        self._refresh()

    def _on_layers_changed(self, event=None):
        self.image.reset_choices()
        self._refresh()

    def _refresh(self, *_):
        layer = self.image.value
        self.info.value = describe_layer(layer)
        ps = layer_pixel_size(layer) if layer is not None else None
        color = "red" if ps is not None and not ps.calibrated else ""
        self.info.native.setStyleSheet(f"color: {color};" if color else "")
        if ps is not None and ps.calibrated:
            self.pixel_size.value = ps.x_nm
        with self.bar_box.changed.blocked():
            self.bar_box.value = bool(layer is not None and layer.metadata.get("info_bar"))

    def _on_set(self, *_):
        from napari.utils.notifications import show_info, show_warning

        layer = self.image.value
        if layer is None:
            show_warning("Select an image layer first.")
            return
        if self.pixel_size.value <= 0:
            show_warning("The pixel size must be positive.")
            return
        changed = override_pixel_size(self._viewer, layer, self.pixel_size.value)
        show_info(f"Pixel size {self.pixel_size.value:g} nm/px set on {', '.join(lyr.name for lyr in changed)}.")
        self._refresh()

    def _on_bar(self, value: bool):
        from napari.utils.notifications import show_info

        layer = self.image.value
        if layer is None:
            return
        bar = exclude_info_bar(self._viewer, layer, exclude=value)
        if value and bar is None:
            show_info(f"No information bar found at the bottom of {layer.name}.")
        self._refresh()
