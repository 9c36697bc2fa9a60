"""Keep a Labels layer in the unit of the image it lies on, so napari can fit them together.

napari drops all units when a layer in pixels (``"pixel"``, napari's default)
sits beside a layer in nanometres: it warns "Inconsistent units across layers",
draws every layer by its bare scale and the Home view fits the px layer, with
the calibrated micrograph shrunk into a corner. A Labels layer in pixels (a mask
file, napari's own new layer) with the size of the one calibrated image of that
size is that image's mask: it takes the image's calibration. Images are never
recalibrated here (two micrographs of one size may differ in magnification);
an uncalibrated image beside calibrated ones is named in a message that says how
to calibrate it.
"""

from __future__ import annotations

import numpy as np

from .layer_data import is_helper_layer, layer_pixel_size, set_layer_pixel_size


def _yx(layer) -> tuple:
    shape = getattr(getattr(layer, "data", None), "shape", ())
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    return tuple(shape[-2:])


def is_pixel_layer(layer) -> bool:
    """Whether ``layer`` is drawn in pixels (no calibration and pixel units)."""
    units = [str(u) for u in getattr(layer, "units", ())[-2:]]
    return bool(units) and all(u == "pixel" for u in units) and not layer_pixel_size(layer).calibrated


def _in_its_calibration(layer) -> bool:
    """Whether ``layer`` is calibrated and drawn at its calibrated scale."""
    ps = layer_pixel_size(layer)
    return ps.calibrated and bool(np.allclose(np.asarray(layer.scale[-2:], float), ps.scale))


def harmonize_units(layers, new_layer) -> list:
    """Give pixel Labels layers the calibration of their image; return the changed layers.

    Parameters
    ----------
    layers : napari LayerList
        The viewer's layers (``new_layer`` among them).
    new_layer : napari layer
        The layer just added: a pixel Labels layer takes the calibration of the
        calibrated image of its size; a calibrated image passes its calibration
        to the pixel Labels layers of its size. Nothing changes when images of
        that size disagree on the pixel size.
    """
    from napari.layers import Image, Labels

    def image_source(size):
        found = {tuple(layer_pixel_size(lyr).scale): lyr for lyr in layers
                 if isinstance(lyr, Image) and _yx(lyr) == size and _in_its_calibration(lyr)}
        return next(iter(found.values())) if len(found) == 1 else None

    changed = []
    if isinstance(new_layer, Labels) and is_pixel_layer(new_layer):
        targets = [new_layer]
    elif isinstance(new_layer, Image) and _in_its_calibration(new_layer):
        targets = [lyr for lyr in layers if isinstance(lyr, Labels) and is_pixel_layer(lyr)
                   and _yx(lyr) == _yx(new_layer)]
    else:
        return changed
    for lyr in targets:
        src = image_source(_yx(lyr))
        if src is not None:
            set_layer_pixel_size(lyr, layer_pixel_size(src))
            changed.append(lyr)
    return changed


def uncalibrated_beside_calibrated(layers) -> list:
    """Names of the pixel images shown beside calibrated layers (napari then ignores all units)."""
    from napari.layers import Image

    if not any(_in_its_calibration(lyr) for lyr in layers):
        return []
    return [lyr.name for lyr in layers if isinstance(lyr, Image) and is_pixel_layer(lyr)
            and not is_helper_layer(lyr)]


def _on_inserted(event) -> None:
    from napari.utils.notifications import show_info

    layers, layer = event.source, event.value
    changed = harmonize_units(layers, layer)
    if changed:
        ps = layer_pixel_size(changed[0])
        show_info(f"{', '.join(lyr.name for lyr in changed)}: in pixels on a calibrated image of its size, "
                  f"now in nm ({ps.describe()}).")
    mixed = uncalibrated_beside_calibrated(layers)
    if mixed and (layer.name in mixed or _in_its_calibration(layer)):
        show_info(f"{', '.join(mixed)} has no pixel size (px) beside layers in nm, so napari ignores units: "
                  "set its pixel size in the Calibration dock.")


def keep_units_consistent(viewer) -> None:
    """Harmonise units whenever a layer is added to ``viewer`` (connecting twice is harmless)."""
    viewer.layers.events.inserted.connect(_on_inserted)
