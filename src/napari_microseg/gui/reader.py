"""npe2 reader: micrographs (with calibration) and napari-microseg labels files."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import MicrosegError
from ..core.labels_io import SIDECAR_FORMAT, read_labels, sidecar_path
from ..core.reading import is_supported, read_micrograph
from .layer_data import labels_layer, micrograph_layer


def get_reader(path):
    """Return a reader for one supported file, or ``None`` (napari then tries others)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not is_supported(path):
        return None
    return read_path


def is_labels_file(path) -> bool:
    """Whether ``path`` is a labels TIFF written by napari-microseg (has our sidecar)."""
    side = sidecar_path(path)
    if Path(path).suffix.lower() not in (".tif", ".tiff") or not side.exists():
        return False
    try:
        return json.loads(side.read_text()).get("format") == SIDECAR_FORMAT
    except (OSError, ValueError):
        return False


def read_path(path) -> list[tuple]:
    """Read one file into layer data; errors become napari notifications.

    A napari-microseg labels TIFF becomes a Labels layer with its classes;
    anything else an Image layer in nm with the instrument metadata.
    """
    from napari.utils.notifications import show_error, show_warning

    if isinstance(path, list):
        path = path[0]
    try:
        if is_labels_file(path):
            rec = read_labels(path)
            return [
                labels_layer(
                    rec.labels,
                    instance_classes=rec.instance_classes,
                    classes=rec.classes,
                    pixel_size=rec.pixel_size,
                    name=Path(path).stem,
                    metadata={"provenance": rec.metadata, "source_path": str(path)},
                )
            ]
        mg = read_micrograph(path)
    except (MicrosegError, FileNotFoundError) as e:
        show_error(str(e))
        # An empty list tells napari the file was handled (no second error dialog).
        return [(None,)]
    for w in mg.warnings:
        show_warning(w)
    return [micrograph_layer(mg)]
