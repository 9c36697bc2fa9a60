"""COCO instance annotations <-> instance labels.

Objects become COCO polygons (outer contours at the half-pixel boundary, so
rasterising them by pixel centre gives the mask back) or, when an object has
holes (e.g. a ring-shaped loop), uncompressed RLE, which keeps the holes.
Class names and colours go to ``categories``.
"""

from __future__ import annotations

import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import polygon as draw_polygon
from skimage.measure import find_contours

from .. import __version__
from .atomic import write_json_atomic
from .calibration import PixelSize
from .classes import ClassTable, DefectClass
from .errors import CalibrationError, CorruptFileError, LabelsError


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer boundary polygons of a binary mask, COCO style ``[x0, y0, x1, y1, ...]``."""
    padded = np.pad(mask.astype(np.uint8), 1)
    polys = []
    for contour in find_contours(padded, 0.5):
        contour = contour - 1.0  # undo padding
        if len(contour) < 3:
            continue
        polys.append([float(v) for rc in contour[:, ::-1] for v in rc])
    return polys


def polygons_to_mask(polygons: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise COCO polygons: pixels whose centres fall inside (even-odd)."""
    mask = np.zeros(shape, dtype=bool)
    for poly in polygons:
        xy = np.asarray(poly, dtype=float).reshape(-1, 2)
        rr, cc = draw_polygon(xy[:, 1], xy[:, 0], shape)
        mask[rr, cc] ^= True
    return mask


def mask_to_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major runs starting with background)."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _runs(flat)}


def _runs(flat: np.ndarray) -> list[int]:
    if flat.size == 0:
        return []
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return [int(r) for r in runs]


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode uncompressed COCO RLE."""
    counts = rle.get("counts")
    if isinstance(counts, str):
        raise LabelsError("Compressed COCO RLE strings are not supported; export uncompressed RLE or polygons.")
    h, w = (int(v) for v in rle["size"])
    vals = np.zeros(len(counts), dtype=np.uint8)
    vals[1::2] = 1
    flat = np.repeat(vals, np.asarray(counts, dtype=np.int64))
    if flat.size != h * w:
        raise LabelsError(f"RLE covers {flat.size} pixels but the image has {h * w}.")
    return flat.reshape((h, w), order="F").astype(bool)


def labels_to_coco(
    labels: np.ndarray,
    *,
    instance_classes: dict | None = None,
    classes: ClassTable | None = None,
    image_name: str = "image.tif",
    pixel_size: PixelSize | None = None,
    image_id: int = 1,
) -> dict:
    """A COCO dict for one labels image.

    Instances without a class get category 0 ``"unclassified"`` only when any
    exist, so the file stays valid for tools that need a category per object.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise LabelsError(f"Labels must be 2-D, got shape {labels.shape}.")
    if labels.dtype.kind not in "iub":
        raise LabelsError(f"Labels of dtype {labels.dtype} are not instance ids.")
    if labels.size and labels.min() < 0:
        raise LabelsError(f"Labels hold negative values (min {int(labels.min())}); instance ids "
                          "must be 0 (background) or positive.")
    classes = classes or ClassTable()
    instance_classes = instance_classes or {}
    anns, need_unclassified = [], False
    for ann_id, (i, sl) in enumerate(_objects(labels), start=1):
        sub = labels[sl] == i
        y0, x0 = sl[0].start, sl[1].start
        full_holes = ndi.binary_fill_holes(sub).sum() != sub.sum()
        if full_holes:
            full = np.zeros(labels.shape, dtype=bool)
            full[sl] = sub
            seg = mask_to_rle(full)
        else:
            seg = [[v + (x0 if k % 2 == 0 else y0) for k, v in enumerate(p)] for p in mask_to_polygons(sub)]
        cat = int(instance_classes.get(int(i), 0))
        need_unclassified |= cat == 0
        anns.append(
            {
                "id": ann_id,
                "image_id": image_id,
                "category_id": cat,
                "segmentation": seg,
                "area": int(sub.sum()),
                "bbox": [int(x0), int(y0), int(sl[1].stop - x0), int(sl[0].stop - y0)],
                "iscrowd": 0,
                "instance_id": int(i),
            }
        )
    cats = [{"id": c.id, "name": c.name, "supercategory": "defect", "color": c.color} for c in classes]
    if need_unclassified:
        cats.insert(0, {"id": 0, "name": "unclassified", "supercategory": "defect", "color": "#808080"})
    image = {"id": image_id, "file_name": image_name, "height": int(labels.shape[0]), "width": int(labels.shape[1])}
    if pixel_size is not None and pixel_size.calibrated:
        image["pixel_size_nm"] = [pixel_size.y_nm, pixel_size.x_nm]
    return {
        "info": {
            "description": "instance labels exported by napari-microseg",
            "version": __version__,
            "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "images": [image],
        "annotations": anns,
        "categories": cats,
    }


def _objects(labels: np.ndarray):
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is not None:
            yield i, sl


def write_coco(path, labels, **kwargs) -> Path:
    """Write :func:`labels_to_coco` output to ``path`` atomically."""
    return write_json_atomic(path, labels_to_coco(labels, **kwargs))


def read_coco(path) -> dict:
    """Load a COCO JSON file, with a clear error when it is not one."""
    try:
        coco = json.loads(Path(path).read_text())
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"Cannot read COCO file {Path(path).name}: not UTF-8 text.") from e
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptFileError(f"Cannot read COCO file {Path(path).name}: {e}") from e
    if not isinstance(coco, dict) or not {"images", "annotations"} <= set(coco):
        raise LabelsError(f"{Path(path).name} is not COCO instance annotations (needs 'images' and 'annotations').")
    for key in ("images", "annotations"):
        if not isinstance(coco[key], list) or not all(isinstance(x, dict) for x in coco[key]):
            raise LabelsError(f"{Path(path).name}: '{key}' must be a list of objects.")
    if not isinstance(coco.get("categories", []), list):
        raise LabelsError(f"{Path(path).name}: 'categories' must be a list of objects.")
    return coco


#: Largest image :func:`coco_to_labels` rasterises, in pixels (about 8 GB of int32 labels).
MAX_PIXELS = 2**31


def coco_image_entry(coco: dict, image: int | str | None = None) -> dict:
    """The ``images`` entry for ``image`` (id or file name; optional with one image)."""
    images = coco["images"]
    if image is None:
        if len(images) != 1:
            raise LabelsError(f"The COCO file holds {len(images)} images; say which one.")
        return images[0]
    matches = [im for im in images if im.get("id") == image or im.get("file_name") == image
               or Path(str(im.get("file_name", ""))).name == str(image)]
    if not matches:
        raise LabelsError(f"No image {image!r} in the COCO file.")
    return matches[0]


def coco_image_shape(entry: dict) -> tuple[int, int]:
    """``(height, width)`` of a COCO image entry, checked and bounded before anything is allocated.

    Raises :class:`LabelsError` for a missing, non-integer or non-positive size
    and for an image above :data:`MAX_PIXELS` pixels or whose labels would take
    more than a quarter of the available memory.
    """
    name = f"COCO image {entry.get('id', entry.get('file_name', '?'))!r}"
    dims = []
    for key in ("height", "width"):
        v = entry.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or int(v) <= 0:
            raise LabelsError(f"{name}: '{key}' must be a positive whole number, got {v!r}.")
        dims.append(int(v))
    h, w = dims
    n_px = h * w
    avail = _available_memory()
    if n_px > MAX_PIXELS or (avail is not None and n_px * 4 > avail / 4):
        limit = f"{MAX_PIXELS} px" + (f" or a quarter of the {avail / 2**30:.1f} GiB of free memory"
                                      if avail is not None else "")
        raise LabelsError(f"{name} declares {w} x {h} px ({n_px * 4 / 2**30:.1f} GiB of labels), "
                          f"over the limit ({limit}); check its 'width' and 'height'.")
    return h, w


def _available_memory() -> int | None:
    """Free physical memory in bytes, or ``None`` when the OS does not say."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def coco_pixel_size(entry: dict) -> PixelSize:
    """The pixel size a COCO image entry carries (``pixel_size_nm``: ``[y, x]`` or one number)."""
    v = entry.get("pixel_size_nm")
    if v is None:
        return PixelSize.uncalibrated("no pixel_size_nm in the COCO image entry")
    try:
        y, x = (v, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        return PixelSize(float(y), float(x), "sidecar", "COCO pixel_size_nm")
    except (TypeError, ValueError, CalibrationError) as e:
        raise LabelsError(f"COCO image {entry.get('id')!r}: pixel_size_nm {v!r} is not a positive "
                          "number or a [y, x] pair of them.") from e


def _polygons(seg, ann_id) -> list[np.ndarray]:
    """Checked polygons of one annotation as ``(n, 2)`` float arrays of ``x, y``."""
    if not isinstance(seg, list):
        raise LabelsError(f"COCO annotation {ann_id!r}: 'segmentation' must be polygons or RLE.")
    polys = []
    for poly in seg:
        if not isinstance(poly, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly
        ):
            raise LabelsError(f"COCO annotation {ann_id!r}: polygon coordinates must be numbers.")
        if len(poly) % 2:
            raise LabelsError(f"COCO annotation {ann_id!r}: a polygon has an odd number "
                              f"({len(poly)}) of coordinates; expected x, y pairs.")
        if len(poly) < 6:
            raise LabelsError(f"COCO annotation {ann_id!r}: a polygon needs at least 3 points.")
        polys.append(np.asarray(poly, dtype=float).reshape(-1, 2))
    return polys


def _rle_mask(seg: dict, shape, ann_id) -> np.ndarray:
    size, counts = seg.get("size"), seg.get("counts")
    if not isinstance(size, list) or [_int_or_none(v) for v in size] != list(shape):
        raise LabelsError(f"COCO annotation {ann_id!r}: RLE size {size!r} differs from the image's "
                          f"{list(shape)}.")
    if isinstance(counts, list) and not all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
    ):
        raise LabelsError(f"COCO annotation {ann_id!r}: RLE counts must be non-negative integers.")
    try:
        return rle_to_mask(seg)
    except LabelsError as e:
        raise LabelsError(f"COCO annotation {ann_id!r}: {e}") from e


def _int_or_none(v):
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == int(v) else None


def _ids(ids: list) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f", ... ({len(ids) - 10} more)" if len(ids) > 10 else "")


def coco_to_labels(coco: dict, image: int | str | None = None) -> tuple[np.ndarray, dict, ClassTable]:
    """Rasterise the annotations of one image of a COCO dict.

    Malformed annotations (string or odd-length coordinates, wrong RLE size)
    raise :class:`LabelsError` naming the annotation id. Annotations that end
    up with no pixel -- NaN coordinates, outside the image, or completely
    covered by later annotations (e.g. duplicates) -- are dropped with a
    warning that gives their count and ids; polygons reaching past the image
    edge are clipped with a warning.

    Parameters
    ----------
    coco : dict
        Parsed COCO JSON.
    image : int or str, optional
        Image id or file name; optional when the file has one image.

    Returns
    -------
    labels : ndarray of int32
        Instance ids ``1..n`` in annotation order (no gaps); later objects win overlaps.
    instance_classes : dict
        ``{instance_id: category_id}`` (category 0 is left unclassified).
    classes : ClassTable
        From ``categories`` (id 0 dropped).
    """
    entry = coco_image_entry(coco, image)
    shape = coco_image_shape(entry)
    labels = np.zeros(shape, dtype=np.int32)
    cat_of, ann_of = {}, {}
    dropped = {"NaN coordinates": [], "no pixel inside the image": []}
    clipped = []
    n = 0
    for k, ann in enumerate(coco["annotations"]):
        if ann.get("image_id") != entry.get("id"):
            continue
        ann_id = ann.get("id", f"#{k}")
        seg = ann.get("segmentation")
        cat = ann.get("category_id", 0)
        if isinstance(cat, bool) or not isinstance(cat, (int, float)) or cat != int(cat):
            raise LabelsError(f"COCO annotation {ann_id!r}: category_id {cat!r} is not an integer.")
        if isinstance(seg, dict):
            mask = _rle_mask(seg, shape, ann_id)
        else:
            polys = _polygons(seg or [], ann_id)
            if any(not np.all(np.isfinite(p)) for p in polys):
                dropped["NaN coordinates"].append(ann_id)
                continue
            if any(_beyond(p, shape) for p in polys):
                clipped.append(ann_id)
            mask = polygons_to_mask([p.ravel() for p in polys], shape)
        if not mask.any():
            dropped["no pixel inside the image"].append(ann_id)
            continue
        n += 1
        labels[mask] = n
        ann_of[n] = ann_id
        if int(cat) > 0:
            cat_of[n] = int(cat)
    labels, inst, covered = _renumber(labels, cat_of, ann_of)
    dropped["completely covered by later annotations (duplicates?)"] = covered
    for why, ids in dropped.items():
        if ids:
            warnings.warn(f"{len(ids)} COCO annotation(s) dropped, {why}: ids {_ids(ids)}.",
                          stacklevel=2)
    if clipped:
        warnings.warn(f"{len(clipped)} COCO annotation(s) reach past the {shape[1]} x {shape[0]} px "
                      f"image and were clipped: ids {_ids(clipped)}.", stacklevel=2)
    cats = []
    for c in coco.get("categories", []):
        if not isinstance(c, dict) or _int_or_none(c.get("id")) is None or "name" not in c:
            raise LabelsError(f"COCO category {c!r} needs an integer 'id' and a 'name'.")
        if int(c["id"]) > 0:
            cats.append(c)
    classes = ClassTable(DefectClass(int(c["id"]), str(c["name"]), c.get("color", "#ff0000")) for c in cats)
    return labels, inst, classes


def _beyond(xy: np.ndarray, shape) -> bool:
    """Whether polygon vertices lie past the image's half-pixel border."""
    tol = 1e-6
    return bool(np.any(xy < -0.5 - tol) or np.any(xy[:, 0] > shape[1] - 0.5 + tol)
                or np.any(xy[:, 1] > shape[0] - 0.5 + tol))


def _renumber(labels: np.ndarray, cat_of: dict, ann_of: dict):
    """Ids ``1..n`` for the instances left; the annotation ids of those fully overwritten."""
    present = np.unique(labels)
    present = present[present > 0]
    if present.size == len(ann_of):
        return labels, cat_of, []
    covered = [ann_of[i] for i in sorted(set(ann_of) - set(present.tolist()))]
    lut = np.zeros(max(ann_of) + 1, dtype=np.int32)
    lut[present] = np.arange(1, present.size + 1, dtype=np.int32)
    inst = {int(lut[i]): c for i, c in cat_of.items() if lut[i] > 0}
    return lut[labels], inst, covered
