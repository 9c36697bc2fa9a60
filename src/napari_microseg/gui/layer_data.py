"""Convert core records (micrographs, labels, samples) into napari layer data.

Functions return napari ``LayerDataTuple`` objects ``(data, kwargs, type)`` so
that readers, sample data and widgets build layers the same way, and read the
calibration back from a layer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.calibration import PixelSize
from ..core.classes import ClassTable
from ..core.micrograph import Micrograph


def robust_contrast_limits(data, lower: float = 0.5, upper: float = 99.5) -> tuple[float, float]:
    """Percentile contrast limits ignoring NaNs, computed on a subsample."""
    arr = np.asarray(data[:: max(1, data.shape[0] // 1024), :: max(1, data.shape[1] // 1024)])
    if arr.ndim == 3:
        arr = arr[..., :3]
    arr = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr.ravel()
    if arr.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(arr, [lower, upper])
    if hi <= lo:
        lo, hi = float(arr.min()), float(arr.max())
        if hi <= lo:
            hi = lo + 1.0
    return float(lo), float(hi)


def micrograph_layer(mg: Micrograph, name: str | None = None) -> tuple:
    """Image ``LayerDataTuple`` with the scale in nm and metadata attached."""
    kwargs = {
        "name": name or (Path(mg.path).stem if mg.path else "micrograph"),
        "scale": mg.pixel_size.scale,
        "units": (mg.pixel_size.unit if mg.pixel_size.calibrated else "pixel",) * 2,
        "metadata": mg.layer_metadata(),
        "rgb": mg.is_rgb,
    }
    if not mg.is_rgb:
        kwargs["contrast_limits"] = robust_contrast_limits(mg.data)
        kwargs["colormap"] = "gray"
    return (mg.data, kwargs, "image")


def class_features(labels: np.ndarray, instance_classes: dict, classes: ClassTable) -> pd.DataFrame:
    """A napari ``features`` table: one row per instance id with its class.

    Row ``i`` describes label value ``index[i]``; background (0) is included
    with class 0 so that napari's lookup by label value is complete.
    """
    from ..core.correct import id_areas  # not at import: it loads skimage.segmentation

    ids = id_areas(np.asarray(labels))[0]  # a count pass, not a sort: 2048² in about 10 ms
    names = classes.names()
    index = np.concatenate([[0], ids]).astype(np.int64)
    class_id = np.array([0] + [int(instance_classes.get(int(i), 0)) for i in ids], dtype=np.int64)
    class_name = ["background"] + [names.get(int(c), "unclassified") for c in class_id[1:]]
    return pd.DataFrame({"index": index, "class_id": class_id, "class_name": class_name})


def labels_layer(
    labels: np.ndarray,
    *,
    instance_classes: dict | None = None,
    classes: ClassTable | None = None,
    pixel_size: PixelSize | None = None,
    name: str = "labels",
    metadata: dict | None = None,
) -> tuple:
    """Labels ``LayerDataTuple`` with classes as features and the class table in metadata."""
    classes = classes or ClassTable()
    pixel_size = pixel_size or PixelSize.uncalibrated()
    md = dict(metadata or {})
    md.update(
        {
            "classes": classes.to_list(),
            "pixel_size": pixel_size.to_dict(),
            "unit": pixel_size.unit,
        }
    )
    kwargs = {
        "name": name,
        "scale": pixel_size.scale,
        "units": (pixel_size.unit if pixel_size.calibrated else "pixel",) * 2,
        "features": class_features(labels, instance_classes or {}, classes),
        "metadata": md,
    }
    return (labels, kwargs, "labels")


def layer_pixel_size(layer) -> PixelSize:
    """The calibration of a layer: its metadata record, else uncalibrated.

    The layer's ``scale`` alone is not trusted: a scale of (1, 1) is
    indistinguishable from an uncalibrated image.
    """
    d = layer.metadata.get("pixel_size")
    return PixelSize.from_dict(d) if d else PixelSize.uncalibrated("layer carries no calibration")


def set_layer_pixel_size(layer, pixel_size: PixelSize) -> None:
    """Write ``pixel_size`` into a layer's metadata, scale and units."""
    layer.metadata["pixel_size"] = pixel_size.to_dict()
    layer.metadata["unit"] = pixel_size.unit
    ndim = layer.ndim
    layer.scale = (1.0,) * (ndim - 2) + tuple(pixel_size.scale)
    layer.units = ("pixel",) * (ndim - 2) + ((pixel_size.unit if pixel_size.calibrated else "pixel"),) * 2


def layer_class_table(layer) -> ClassTable:
    """The class table of a Labels layer (its metadata; the default table when it has none)."""
    return ClassTable.from_list(layer.metadata["classes"]) if layer.metadata.get("classes") else ClassTable()


def layer_classes(layer) -> tuple[dict, ClassTable]:
    """``({instance_id: class_id}, ClassTable)`` from a Labels layer."""
    classes = layer_class_table(layer)
    feats = layer.features
    inst = {}
    if len(feats) and {"index", "class_id"} <= set(feats.columns):
        for i, c in zip(feats["index"], feats["class_id"], strict=False):
            if int(i) > 0 and int(c) > 0:
                inst[int(i)] = int(c)
    return inst, classes


#: Metadata key marking a layer the plugin made as a tool (prompts, previews, ...), never data.
HELPER_KEY = "microseg_helper"
#: Metadata key naming the image a Labels layer was made on or derived from.
SOURCE_IMAGE_KEY = "source_image"


def is_helper_layer(layer) -> bool:
    """Whether ``layer`` is one of the plugin's helper layers (prompts, box prompts, previews...).

    Helper layers carry ``metadata["microseg_helper"]``; they are never data to
    label, measure, train on or write into, so no dock offers them as an image
    or a target.
    """
    return bool(getattr(layer, "metadata", {}).get(HELPER_KEY))


def is_ground_truth(layer) -> bool:
    """Whether ``layer`` is marked as ground truth (``metadata["ground_truth"]``, e.g. sample data).

    Ground truth is never the user's labels: no dock defaults to it.
    """
    return bool((getattr(layer, "metadata", None) or {}).get("ground_truth"))


def helper_metadata(image_name: str | None = None, role: str = "helper") -> dict:
    """Metadata for a new helper layer: the helper mark, its role and the image it serves."""
    return {HELPER_KEY: role, SOURCE_IMAGE_KEY: image_name}


def find_helper(viewer, image_name: str, role: str):
    """The helper layer of ``role`` made for the image called ``image_name``, or ``None``."""
    for layer in viewer.layers:
        md = layer.metadata
        if md.get(HELPER_KEY) == role and md.get(SOURCE_IMAGE_KEY) == image_name:
            return layer
    return None


def remove_helpers(viewer, image_name: str) -> int:
    """Remove every helper layer made for the image called ``image_name``; return how many."""
    doomed = [lyr for lyr in viewer.layers
              if lyr.metadata.get(HELPER_KEY) and lyr.metadata.get(SOURCE_IMAGE_KEY) == image_name]
    for layer in doomed:
        viewer.layers.remove(layer)
    return len(doomed)


def user_layers(viewer, kind=None) -> list:
    """The viewer's layers of type ``kind`` (all types when ``None``) that are not helper layers."""
    return [lyr for lyr in viewer.layers if (kind is None or isinstance(lyr, kind)) and not is_helper_layer(lyr)]


def layer_choices(viewer, kind):
    """A magicgui ``choices`` callable listing ``(name, layer)`` for the user layers of ``kind``.

    Use it for every image/target combo box, e.g.
    ``ComboBox(label="image", choices=layer_choices(viewer, napari.layers.Image))``,
    so that helper layers are never offered.
    """

    def choices(_widget=None):
        return [(lyr.name, lyr) for lyr in user_layers(viewer, kind)]

    return choices


def source_image_name(layer) -> str | None:
    """Name of the image ``layer`` was made on or derived from, if its metadata records one.

    Reads ``metadata["source_image"]`` (Label dock, sample data, helper layers) or
    ``metadata["provenance"]`` (``"image"`` from the Predict dock, ``"source_image"``
    from a labels file the plugin wrote).
    """
    md = getattr(layer, "metadata", {}) or {}
    name = md.get(SOURCE_IMAGE_KEY)
    prov = md.get("provenance")
    if not name and isinstance(prov, dict):
        name = prov.get(SOURCE_IMAGE_KEY) or prov.get("image")
    return str(name) if name else None


def labels_of_image(viewer, image, *, ground_truth: bool = False) -> list:
    """The (non-helper) Labels layers made on ``image``, by their recorded source image.

    A sample's ground truth is left out (it is never the user's labels to edit)
    unless ``ground_truth`` is true, e.g. when the image's pixel size changes.
    """
    from napari.layers import Labels

    return [lyr for lyr in user_layers(viewer, Labels) if source_image_name(lyr) == image.name
            and (ground_truth or not is_ground_truth(lyr))]


def own_labels_layer(viewer, image):
    """The Labels layer made on ``image`` with its size (``"<image> labels"`` first), or ``None``."""
    shape = tuple(image.data.shape[:2])
    own = [lyr for lyr in labels_of_image(viewer, image) if tuple(lyr.data.shape) == shape]
    named = [lyr for lyr in own if lyr.name == f"{image.name} labels"]
    return (named or own or [None])[0]


def sample_to_layers(sample, name: str) -> list[tuple]:
    """Image and ground-truth Labels ``LayerDataTuple`` for a SyntheticSample."""
    mg = Micrograph(
        data=sample.image,
        pixel_size=sample.pixel_size,
        metadata={"format": "synthetic", "synthetic": {"kind": sample.kind, "seed": sample.seed}, "warnings": []},
    )
    return [
        micrograph_layer(mg, name=name),
        labels_layer(
            sample.labels,
            instance_classes=sample.instance_classes,
            classes=sample.classes,
            pixel_size=sample.pixel_size,
            name=f"{name} ground truth",
            metadata={
                "provenance": {"source": "synthetic ground truth", "kind": sample.kind, "seed": sample.seed},
                SOURCE_IMAGE_KEY: name,
            },
        ),
    ]
