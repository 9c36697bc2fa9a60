"""Replace an existing object of an instance-label image by an edited mask, undoably.

The Label dock's "edit object" path: :func:`object_region` takes an object's
mask out of a labels array (the starting mask of
:meth:`~napari_microseg.core.prompting.session.PromptSession.start_from`), and
:func:`replace_object` writes the edited mask back under the same id and class
as one :class:`~napari_microseg.core.annotate.Edit`, which
:func:`~napari_microseg.core.annotate.undo_edit` reverses exactly.
"""

from __future__ import annotations

import numpy as np

from ..annotate import Edit
from ..errors import LabelsError
from .base import RegionMask


def object_region(labels, label: int) -> RegionMask:
    """The pixels of object ``label`` as a :class:`RegionMask` (empty if absent); ``labels`` is only read."""
    return RegionMask.from_full(np.asarray(labels) == int(label))


def replace_object(
    labels: np.ndarray,
    mask,
    instance_classes: dict,
    *,
    label: int,
    class_id: int = 0,
    overwrite: bool = False,
) -> Edit | None:
    """Make object ``label`` of ``labels`` (in place) exactly ``mask``, keeping its id.

    Parameters
    ----------
    labels : ndarray of int
        Instance labels, modified in place.
    mask : ndarray of bool or RegionMask
        The object's new extent (full image, or a placed crop).
    instance_classes : dict
        ``{instance_id: class_id}``, updated in place.
    label : int
        The object's id (also used when it does not exist yet).
    class_id : int
        Its class afterwards (0 = unclassified).
    overwrite : bool
        Also take pixels of other objects; by default they are kept.

    Returns
    -------
    Edit or None
        One edit covering the pixels removed from and added to the object;
        ``None`` when the new mask would leave the object empty.
    """
    label = int(label)
    if isinstance(mask, RegionMask):
        mask = mask.full(labels.shape)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != labels.shape:
        raise LabelsError(f"Mask shape {mask.shape} does not match labels {labels.shape}.")
    if label < 1 or label > np.iinfo(labels.dtype).max:
        raise LabelsError(f"Label {label} is not a valid id for {labels.dtype} labels.")
    old = labels == label
    new = mask if overwrite else mask & ((labels == 0) | old)
    if not new.any():
        return None
    index = np.nonzero(old ^ new)
    previous = labels[index].copy()
    labels[index] = np.where(new[index], label, 0).astype(labels.dtype)
    prev_cls = {label: instance_classes[label]} if label in instance_classes else {}
    gone = set(np.unique(previous).tolist()) - {0, label} - set(np.unique(labels[index]).tolist())
    for g in gone:
        if not (labels == g).any() and int(g) in instance_classes:
            prev_cls[int(g)] = instance_classes.pop(int(g))
    instance_classes.pop(label, None)
    if class_id:
        instance_classes[label] = int(class_id)
    return Edit(label, index, previous, int(class_id), prev_cls)
