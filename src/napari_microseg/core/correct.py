"""Correct instance labels: merge, split, delete, fill holes, remove small, renumber.

Pure numpy / scikit-image. No function mutates its input: each returns a
:class:`Change` holding the pixels to write (``index``, ``values``) and the
``{instance_id: class_id}`` mapping afterwards, so a GUI can write the pixels
through an undoable setter (napari's ``Labels.data_setitem``) and a script
through :func:`apply_change`.

Classes follow the pixels: merged and deleted objects lose their entry, split
parts inherit the class of the object they came from, renumbering remaps the
keys. :class:`ClassStates` remembers the classes of every pixel state seen
(keyed by :func:`fingerprint`) so that undoing a pixel edit can bring the
classes of that state back.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line as draw_line
from skimage.segmentation import relabel_sequential, watershed

from .errors import LabelsError

ELEVATIONS = ("distance", "intensity", "inverted intensity")
_EIGHT = np.ones((3, 3), bool)


@dataclass
class Change:
    """A correction, computed but not yet applied.

    Parameters
    ----------
    index : tuple of ndarray
        Pixels that change (``np.nonzero`` style); empty when nothing changes.
    values : ndarray
        Their new values, in the labels' dtype.
    instance_classes : dict
        ``{instance_id: class_id}`` after the change.
    mapping : dict
        ``{old_id: new_id}`` for ids that were renamed, merged (into the target)
        or removed (``0``).
    created : list of int
        Ids that did not exist before (split parts).
    message : str
        One line for the user saying what was done.
    """

    index: tuple
    values: np.ndarray
    instance_classes: dict
    mapping: dict = field(default_factory=dict)
    created: list = field(default_factory=list)
    message: str = ""

    @property
    def n_pixels(self) -> int:
        """How many pixels change."""
        return int(self.values.size)


def _change(labels: np.ndarray, new: np.ndarray, classes: dict, **kw) -> Change:
    index = np.nonzero(labels != new)
    return Change(index, new[index].astype(labels.dtype, copy=False), classes, **kw)


def _check_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise LabelsError(f"Labels must be integers, got {labels.dtype}.")
    return labels


def _present(labels: np.ndarray, ids: Iterable[int]) -> list[int]:
    """The positive ``ids`` that occur in ``labels``, sorted and unique."""
    want = np.unique(np.asarray(list(ids), dtype=np.int64))
    want = want[want > 0]
    return [int(i) for i in want[np.isin(want, labels)]] if want.size else []


#: Elements per bincount call in :func:`id_counts` (a 2 MB index buffer, not one as large as the image).
_COUNT_CHUNK = 1 << 18


def id_counts(labels: np.ndarray) -> np.ndarray | None:
    """Pixel count of every id ``0 .. labels.max()``, or ``None`` when a count table would not pay.

    Counted in chunks: ``np.bincount`` casts its input to 64-bit, and one cast of a
    whole 2048² int32 image is a fresh 32 MB buffer, which costs page faults at
    every call (50-90 ms on the GUI thread instead of about 10).
    """
    labels = np.asarray(labels)
    if labels.size == 0 or labels.dtype.kind not in "ui":
        return None
    top = int(labels.max())
    if int(labels.min()) < 0 or top > 4 * labels.size + 65536:
        return None
    flat = labels.reshape(-1)
    counts = np.zeros(top + 1, np.int64)
    for start in range(0, flat.size, _COUNT_CHUNK):
        counts += np.bincount(flat[start : start + _COUNT_CHUNK], minlength=top + 1)
    return counts


def id_areas(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive ids present in ``labels`` and their pixel counts (int64, ascending ids)."""
    if labels.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    counts = id_counts(labels)
    if counts is not None:
        ids = np.flatnonzero(counts)
        ids = ids[ids > 0]
        return ids.astype(np.int64), counts[ids].astype(np.int64)
    ids, counts = np.unique(labels, return_counts=True)
    keep = ids > 0
    return ids[keep].astype(np.int64), counts[keep].astype(np.int64)


def _new_ids(labels: np.ndarray, n: int, start: int | None = None) -> list[int]:
    first = (int(labels.max()) if labels.size else 0) + 1 if start is None else start
    last = first + n - 1
    if n and labels.dtype.kind in "iu" and last > np.iinfo(labels.dtype).max:
        raise LabelsError(f"Id {last} does not fit in {labels.dtype}; renumber or widen the layer.")
    return list(range(first, last + 1))


def ids_at(labels, points) -> list[int]:
    """Ids under ``(row, col)`` points (rounded), in click order, without 0 or repeats."""
    labels = _check_labels(labels)
    out: list[int] = []
    for r, c in np.round(np.asarray(points, dtype=float).reshape(-1, 2)).astype(int):
        if 0 <= r < labels.shape[0] and 0 <= c < labels.shape[1]:
            v = int(labels[r, c])
            if v and v not in out:
                out.append(v)
    return out


def merge(labels, ids: Iterable[int], instance_classes: Mapping) -> Change:
    """Merge objects ``ids`` into the smallest of them.

    The result keeps the smallest id's class, or if it has none the class of
    the largest classified member.
    """
    labels = _check_labels(labels)
    ids = _present(labels, ids)
    if len(ids) < 2:
        raise LabelsError(f"Select at least two objects to merge (got {ids or 'none'}).")
    target, others = ids[0], ids[1:]
    new = labels.copy()
    new[np.isin(labels, others)] = target
    classes = {int(k): int(v) for k, v in instance_classes.items() if int(k) not in others}
    if not classes.get(target):
        all_ids, counts = id_areas(labels)
        area = dict(zip(all_ids.tolist(), counts.tolist(), strict=True))
        ranked = sorted((i for i in others if instance_classes.get(i)), key=lambda i: -area[i])
        if ranked:
            classes[target] = int(instance_classes[ranked[0]])
    return _change(labels, new, classes, mapping=dict.fromkeys(others, target),
                   message=f"Merged {', '.join(map(str, ids))} into {target}.")


def delete(labels, ids: Iterable[int], instance_classes: Mapping) -> Change:
    """Erase objects ``ids`` (set to background) and drop their classes."""
    labels = _check_labels(labels)
    ids = _present(labels, ids)
    if not ids:
        raise LabelsError("Select an object to delete.")
    new = np.where(np.isin(labels, ids), 0, labels).astype(labels.dtype)
    classes = {int(k): int(v) for k, v in instance_classes.items() if int(k) not in ids}
    return _change(labels, new, classes, mapping=dict.fromkeys(ids, 0),
                   message=f"Deleted {', '.join(map(str, ids))}.")


def set_class(instance_classes: Mapping, ids: Iterable[int], class_id: int) -> dict:
    """``instance_classes`` with ``ids`` set to ``class_id`` (0 = unclassified)."""
    out = {int(k): int(v) for k, v in instance_classes.items()}
    for i in ids:
        if int(class_id):
            out[int(i)] = int(class_id)
        else:
            out.pop(int(i), None)
    return out


def rasterize_polyline(shape: tuple[int, int], vertices, closed: bool = False) -> np.ndarray:
    """A 4-connected one-pixel line through ``(row, col)`` vertices, as a mask.

    A 4-connected line separates 8-connected regions, so objects (8-connected)
    cannot leak across a diagonal step.
    """
    v = np.round(np.asarray(vertices, dtype=float).reshape(-1, 2)).astype(np.int64)
    if closed and len(v) > 2:
        v = np.vstack([v, v[:1]])
    rr, cc = [v[:1, 0]], [v[:1, 1]]
    for (r0, c0), (r1, c1) in zip(v[:-1], v[1:], strict=True):
        r, c = draw_line(int(r0), int(c0), int(r1), int(c1))
        diag = (np.diff(r) != 0) & (np.diff(c) != 0)
        rr += [r, r[:-1][diag]]
        cc += [c, c[1:][diag]]
    rr, cc = np.concatenate(rr), np.concatenate(cc)
    inside = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    mask = np.zeros(shape, bool)
    mask[rr[inside], cc[inside]] = True
    return mask


def _bboxes(labels: np.ndarray, ids: Sequence[int]) -> dict[int, tuple[slice, slice]]:
    """Bounding boxes of ``ids`` (present ones), in one pass when the ids are small."""
    if len(ids) > 4 and labels.min() >= 0 and int(labels.max()) <= 4 * labels.size + 65536:
        boxes = ndi.find_objects(labels)
        return {i: boxes[i - 1] for i in ids if i - 1 < len(boxes) and boxes[i - 1] is not None}
    out = {}
    for i in ids:
        rows, cols = np.nonzero(labels == i)
        if rows.size:
            out[i] = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    return out


def _relabel_parts(new, labels, i, sl, obj, parts, n_parts, instance_classes, classes, created,
                   keep=()):
    """Write parts of object ``i`` into ``new``: the largest part and the parts in ``keep``
    (and unlabelled object pixels) keep id ``i``, the other parts get fresh ids."""
    sizes = np.bincount(parts[obj], minlength=n_parts + 1)
    sizes[[0, *keep]] = 0
    order = [int(k) for k in np.argsort(-sizes, kind="stable") if sizes[k] > 0]
    fresh = _new_ids(labels, max(0, len(order) - 1), start=max([int(labels.max()), *created]) + 1)
    lut = np.full(n_parts + 1, i, dtype=np.int64)
    lut[order[1:]] = fresh
    new[sl][obj] = lut[parts[obj]]
    created += fresh
    if instance_classes.get(i):
        classes.update(dict.fromkeys(fresh, int(instance_classes[i])))
    return fresh


def split_along_line(labels, lines: Sequence, instance_classes: Mapping, *,
                     closed: bool | Sequence[bool] = False, ids: Iterable[int] | None = None) -> Change:
    """Cut objects along drawn polylines.

    Parameters
    ----------
    labels : ndarray of int
        Instance labels (not modified).
    lines : sequence of (n, 2) arrays
        Polylines in ``(row, col)`` pixels; together they form one cut.
    instance_classes : dict
        ``{instance_id: class_id}``; new parts inherit their object's class.
    closed : bool or sequence of bool
        Close a line into a polygon (cuts its inside out as a new part).
    ids : iterable of int, optional
        Only cut these objects; default every object the lines cross.

    Returns
    -------
    Change
        Each cut object: its largest part keeps the id, the other parts get new
        ids; pixels under the line join the nearest part. Parts that were
        already disconnected before the cut stay as they were.
    """
    labels = _check_labels(labels)
    closed = [closed] * len(lines) if isinstance(closed, bool) else list(closed)
    barrier = np.zeros(labels.shape, bool)
    for vertices, shut in zip(lines, closed, strict=True):
        barrier |= rasterize_polyline(labels.shape, vertices, shut)
    crossed = _present(labels, np.unique(labels[barrier]))
    if ids is not None:
        crossed = [i for i in crossed if i in set(int(j) for j in ids)]
    new, classes, created, cut = labels.copy(), dict(instance_classes), [], []
    for i, sl in _bboxes(labels, crossed).items():
        obj = labels[sl] == i
        original, _ = ndi.label(obj, _EIGHT)
        parts, n = ndi.label(obj & ~barrier[sl], _EIGHT)
        # A cut is an original (8-connected) component now in two or more parts.
        pairs = np.unique(np.stack([original[parts > 0], parts[parts > 0]]), axis=1)
        comp, n_parts = np.unique(pairs[0], return_counts=True)
        split_comps = comp[n_parts >= 2]
        if not split_comps.size:
            continue
        keep = pairs[1][~np.isin(pairs[0], split_comps)].tolist()
        # Line pixels join the nearest part.
        _, (ri, ci) = ndi.distance_transform_edt(parts == 0, return_indices=True)
        parts = np.where(obj, parts[ri, ci], 0)
        _relabel_parts(new, labels, i, sl, obj, parts, n, instance_classes, classes, created, keep)
        cut.append(i)
    if not cut:
        raise LabelsError("The line does not cut any object in two: draw it right across the object.")
    return _change(labels, new, {int(k): int(v) for k, v in classes.items()}, created=created,
                   message=f"Cut {', '.join(map(str, cut))}; new objects {', '.join(map(str, created))}.")


def split_by_seeds(labels, seeds, instance_classes: Mapping, *, elevation: str = "distance",
                   image=None, compactness: float | None = None) -> Change:
    """Split objects by a seeded watershed, one part per seed.

    Parameters
    ----------
    labels : ndarray of int
        Instance labels (not modified).
    seeds : (n, 2) array
        ``(row, col)`` seed points; an object with two or more seeds is split.
    instance_classes : dict
        ``{instance_id: class_id}``; new parts inherit their object's class.
    elevation : {"distance", "intensity", "inverted intensity"}
        Flood the inverted distance to the object's edge (splits at necks), the
        image (dark parts, bright boundaries) or the inverted image.
    image : ndarray, optional
        2-D image of the labels' shape, needed for the intensity elevations.
    compactness : float, optional
        Compact watershed weight (skimage); default 0.1 for ``"distance"`` (a
        seed clicked off-centre or a flat plateau then still gets its share;
        10 px of travel cost as much as 1 px of depth), 0 for intensities.
    """
    labels = _check_labels(labels)
    if elevation not in ELEVATIONS:
        raise LabelsError(f"Unknown elevation {elevation!r}; use one of {ELEVATIONS}.")
    if elevation != "distance":
        if image is None or np.shape(image) != labels.shape:
            raise LabelsError("Intensity watershed needs a 2-D image of the same size as the labels.")
        image = np.asarray(image, dtype=float)
    if compactness is None:
        compactness = 0.1 if elevation == "distance" else 0.0
    pts = np.unique(np.round(np.asarray(seeds, dtype=float).reshape(-1, 2)).astype(np.int64), axis=0)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < labels.shape[0]) & (pts[:, 1] >= 0) & (pts[:, 1] < labels.shape[1])
    pts = pts[ok]
    under = labels[pts[:, 0], pts[:, 1]] if len(pts) else np.zeros(0, labels.dtype)
    targets = [int(i) for i in np.unique(under) if i > 0 and np.count_nonzero(under == i) >= 2]
    if not targets:
        raise LabelsError("Place two or more seeds inside the object to split.")
    new, classes, created = labels.copy(), dict(instance_classes), []
    for i, sl in _bboxes(labels, targets).items():
        obj = labels[sl] == i
        markers = np.zeros(obj.shape, np.int32)
        mine = pts[under == i]
        markers[mine[:, 0] - sl[0].start, mine[:, 1] - sl[1].start] = np.arange(1, len(mine) + 1)
        if elevation == "distance":
            elev = -ndi.distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
        else:
            elev = image[sl] if elevation == "intensity" else -image[sl]
        parts = watershed(elev, markers, mask=obj, compactness=compactness)
        _relabel_parts(new, labels, i, sl, obj, parts, len(mine), instance_classes, classes, created)
    return _change(labels, new, {int(k): int(v) for k, v in classes.items()}, created=created,
                   message=f"Split {', '.join(map(str, targets))}; new objects "
                           f"{', '.join(map(str, created))}.")


def fill_holes(labels, instance_classes: Mapping, ids: Iterable[int] | None = None, *,
               max_hole_area: float | None = None) -> Change:
    """Fill background holes inside objects ``ids`` (default all).

    A hole is background enclosed by the object; holes that contain another
    object are left alone (they are probably nested defects), as are holes
    larger than ``max_hole_area`` pixels.
    """
    labels = _check_labels(labels)
    ids = _present(labels, id_areas(labels)[0] if ids is None else ids)
    new = labels.copy()
    filled = []
    for i, sl in _bboxes(labels, ids).items():
        obj = labels[sl] == i
        holes, n = ndi.label(ndi.binary_fill_holes(obj) & ~obj)
        if not n:
            continue
        sizes = np.bincount(holes.ravel(), minlength=n + 1)
        occupied = np.bincount(holes.ravel(), weights=(labels[sl] != 0).ravel(), minlength=n + 1) > 0
        fill = ~occupied & (sizes <= (np.inf if max_hole_area is None else max_hole_area))
        fill[0] = False
        if fill.any():
            new[sl][fill[holes]] = i
            filled.append(i)
    msg = f"Filled holes in {', '.join(map(str, filled))}." if filled else "No holes to fill."
    return _change(labels, new, dict(instance_classes), message=msg)


def remove_small(labels, instance_classes: Mapping, min_area: float, *, pixel_area: float = 1.0) -> Change:
    """Erase objects whose area (pixels x ``pixel_area``) is below ``min_area``."""
    labels = _check_labels(labels)
    ids, counts = id_areas(labels)
    small = ids[counts * float(pixel_area) < float(min_area)].tolist()
    if not small:
        return _change(labels, labels, dict(instance_classes), message="No object is that small.")
    change = delete(labels, small, instance_classes)
    change.message = f"Removed {len(small)} object(s) under {min_area:g}."
    return change


def renumber(labels, instance_classes: Mapping) -> Change:
    """Renumber ids as 1..n in order of the old ids; classes follow."""
    labels = _check_labels(labels)
    new, fw, _ = relabel_sequential(labels)
    ids = id_areas(labels)[0].tolist()
    mapping, present = {i: int(fw[i]) for i in ids if int(fw[i]) != i}, set(ids)
    classes = {int(fw[int(k)]): int(v) for k, v in instance_classes.items() if int(k) in present}
    msg = f"Renumbered {len(mapping)} object(s) as 1..{len(ids)}." if mapping else "Ids are already 1..n."
    return _change(labels, np.asarray(new), classes, mapping=mapping, message=msg)


def apply_change(labels: np.ndarray, change: Change) -> np.ndarray:
    """Write ``change`` into ``labels`` in place and return it."""
    labels[change.index] = change.values
    return labels


def fingerprint(labels) -> bytes:
    """A short digest of which ids a labels image holds and how many pixels each has."""
    return areas_fingerprint(*id_areas(np.asarray(labels)))


def areas_fingerprint(ids: np.ndarray, counts: np.ndarray) -> bytes:
    """:func:`fingerprint` from already counted positive ``ids`` and their pixel ``counts``."""
    h = hashlib.blake2b(digest_size=16)
    h.update(ids.astype("<i8").tobytes())
    h.update(counts.astype("<i8").tobytes())
    return h.digest()


class ClassStates:
    """Instance classes remembered per pixel state (see :func:`fingerprint`).

    Pixel undo (napari's history) cannot carry classes; after an undo or redo
    the state's fingerprint finds the classes it had.

    Parameters
    ----------
    limit : int
        How many states to keep (oldest dropped first).
    """

    def __init__(self, limit: int = 256):
        self.limit = int(limit)
        self._states: OrderedDict[bytes, dict] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def remember(self, key: bytes, instance_classes: Mapping) -> None:
        """Store ``instance_classes`` for the state ``key``."""
        self._states[key] = {int(k): int(v) for k, v in instance_classes.items()}
        self._states.move_to_end(key)
        while len(self._states) > self.limit:
            self._states.popitem(last=False)

    def recall(self, key: bytes) -> dict | None:
        """The classes stored for ``key``, or ``None``."""
        got = self._states.get(key)
        return None if got is None else dict(got)
