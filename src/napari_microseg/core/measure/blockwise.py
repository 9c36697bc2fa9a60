"""Measure a labels image too large to hold, block by block (:func:`measure_objects_blockwise`).

Above :data:`BLOCKWISE_PIXELS` pixels, :func:`~.pipeline.measure_image` reads
the labels (and the intensity image) only in regions of a lazy array (zarr,
:class:`~napari_microseg.core.memmap_regions.MemmapRegions`, or any object sliced like a NumPy array):

1. **Bounding boxes.** The image is scanned in :data:`BLOCK` x :data:`BLOCK`
   blocks; each block's ids are found with ``np.unique`` (ids may be as large
   as ``uint32`` allows) and their boxes with ``scipy.ndimage.find_objects``;
   the per-block boxes are merged per id.
2. **Measurement.** Objects are grouped by the block that holds their box's
   top-left corner. For each group the union of its boxes, plus a one-pixel
   margin, is read (an object crossing blocks is read whole), every other
   label is set to 0, the group's ids are renumbered 1..n in order (any
   ``uint32`` id works) and :func:`~.objects.measure_objects` measures the crop
   with its ``origin`` and the whole ``image_shape``: centroids are in image
   coordinates and an edge object is one touching the *image* border.

The margin makes the crop's border background wherever it is not the image's,
so perimeters and "touches an excluded pixel" are those of the whole image;
moments are accumulated relative to each object's first pixel. The table is
therefore the whole-image table, bit for bit, sorted by label. Resident memory
is a block's worth of temporaries plus the largest group's region.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from ..errors import InvalidImageError, LabelsError
from .objects import measure_objects

#: Labels images with more pixels than this are measured block by block.
BLOCKWISE_PIXELS = 64 * 2**20
#: Side of the blocks scanned for bounding boxes and grouping objects (px).
BLOCK = 4096


def use_blockwise(shape) -> bool:
    """Whether a labels image of ``shape`` (rows, cols) is measured block by block."""
    return int(shape[0]) * int(shape[1]) > BLOCKWISE_PIXELS


def _blocks(h: int, w: int, block: int):
    """``(r0, r1, c0, c1)`` of the blocks in row-major order."""
    for r0 in range(0, h, block):
        for c0 in range(0, w, block):
            yield r0, min(h, r0 + block), c0, min(w, c0 + block)


def _block_boxes(a: np.ndarray, r0: int, c0: int) -> np.ndarray:
    """``(n, 5)`` int64 rows ``id, y0, x0, y1, x1`` (ends exclusive, image coordinates) of a block."""
    if a.dtype == bool:
        a = a.view(np.uint8)
    if a.dtype.kind not in "iu":
        raise LabelsError(f"A labels image must hold integers, got {a.dtype}.")
    uniq, inv = np.unique(a, return_inverse=True)
    if uniq.size and uniq[0] < 0:
        raise LabelsError("A labels image must not hold negative ids.")
    has_bg = bool(uniq.size) and uniq[0] == 0
    ids = uniq[1:] if has_bg else uniq
    if ids.size == 0:
        return np.zeros((0, 5), np.int64)
    compact = inv.reshape(a.shape)
    del inv
    if not has_bg:
        compact += 1
    boxes = ndimage.find_objects(compact, max_label=ids.size)
    out = np.empty((ids.size, 5), np.int64)
    out[:, 0] = ids
    out[:, 1] = [s[0].start + r0 for s in boxes]
    out[:, 2] = [s[1].start + c0 for s in boxes]
    out[:, 3] = [s[0].stop + r0 for s in boxes]
    out[:, 4] = [s[1].stop + c0 for s in boxes]
    return out


def bounding_boxes(labels, block: int | None = None) -> np.ndarray:
    """Bounding box of every object, scanning ``labels`` one block at a time.

    Returns
    -------
    ndarray
        ``(n, 5)`` int64 rows ``id, y0, x0, y1, x1`` (ends exclusive), sorted by id.
    """
    block = BLOCK if block is None else int(block)
    h, w = (int(n) for n in labels.shape[:2])
    parts = [_block_boxes(np.asarray(labels[r0:r1, c0:c1]), r0, c0)
             for r0, r1, c0, c1 in _blocks(h, w, block)]
    allb = np.concatenate(parts) if parts else np.zeros((0, 5), np.int64)
    del parts
    if allb.shape[0] == 0:
        return allb
    allb = allb[np.argsort(allb[:, 0], kind="stable")]
    starts = np.flatnonzero(np.r_[True, allb[1:, 0] != allb[:-1, 0]])
    out = np.empty((starts.size, 5), np.int64)
    out[:, 0] = allb[starts, 0]
    out[:, 1:3] = np.minimum.reduceat(allb[:, 1:3], starts, axis=0)
    out[:, 3:5] = np.maximum.reduceat(allb[:, 3:5], starts, axis=0)
    return out


def _compact(lab: np.ndarray, gids: np.ndarray) -> np.ndarray:
    """``lab`` with the sorted ids ``gids`` renumbered ``1..n`` and every other label set to 0.

    The renumbering keeps the ids' order, so every measurement is unchanged,
    and keeps the per-label arrays of the measuring code small whatever the ids
    (up to ``uint32``).
    """
    out = np.empty(lab.shape, np.uint16 if gids.size < 2**16 else np.uint32)
    step = max(1, (1 << 22) // max(lab.shape[1], 1))  # rows at a time: small temporaries
    for r in range(0, lab.shape[0], step):
        part = lab[r : r + step]
        pos = np.searchsorted(gids, part)
        np.minimum(pos, gids.size - 1, out=pos)
        out[r : r + step] = np.where(gids[pos] == part, pos + 1, 0)
    return out


def _class_subset(keys: np.ndarray, vals: np.ndarray, ids: np.ndarray) -> dict:
    """``{k: class}`` for the ``k``-th (from 1) of ``ids`` found in the sorted ``keys``."""
    if keys.size == 0:
        return {}
    pos = np.clip(np.searchsorted(keys, ids), 0, keys.size - 1)
    hit = keys[pos] == ids
    return dict(zip((np.flatnonzero(hit) + 1).tolist(), vals[pos[hit]].tolist(), strict=True))


def measure_objects_blockwise(
    labels,
    pixel_size=None,
    *,
    intensity=None,
    instance_classes=None,
    classes=None,
    analysis_mask=None,
    block: int | None = None,
) -> pd.DataFrame:
    """:func:`~.objects.measure_objects` of a lazy labels image, region by region.

    Parameters
    ----------
    labels : array-like
        2-D labels sliced like a NumPy array (zarr, :class:`MemmapRegions`, ndarray).
    pixel_size, instance_classes, classes
        As for :func:`~.objects.measure_objects`.
    intensity : array-like, optional
        2-D image of the same shape, sliced the same way.
    analysis_mask : array-like of bool, optional
        ``True`` where analysed (held in memory by the caller, or sliceable).
    block : int, optional
        Block side (default :data:`BLOCK`).

    Returns
    -------
    pandas.DataFrame
        The same table (values, column order, ``attrs``) as ``measure_objects``
        on the whole image.
    """
    block = BLOCK if block is None else int(block)
    if len(labels.shape) != 2:
        raise LabelsError(f"A labels image must be 2-D, got shape {tuple(labels.shape)}.")
    h, w = (int(n) for n in labels.shape)
    for name, arr in (("intensity image", intensity), ("analysis mask", analysis_mask)):
        if arr is not None and tuple(arr.shape) != (h, w):
            raise InvalidImageError(
                f"The {name}'s shape {tuple(arr.shape)} differs from the labels' {(h, w)}; "
                "give a single-channel image of the same size."
            )
    boxes = bounding_boxes(labels, block)
    keys = vals = np.zeros(0, np.int64)
    if instance_classes:
        keys = np.fromiter((int(k) for k in instance_classes), np.int64, len(instance_classes))
        vals = np.fromiter((int(v) for v in instance_classes.values()), np.int64, keys.size)
        order = np.argsort(keys)
        keys, vals = keys[order], vals[order]
    kw = dict(classes=classes)
    if boxes.shape[0] == 0:  # the empty table, with the right columns and dtypes
        one = (slice(0, 1), slice(0, 1))
        t = measure_objects(np.zeros((1, 1), np.uint8), pixel_size,
                            intensity=None if intensity is None else np.asarray(intensity[one]),
                            analysis_mask=None if analysis_mask is None else np.asarray(analysis_mask[one]),
                            image_shape=(h, w), **kw)
        return _finish(t, analysis_mask, h, w, intensity is not None)
    nbx = -(-w // block)
    group = (boxes[:, 1] // block) * nbx + boxes[:, 2] // block
    order = np.argsort(group, kind="stable")  # ids stay sorted inside a group
    boxes, group = boxes[order], group[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], group.size]
    tables = []
    for s, e in zip(starts, ends, strict=True):
        b = boxes[s:e]
        r0, c0 = max(int(b[:, 1].min()) - 1, 0), max(int(b[:, 2].min()) - 1, 0)
        r1, c1 = min(int(b[:, 3].max()) + 1, h), min(int(b[:, 4].max()) + 1, w)
        region = (slice(r0, r1), slice(c0, c1))
        gids = b[:, 0]
        lab = _compact(np.asarray(labels[region]), gids)
        inten = None if intensity is None else np.asarray(intensity[region])
        mask = None if analysis_mask is None else np.asarray(analysis_mask[region], bool)
        t = measure_objects(
            lab, pixel_size, intensity=inten, analysis_mask=mask,
            instance_classes=_class_subset(keys, vals, gids) if keys.size else None,
            origin=(r0, c0), image_shape=(h, w), **kw)
        t["label"] = gids[t["label"].to_numpy() - 1]
        tables.append(t)
        del lab, inten, mask
    table = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    table = table.sort_values("label", kind="stable").reset_index(drop=True)
    return _finish(table, analysis_mask, h, w, intensity is not None, template=tables[0])


def _finish(table, analysis_mask, h, w, has_intensity, template=None) -> pd.DataFrame:
    """Whole-image ``attrs`` (analysed area over the whole mask) on the assembled table."""
    attrs = dict((template if template is not None else table).attrs)
    if analysis_mask is None:
        area = h * w
    else:
        area = sum(int(np.count_nonzero(np.asarray(analysis_mask[r0:r1, c0:c1])))
                   for r0, r1, c0, c1 in _blocks(h, w, BLOCK))
    attrs.update(image_shape=[h, w], analysed_area_px=int(area), has_intensity=has_intensity)
    table.attrs = attrs
    return table
