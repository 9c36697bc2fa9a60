"""npe2 writers: instance labels to TIFF + JSON sidecar, or to COCO JSON.

npe2 picks the first compatible writer for a file name, in registration order,
and napari's builtins register first, so a plain ``layer.save("x.tif")`` or the
Save dialog's default would write a TIFF without the class sidecar.
:func:`prefer_plugin_writers` (run when the plugin is activated) moves this
plugin's writers ahead; an explicit ``plugin=`` or a writer picked in the Save
dialog still wins. Labels that are not 2-D (which the sidecar format does not
describe) are handed to napari's own labels writer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
    provenance = dict(md.get("provenance") or {})
    if md.get("source_image") and "source_image" not in provenance:
        provenance["source_image"] = md["source_image"]  # the image they were made on, kept on reopening
    return inst, classes, ps, provenance


PLUGIN = "napari-microseg"


def prefer_plugin_writers(pm=None) -> bool:
    """Put napari-microseg's writers first in npe2's writer order; return whether it changed.

    npe2 has no public writer preference (napari's ``extension2writer`` setting is
    unused), so this reorders the plugin manager's writer index, keeping every
    other writer in its order. Does nothing if that index is not there.
    """
    from npe2 import PluginManager

    pm = pm or PluginManager.instance()
    index = getattr(getattr(pm, "_contrib", None), "_writers", None)
    if not isinstance(index, list):
        return False
    ours = [w for w in index if getattr(w[-1], "plugin_name", None) == PLUGIN]
    reordered = ours + [w for w in index if getattr(w[-1], "plugin_name", None) != PLUGIN]
    if reordered == index:
        return False
    index[:] = reordered
    return True


def write_labels_tiff(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a TIFF with resolution in nm plus a JSON sidecar.

    Labels that are not 2-D go to napari's own labels writer (no sidecar).
    """
    if np.ndim(data) != 2:
        from napari_builtins.io import napari_write_labels

        out = napari_write_labels(path, data, meta)
        return [out] if out else []
    inst, classes, ps, prov = _unpack(meta)
    out = write_labels(path, data, instance_classes=inst, classes=classes, pixel_size=ps, metadata=prov)
    return [str(out["labels"]), str(out["sidecar"])]


def write_labels_coco(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as COCO JSON (polygons, or RLE for objects with holes)."""
    inst, classes, ps, prov = _unpack(meta)
    image_name = Path(str((meta.get("metadata") or {}).get("source_path") or meta.get("name", "image"))).name
    out = write_coco(path, data, instance_classes=inst, classes=classes, image_name=image_name, pixel_size=ps)
    return [str(out)]
