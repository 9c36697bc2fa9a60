"""Instance labels on disk: a TIFF with resolution in nm plus a JSON sidecar.

``write_labels("cells.tif", labels, ...)`` writes

* ``cells.tif`` -- the instance ids, ``uint16`` when they fit, else ``uint32``,
  with the pixel size as ImageJ resolution (unit nm; ``uint16``) or as TIFF
  resolution tags in centimetres (``uint32``, which ImageJ cannot hold);
* ``cells.labels.json`` -- the class table, the instance-to-class mapping, the pixel
  size with its source, and free-form provenance metadata.

Both are written atomically. :func:`read_labels` reverses it; a labels TIFF
without a sidecar reads as instances of unknown class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from .. import __version__
from .atomic import atomic_path, write_json_atomic
from .calibration import PixelSize
from .classes import ClassTable, check_instance_classes
from .errors import CorruptFileError, LabelsError

SIDECAR_FORMAT = "napari-microseg-labels"
SIDECAR_VERSION = 1


@dataclass
class LabelsRecord:
    """Instance labels with their classes and calibration.

    Parameters
    ----------
    labels : ndarray of int
        2-D instance ids, 0 = background.
    instance_classes : dict
        ``{instance_id: class_id}``; instances absent here have no class.
    classes : ClassTable
        Names and colours of the classes.
    pixel_size : PixelSize
        Pixel size the labels were drawn at.
    metadata : dict
        Provenance (model, prompts, image hash, ...), JSON-compatible.
    """

    labels: np.ndarray
    instance_classes: dict = field(default_factory=dict)
    classes: ClassTable = field(default_factory=ClassTable)
    pixel_size: PixelSize = field(default_factory=PixelSize.uncalibrated)
    metadata: dict = field(default_factory=dict)


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar that belongs to a labels TIFF (``x.tif`` -> ``x.labels.json``)."""
    return Path(path).with_suffix(".labels.json")


def labels_dtype(labels: np.ndarray) -> np.dtype:
    """Smallest unsigned dtype (``uint16`` or ``uint32``) holding every id."""
    if labels.size and labels.min() < 0:
        raise LabelsError("Labels must be non-negative instance ids (found negative values).")
    top = int(labels.max()) if labels.size else 0
    if top <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if top <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    raise LabelsError(f"Label id {top} does not fit in uint32.")


def write_labels(
    path,
    labels,
    *,
    instance_classes: dict | None = None,
    classes: ClassTable | None = None,
    pixel_size: PixelSize | None = None,
    metadata: dict | None = None,
) -> dict[str, Path]:
    """Write instance labels as TIFF + JSON sidecar.

    Parameters
    ----------
    path : str or Path
        Output ``.tif``/``.tiff`` path; the sidecar goes beside it as ``.labels.json``.
    labels : array-like of int
        2-D instance ids, 0 = background. Float arrays with integral values are
        accepted; anything else is refused.
    instance_classes, classes, pixel_size, metadata
        See :class:`LabelsRecord`.

    Returns
    -------
    dict
        ``{"labels": tif_path, "sidecar": json_path}``.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise LabelsError(f"Labels are written as .tif/.tiff, not {path.suffix!r} ({path.name}).")
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise LabelsError(f"Labels must be a 2-D image, got shape {arr.shape}.")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise LabelsError("Labels must hold whole-number instance ids (found fractions or NaN).")
    elif arr.dtype.kind not in "iub":
        raise LabelsError(f"Labels of dtype {arr.dtype} are not instance ids.")
    dtype = labels_dtype(arr)
    arr = arr.astype(dtype, copy=False)
    classes = classes if classes is not None else ClassTable()
    instance_classes = check_instance_classes(instance_classes or {}, classes)
    pixel_size = pixel_size or PixelSize.uncalibrated()

    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "plugin_version": __version__,
        "shape": list(arr.shape),
        "dtype": str(dtype),
        "n_instances": int(len(np.unique(arr[arr > 0]))),
        "pixel_size": pixel_size.to_dict(),
        "classes": classes.to_list(),
        "instance_classes": {str(k): v for k, v in sorted(instance_classes.items())},
        "metadata": metadata or {},
    }
    kwargs = {}
    if pixel_size.calibrated and dtype == np.uint16:
        kwargs = dict(
            imagej=True,
            resolution=(1.0 / pixel_size.x_nm, 1.0 / pixel_size.y_nm),
            metadata={"unit": "nm"},
        )
    elif pixel_size.calibrated:
        # TIFF resolution tags count pixels per centimetre.
        kwargs = dict(resolution=(1e7 / pixel_size.x_nm, 1e7 / pixel_size.y_nm), resolutionunit="CENTIMETER")
    side = sidecar_path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, arr, compression="zlib", **kwargs)
        write_json_atomic(side, sidecar)
    return {"labels": path, "sidecar": side}


def read_labels(path) -> LabelsRecord:
    """Read labels written by :func:`write_labels` (or any integer TIFF/PNG).

    Without a sidecar the classes are the defaults, no instance has a class,
    and the pixel size comes from the file's own tags via the micrograph reader.
    """
    from .reading import read_micrograph

    path = Path(path)
    mg = read_micrograph(path)
    arr = np.asarray(mg.data)
    if arr.ndim != 2 or arr.dtype.kind not in "iub":
        raise LabelsError(f"{path.name} is not an instance-labels image (shape {arr.shape}, dtype {arr.dtype}).")
    side = sidecar_path(path)
    if not side.exists():
        return LabelsRecord(labels=arr, pixel_size=mg.pixel_size, metadata={"sidecar": None})
    try:
        d = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptFileError(f"Cannot read the labels sidecar {side.name}: {e}") from e
    if d.get("format") != SIDECAR_FORMAT:
        raise LabelsError(f"{side.name} is not a napari-microseg labels sidecar.")
    if list(d.get("shape", arr.shape)) != list(arr.shape):
        raise LabelsError(f"{side.name} describes shape {d.get('shape')} but {path.name} is {list(arr.shape)}.")
    classes = ClassTable.from_list(d.get("classes", []))
    inst = check_instance_classes({int(k): v for k, v in d.get("instance_classes", {}).items()}, classes)
    ps = PixelSize.from_dict(d["pixel_size"]) if d.get("pixel_size") else mg.pixel_size
    return LabelsRecord(labels=arr, instance_classes=inst, classes=classes, pixel_size=ps, metadata=d.get("metadata", {}))
