"""COCO instance annotations <-> instance labels.

Objects become COCO polygons (outer contours at the half-pixel boundary, so
rasterising them by pixel centre gives the mask back) or, when an object has
holes (e.g. a ring-shaped loop), uncompressed RLE, which keeps the holes.
Class names and colours go to ``categories``.
"""

from __future__ import annotations

import json
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
from .errors import CorruptFileError, LabelsError


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
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptFileError(f"Cannot read COCO file {Path(path).name}: {e}") from e
    if not isinstance(coco, dict) or not {"images", "annotations"} <= set(coco):
        raise LabelsError(f"{Path(path).name} is not COCO instance annotations (needs 'images' and 'annotations').")
    return coco


def coco_to_labels(coco: dict, image: int | str | None = None) -> tuple[np.ndarray, dict, ClassTable]:
    """Rasterise the annotations of one image of a COCO dict.

    Parameters
    ----------
    coco : dict
        Parsed COCO JSON.
    image : int or str, optional
        Image id or file name; optional when the file has one image.

    Returns
    -------
    labels : ndarray of int32
        Instance ids ``1..n`` in annotation order; later objects win overlaps.
    instance_classes : dict
        ``{instance_id: category_id}`` (category 0 is left unclassified).
    classes : ClassTable
        From ``categories`` (id 0 dropped).
    """
    images = coco["images"]
    if image is None:
        if len(images) != 1:
            raise LabelsError(f"The COCO file holds {len(images)} images; say which one.")
        entry = images[0]
    else:
        matches = [im for im in images if im.get("id") == image or im.get("file_name") == image
                   or Path(str(im.get("file_name", ""))).name == str(image)]
        if not matches:
            raise LabelsError(f"No image {image!r} in the COCO file.")
        entry = matches[0]
    shape = (int(entry["height"]), int(entry["width"]))
    labels = np.zeros(shape, dtype=np.int32)
    inst = {}
    n = 0
    for ann in coco["annotations"]:
        if ann.get("image_id") != entry["id"]:
            continue
        seg = ann.get("segmentation")
        mask = rle_to_mask(seg) if isinstance(seg, dict) else polygons_to_mask(seg or [], shape)
        if not mask.any():
            continue
        n += 1
        labels[mask] = n
        if int(ann.get("category_id", 0)) > 0:
            inst[n] = int(ann["category_id"])
    cats = [c for c in coco.get("categories", []) if int(c["id"]) > 0]
    classes = ClassTable(DefectClass(int(c["id"]), str(c["name"]), c.get("color", "#ff0000")) for c in cats)
    return labels, inst, classes
