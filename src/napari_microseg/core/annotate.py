"""Edit instance labels with undo: commit a mask as a new object, batches of boxes.

Pure numpy; the Label dock and scripts share it. Every edit returns an
:class:`Edit` that :func:`undo_edit` reverses exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import LabelsError


@dataclass
class Edit:
    """What one edit changed, enough to reverse it.

    Parameters
    ----------
    label : int
        The instance id written.
    index : tuple of ndarray
        Pixel coordinates written (``np.nonzero`` style).
    previous : ndarray
        The values at ``index`` before the edit.
    class_id : int
        Class given to the new instance (0 = none).
    previous_class : dict
        ``instance_classes`` entries the edit replaced or removed.
    """

    label: int
    index: tuple
    previous: np.ndarray
    class_id: int = 0
    previous_class: dict = field(default_factory=dict)


def next_label(labels: np.ndarray) -> int:
    """The smallest id above every id in use."""
    return int(labels.max()) + 1 if labels.size else 1


def mask_window(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of a boolean ``mask`` as one slice per axis, or None when it is empty."""
    mask = np.asarray(mask, dtype=bool)
    window = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not hit.size:
            return None
        window.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(window)


def commit_mask(
    labels: np.ndarray,
    mask: np.ndarray,
    instance_classes: dict,
    *,
    class_id: int = 0,
    overwrite: bool = False,
    label: int | None = None,
) -> Edit | None:
    """Write ``mask`` into ``labels`` (in place) as a new instance.

    Parameters
    ----------
    labels : ndarray of int
        Instance labels, modified in place.
    mask : ndarray of bool
        The object, same shape as ``labels``.
    instance_classes : dict
        ``{instance_id: class_id}``, updated in place.
    class_id : int
        Class of the new object (0 = unclassified).
    overwrite : bool
        Also paint over pixels of existing objects; by default they are kept.
    label : int, optional
        Id to use; default :func:`next_label`.

    Returns
    -------
    Edit or None
        ``None`` when nothing was written (empty mask, or fully covered by
        existing objects without ``overwrite``).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != labels.shape:
        raise LabelsError(f"Mask shape {mask.shape} does not match labels {labels.shape}.")
    window = mask_window(mask)  # the work is done on the mask's bounding box, not the image
    if window is None:
        return None
    sub = mask[window] if overwrite else mask[window] & (labels[window] == 0)
    if not sub.any():
        return None
    label = next_label(labels) if label is None else int(label)
    if label > np.iinfo(labels.dtype).max:
        raise LabelsError(f"Label {label} does not fit in {labels.dtype}; convert the layer to a wider type.")
    index = tuple(ix + w.start for ix, w in zip(np.nonzero(sub), window, strict=True))
    previous = labels[index].copy()
    labels[index] = label
    prev_cls = {label: instance_classes[label]} if label in instance_classes else {}
    # Objects painted over completely lose their class entry too.
    covered = np.unique(previous)
    covered = covered[covered != 0]
    if covered.size:
        gone = set(covered.tolist()) - set(np.unique(labels[np.isin(labels, covered)]).tolist())
        for g in gone:
            if int(g) in instance_classes:
                prev_cls[int(g)] = instance_classes.pop(int(g))
    if class_id:
        instance_classes[label] = int(class_id)
    return Edit(label, index, previous, int(class_id), prev_cls)


def undo_edit(labels: np.ndarray, instance_classes: dict, edit: Edit) -> None:
    """Reverse :func:`commit_mask` (in place)."""
    labels[edit.index] = edit.previous
    instance_classes.pop(edit.label, None)
    instance_classes.update(edit.previous_class)


def read_box_file(path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Boxes from a detector's text file, one ``ymin xmin ymax xmax`` per line.

    Blank lines and lines starting with ``#`` are skipped; commas are accepted
    as separators. Returns an ``(n, 4)`` float array (rows, columns in pixels),
    clipped to ``shape`` when given.
    """
    boxes = []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        try:
            vals = [float(v) for v in parts[:4]]
        except ValueError:
            raise LabelsError(f"{Path(path).name} line {n}: expected 'ymin xmin ymax xmax', got {line!r}.") from None
        if len(vals) != 4:
            raise LabelsError(f"{Path(path).name} line {n}: expected 4 numbers, got {len(vals)}.")
        y0, x0, y1, x1 = vals
        if y1 < y0 or x1 < x0:
            raise LabelsError(f"{Path(path).name} line {n}: box has max < min ({line!r}).")
        boxes.append(vals)
    arr = np.array(boxes, dtype=float).reshape(-1, 4)
    if shape is not None and len(arr):
        h, w = shape
        arr = np.clip(arr, 0, [h - 1, w - 1, h - 1, w - 1])
    return arr


def segment_boxes(session, boxes: np.ndarray, labels: np.ndarray, instance_classes: dict, *,
                  class_id: int = 0, overwrite: bool = False, progress=None, cancel=None) -> list[Edit]:
    """One instance per box (the detector-then-SAM pipeline), committed in order.

    ``session`` is a :class:`~napari_microseg.core.prompting.session.PromptSession`
    with its image set. Returns the edits (one per box that produced pixels).
    """
    edits = []
    for i, box in enumerate(np.asarray(boxes, dtype=float).reshape(-1, 4)):
        if cancel is not None and cancel():
            break
        session.reset()
        pred = session.predict(box=box)
        e = commit_mask(labels, pred.mask, instance_classes, class_id=class_id, overwrite=overwrite)
        if e is not None:
            edits.append(e)
        if progress is not None:
            progress((i + 1) / len(boxes))
    session.reset()
    return edits
