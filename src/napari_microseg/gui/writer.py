"""npe2 writers: instance labels to TIFF + JSON sidecar, or to COCO JSON."""

from __future__ import annotations

from pathlib import Path

from ..core.calibration import PixelSize
from ..core.classes import ClassTable
from ..core.coco import write_coco
from ..core.labels_io import write_labels


def _unpack(meta: dict):
    md = meta.get("metadata") or {}
    classes = ClassTable.from_list(md["classes"]) if md.get("classes") else ClassTable()
    inst = {}
    feats = meta.get("features")
    if feats is not None and len(feats) and {"index", "class_id"} <= set(feats.columns):
        inst = {int(i): int(c) for i, c in zip(feats["index"], feats["class_id"], strict=False) if i > 0 and c > 0}
    ps = PixelSize.from_dict(md["pixel_size"]) if md.get("pixel_size") else PixelSize.uncalibrated()
    provenance = md.get("provenance") or {}
    return inst, classes, ps, provenance


def write_labels_tiff(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a TIFF with resolution in nm plus a JSON sidecar."""
    inst, classes, ps, prov = _unpack(meta)
    out = write_labels(path, data, instance_classes=inst, classes=classes, pixel_size=ps, metadata=prov)
    return [str(out["labels"]), str(out["sidecar"])]


def write_labels_coco(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as COCO JSON (polygons, or RLE for objects with holes)."""
    inst, classes, ps, prov = _unpack(meta)
    image_name = Path(str((meta.get("metadata") or {}).get("source_path") or meta.get("name", "image"))).name
    out = write_coco(path, data, instance_classes=inst, classes=classes, image_name=image_name, pixel_size=ps)
    return [str(out)]
