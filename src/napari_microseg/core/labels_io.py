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
import warnings
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
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise LabelsError(f"{path.name} holds negative label values (min {int(arr.min())}); instance "
                          "ids must be 0 (background) or positive.")
    side = sidecar_path(path)
    if not side.exists():
        return LabelsRecord(labels=arr, pixel_size=mg.pixel_size, metadata={"sidecar": None})
    d = _read_sidecar(side)
    if list(d.get("shape", arr.shape)) != list(arr.shape):
        raise LabelsError(f"{side.name} describes shape {d.get('shape')} but {path.name} is {list(arr.shape)}.")
    try:
        classes = ClassTable.from_list(d.get("classes") or [])
        inst = check_instance_classes(
            {int(k): v for k, v in (d.get("instance_classes") or {}).items()}, classes)
        ps = PixelSize.from_dict(d["pixel_size"]) if d.get("pixel_size") else mg.pixel_size
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise LabelsError(f"{side.name}: malformed classes or pixel size ({e}); fix or delete the sidecar.") from e
    if d.get("pixel_size"):
        warn_if_pixel_sizes_differ(ps, mg.pixel_size, f"the sidecar {side.name}", f"the TIFF tags of {path.name}")
    metadata = d.get("metadata") if isinstance(d.get("metadata"), dict) else {}
    return LabelsRecord(labels=arr, instance_classes=inst, classes=classes, pixel_size=ps, metadata=metadata)


def _read_sidecar(side: Path) -> dict:
    """The parsed sidecar dict; one-line errors for unreadable, non-JSON or non-object content."""
    try:
        d = json.loads(side.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:  # ValueError covers JSON and UTF-8 decoding errors
        reason = "not UTF-8 JSON text" if isinstance(e, UnicodeDecodeError) else " ".join(str(e).split())
        raise CorruptFileError(f"Cannot read the labels sidecar {side.name}: {reason}; fix or delete it.") from e
    if not isinstance(d, dict) or d.get("format") != SIDECAR_FORMAT:
        raise LabelsError(f"{side.name} is not a napari-microseg labels sidecar; fix or delete it.")
    return d


def warn_if_pixel_sizes_differ(used: PixelSize, other: PixelSize, used_name: str, other_name: str) -> bool:
    """Warn (one line) when two calibrated pixel sizes differ by more than 0.1 %; return whether they do.

    ``used`` is the value the caller goes on with; the message names both sources.
    """
    if not (used.calibrated and other.calibrated):
        return False
    a, b = (used.x_nm, used.y_nm), (other.x_nm, other.y_nm)
    if all(abs(p - q) <= 1e-3 * max(p, q) for p, q in zip(a, b, strict=True)):
        return False
    warnings.warn(f"pixel size {_nm(used)} from {used_name} differs from {_nm(other)} from "
                  f"{other_name}; using {_nm(used)} ({used_name}).", stacklevel=2)
    return True


def _nm(ps: PixelSize) -> str:
    if ps.x_nm == ps.y_nm:
        return f"{ps.x_nm:g} nm/px"
    return f"{ps.x_nm:g} x {ps.y_nm:g} nm/px"
