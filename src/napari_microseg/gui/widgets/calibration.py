"""Calibration dock: see and set a micrograph's pixel size and excluded areas.

Shows where the pixel size came from (instrument metadata, ImageJ, sidecar,
user), the instrument fields, and whether an SEM information bar is excluded.
A pixel size set here belongs to one image and the labels made on it; other
layers get it only when the user ticks them in "also apply to".
An uncalibrated image is flagged in red: its sizes are in px. The logic lives
in module functions so it can be tested with a headless ``ViewerModel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, PushButton, Select

from ...core.calibration import PIXEL_SIZE_UNITS, PixelSize, format_nm, parse_pixel_size
from ...core.errors import MicrosegError
from ...core.infobar import detect_info_bar
from ..layer_data import (
    labels_of_image,
    layer_choices,
    layer_pixel_size,
    set_layer_pixel_size,
    user_layers,
)

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


def calibration_scope(viewer, layer) -> list:
    """The layers a pixel size set on ``layer`` belongs to: the image and its own labels.

    Its own labels are the Labels layers whose metadata records ``layer`` as the
    image they were made on (see :func:`~napari_microseg.gui.layer_data.labels_of_image`).
    Other layers of the same shape are *not* included: two same-size camera images
    can have different magnifications.
    """
    return [layer, *[lab for lab in labels_of_image(viewer, layer, ground_truth=True) if lab is not layer]]


def other_candidates(viewer, layer) -> list:
    """Layers the user may also apply ``layer``'s pixel size to: same 2-D shape, not in its scope."""
    from napari.layers import Image, Labels

    if layer is None:
        return []
    scope = calibration_scope(viewer, layer)
    shape2d = tuple(layer.data.shape[:2])
    return [
        other for other in user_layers(viewer, (Image, Labels))
        if all(other is not s for s in scope) and tuple(other.data.shape[:2]) == shape2d
    ]


def override_pixel_size(viewer, layer, nm: float, also=(), detail: str = "set in the Calibration dock") -> list:
    """Set ``nm`` nm/px on ``layer``, on the labels made on it, and on the layers in ``also``.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    layer : napari.layers.Image
        The image whose pixel size is set.
    nm : float
        Nanometres per pixel, used as given (no rounding).
    also : sequence of Layer
        Further layers the user explicitly chose to calibrate the same way.
    detail : str
        Provenance detail stored with the pixel size (e.g. the text as typed).

    Returns
    -------
    list
        The layers changed. The previous calibration of each stays listed in its
        ``calibration_sources`` metadata for provenance.
    """
    ps = PixelSize.isotropic(nm, "user", detail)
    changed = []
    for other in [*calibration_scope(viewer, layer), *also]:
        if any(other is c for c in changed):
            continue
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
    """Dock widget: pixel size, its source, instrument fields, info-bar exclusion.

    The pixel size is typed as text (every digit kept) with a unit menu; what was
    parsed is shown as ``= 0.390625 nm/px`` before it is applied. It applies to the
    chosen image and the labels made on it, plus only the layers ticked in
    "also apply to".
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        from napari.layers import Image

        super().__init__(labels=False)
        self._viewer = viewer
        self.image = ComboBox(label="image", choices=layer_choices(viewer, Image))
        self.info = Label(value="")
        self.info.native.setWordWrap(True)
        self.pixel_size = LineEdit(label="pixel size (per px)", value="")
        self.unit = ComboBox(label="unit", choices=list(PIXEL_SIZE_UNITS), value="nm")
        self.parsed = Label(value="")
        self.scope = Label(value="")
        self.scope.native.setWordWrap(True)
        self.also = Select(label="also apply to", choices=lambda _w=None: [
            (lyr.name, lyr) for lyr in other_candidates(viewer, self.image.value)])
        self.set_button = PushButton(text="Set pixel size")
        self.bar_box = CheckBox(text="Exclude SEM info bar from analysis")
        self.extend([
            Container(widgets=[self.image], labels=True),
            self.info,
            Container(widgets=[self.pixel_size, self.unit], labels=True),
            self.parsed,
            self.scope,
            Container(widgets=[self.also], labels=True),
            self.set_button,
            self.bar_box,
        ])
        self.image.changed.connect(self._refresh)
        self.pixel_size.changed.connect(self._show_parsed)
        self.unit.changed.connect(self._show_parsed)
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
            with self.unit.changed.blocked():
                self.unit.value = "nm"
            self.pixel_size.value = format_nm(ps.x_nm)
        self.also.reset_choices()
        self.also.value = []
        names = [lyr.name for lyr in calibration_scope(self._viewer, layer)] if layer is not None else []
        self.scope.value = f"Applies to: {', '.join(names)}" if names else ""
        self._show_parsed()
        with self.bar_box.changed.blocked():
            self.bar_box.value = bool(layer is not None and layer.metadata.get("info_bar"))

    def parse(self) -> float:
        """The typed pixel size in nm/px (raises CalibrationError when it is not understood)."""
        return parse_pixel_size(self.pixel_size.value, self.unit.value)

    def _show_parsed(self, *_):
        if not str(self.pixel_size.value).strip():
            self.parsed.value = ""
            return
        try:
            self.parsed.value = f"= {format_nm(self.parse())} nm/px"
        except MicrosegError as e:
            self.parsed.value = str(e)

    def _on_set(self, *_):
        from napari.utils.notifications import show_info, show_warning

        layer = self.image.value
        if layer is None:
            show_warning("Select an image layer first.")
            return
        try:
            nm = self.parse()
        except MicrosegError as e:
            show_warning(str(e))
            return
        text = f"{str(self.pixel_size.value).strip()} (unit menu: {self.unit.value})"
        changed = override_pixel_size(self._viewer, layer, nm, also=list(self.also.value),
                                      detail=f"set in the Calibration dock as {text}")
        show_info(f"Pixel size {format_nm(nm)} nm/px set on {', '.join(lyr.name for lyr in changed)}.")
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
