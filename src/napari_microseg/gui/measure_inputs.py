"""What the Measure and Statistics docks measure: arrays and calibration from napari layers.

Shared by both docks (:mod:`.widgets.measure`, :mod:`.widgets.study`) so that
neither imports the other for it.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import MicrosegError
from .layer_data import layer_classes, layer_pixel_size


def gather_inputs(labels_layer, image_layer=None) -> dict:
    """Arrays and calibration for :func:`measure_image` from napari layers.

    The pixel size comes from the labels layer's metadata, else the image's;
    the analysis mask (SEM bar, NaNs) from the image's metadata.
    """
    if labels_layer is None:
        raise MicrosegError("Choose a Labels layer to measure.")
    labels = np.asarray(labels_layer.data)
    if labels.ndim != 2:
        raise MicrosegError(f"{labels_layer.name} is {labels.ndim}-D; measure one 2-D labels image.")
    ps = layer_pixel_size(labels_layer)
    intensity, mask, image_path = None, None, None
    if image_layer is not None:
        img = np.asarray(image_layer.data)
        if img.shape[:2] != labels.shape:
            raise MicrosegError(
                f"{image_layer.name} is {img.shape[1]} x {img.shape[0]} px but "
                f"{labels_layer.name} is {labels.shape[1]} x {labels.shape[0]} px."
            )
        intensity = img if img.ndim == 2 else None
        mask = image_layer.metadata.get("analysis_mask")
        image_path = image_layer.metadata.get("source_path")
        if not ps.calibrated:
            ps = layer_pixel_size(image_layer)
    inst, classes = layer_classes(labels_layer)
    return dict(labels=labels, pixel_size=ps, intensity=intensity, instance_classes=inst,
                classes=classes, analysis_mask=mask, image_path=image_path)
