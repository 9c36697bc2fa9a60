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
from .atomic import atomic_path
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
    return _write_files(path, arr, arr.shape, dtype, int(len(np.unique(arr[arr > 0]))),
                        instance_classes, classes, pixel_size, metadata)


def write_labels_tiles(
    path,
    tiles,
    *,
    shape: tuple[int, int],
    dtype,
    n_instances: int,
    tile: int = 256,
    instance_classes: dict | None = None,
    classes: ClassTable | None = None,
    pixel_size: PixelSize | None = None,
    metadata: dict | None = None,
) -> dict[str, Path]:
    """Write instance labels from an iterator of TIFF tiles, never holding the whole image.

    The TIFF is tiled (``tile`` x ``tile``) and otherwise as :func:`write_labels`
    writes it (same resolution tags, same sidecar).

    Parameters
    ----------
    path : str or Path
        Output ``.tif``/``.tiff`` path.
    tiles : iterable of ndarray
        The tiles in row-major order, each ``tile`` x ``tile`` (smaller at the
        right and bottom edges), of ``dtype``.
    shape : (int, int)
        Rows and columns of the whole image.
    dtype : numpy dtype
        ``uint16`` or ``uint32``.
    n_instances : int
        Number of distinct non-zero ids (for the sidecar).
    tile : int
        Tile side, a multiple of 16.
    instance_classes : dict or (ndarray, ndarray)
        ``{instance_id: class_id}``, or the ids and their class ids as two
        arrays (millions of objects without a Python object each).
    classes, pixel_size, metadata
        See :class:`LabelsRecord`.

    Returns
    -------
    dict
        ``{"labels": tif_path, "sidecar": json_path}``.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise LabelsError(f"Labels are written as .tif/.tiff, not {path.suffix!r} ({path.name}).")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        raise LabelsError(f"Tiled labels are uint16 or uint32, not {dtype}.")
    return _write_files(path, tiles, tuple(int(v) for v in shape), dtype, int(n_instances),
                        instance_classes, classes, pixel_size, metadata, tile=(tile, tile))


def _class_arrays(instance_classes, classes: ClassTable) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(ids, class_ids)`` int64 arrays sorted by id, from a dict or a pair of arrays.

    A pair of arrays (as blockwise prediction gives for millions of objects) is
    checked without building Python objects per instance.
    """
    if isinstance(instance_classes, tuple):
        ids, cls = (np.asarray(a, np.int64).ravel() for a in instance_classes)
        if ids.size != cls.size:
            raise LabelsError(f"Got {ids.size} instance ids but {cls.size} class ids.")
        if ids.size and ids.min() <= 0:
            raise LabelsError(f"Instance id must be positive, got {int(ids.min())}.")
        known = np.array(sorted(c.id for c in classes), np.int64)
        bad = ~np.isin(cls, known)
        if bad.any():
            i = int(np.argmax(bad))
            raise LabelsError(f"Instance {int(ids[i])} has class {int(cls[i])}, which is not in "
                              f"the class table {known.tolist()}.")
    else:
        checked = check_instance_classes(instance_classes or {}, classes)
        ids = np.fromiter(checked.keys(), np.int64, len(checked))
        cls = np.fromiter(checked.values(), np.int64, len(checked))
        del checked
    order = np.argsort(ids, kind="stable")
    return ids[order], cls[order]


#: Instances per chunk of the sidecar's ``instance_classes`` written at a time.
SIDECAR_CHUNK = 100_000


def _write_sidecar(side: Path, sidecar: dict, ids: np.ndarray, cls: np.ndarray) -> None:
    """The sidecar as indented JSON, its ``instance_classes`` streamed in chunks (atomic).

    Equivalent to ``json.dumps(sidecar, indent=2)`` with the mapping in place,
    without building a string per instance for millions of instances at once.
    """
    from .atomic import _json_default

    marker = f"@@instance-classes-{id(sidecar)}@@"
    head = json.dumps({**sidecar, "instance_classes": marker}, indent=2, default=_json_default)
    before, after = head.split(json.dumps(marker), 1)
    with atomic_path(side) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(before + "{")
        for i in range(0, ids.size, SIDECAR_CHUNK):
            f.write(("," if i else "") + ",".join(
                f'\n    "{k}": {v}' for k, v in zip(ids[i : i + SIDECAR_CHUNK].tolist(),
                                                 cls[i : i + SIDECAR_CHUNK].tolist(), strict=True)))
        f.write(("\n  }" if ids.size else "}") + after)


def _write_files(path: Path, data, shape, dtype, n_instances, instance_classes, classes,
                 pixel_size, metadata, tile=None) -> dict[str, Path]:
    """TIFF (an array, or tiles with ``tile``) plus sidecar, both atomic."""
    classes = classes if classes is not None else ClassTable()
    ids, cls = _class_arrays(instance_classes, classes)
    pixel_size = pixel_size or PixelSize.uncalibrated()

    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "plugin_version": __version__,
        "shape": list(shape),
        "dtype": str(dtype),
        "n_instances": n_instances,
        "pixel_size": pixel_size.to_dict(),
        "classes": classes.to_list(),
        "instance_classes": None,  # streamed by _write_sidecar
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
    if tile is not None:
        kwargs.update(shape=shape, dtype=dtype, tile=tile)
    side = sidecar_path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, compression="zlib", **kwargs)
        _write_sidecar(side, sidecar, ids, cls)
    return {"labels": path, "sidecar": side}


def read_labels(path, *, lazy: bool = False) -> LabelsRecord:
    """Read labels written by :func:`write_labels` (or any integer TIFF/PNG).

    Without a sidecar the classes are the defaults, no instance has a class,
    and the pixel size comes from the file's own tags via the micrograph reader.
    With ``lazy``, a TIFF the micrograph reader opens lazily (a huge one) stays
    a lazy read-only array (zarr): ``labels`` is then read region by region by
    the caller, who also checks for negative ids (as
    :mod:`~napari_microseg.core.measure.blockwise` does).
    """
    from .reading import read_micrograph

    path = Path(path)
    mg = read_micrograph(path)
    arr = mg.data if lazy and not isinstance(mg.data, np.ndarray) else np.asarray(mg.data)
    if arr.ndim != 2 or np.dtype(arr.dtype).kind not in "iub":
        raise LabelsError(f"{path.name} is not an instance-labels image (shape {arr.shape}, dtype {arr.dtype}).")
    if isinstance(arr, np.ndarray) and arr.size and arr.dtype.kind == "i" and arr.min() < 0:
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
