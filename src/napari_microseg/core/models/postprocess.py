"""From class probabilities to labels layers, cheap enough to re-run on every slider move.

:func:`postprocess` chains the steps with a :class:`PostprocessSettings`:

1. :func:`semantic_labels` -- each pixel gets the most probable class among
   those whose probability reaches their threshold (0 = background);
2. per class, :func:`clean_mask` -- morphological opening and closing,
   boundary smoothing, hole filling;
3. per class, :func:`instance_labels` -- connected components, or a
   distance-transform watershed that splits touching objects;
4. :func:`remove_small` -- objects below a minimum area in px or nm².

:func:`instance_classes_from_semantic` gives the class of each instance of any
labels image (e.g. from an instance model) by majority vote of a semantic map.
None of this re-runs the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .. import bounds
from ..calibration import PixelSize
from ..errors import CalibrationError, MicrosegError

EIGHT = np.ones((3, 3), bool)
INSTANCE_METHODS = ("cc", "watershed")
SIZE_UNITS = ("px", "nm2")


def _thresholds(thresholds, k: int, class_ids: Sequence[int]) -> np.ndarray:
    if isinstance(thresholds, Mapping):
        t = [float(thresholds.get(c, thresholds.get(str(c), 0.5))) for c in class_ids]
    elif np.ndim(thresholds) == 0:
        t = [float(thresholds)] * k
    else:
        t = [float(v) for v in thresholds]
    if len(t) != k:
        raise MicrosegError(f"Got {len(t)} thresholds for {k} classes.")
    return np.asarray(t, np.float32)


def semantic_labels(prob: np.ndarray, thresholds=0.5, class_ids=None) -> np.ndarray:
    """Class id of every pixel: the most probable class among those above threshold.

    Parameters
    ----------
    prob : ndarray (K, H, W)
        Class probabilities.
    thresholds : float, sequence of K floats, or {class_id: float}
        Minimum probability of each class.
    class_ids : sequence of K int, optional
        Id written for each channel (default ``1..K``).

    Returns
    -------
    ndarray (H, W) of uint8 (uint16, int32 for large ids)
        Class ids, 0 where no class reaches its threshold.
    """
    prob = np.asarray(prob)
    k = prob.shape[0]
    ids = list(range(1, k + 1)) if class_ids is None else [int(c) for c in class_ids]
    thr = _thresholds(thresholds, k, ids)
    out = np.zeros(prob.shape[1:], _class_dtype(max(ids, default=0)))
    if k == 1:
        out[prob[0] >= thr[0]] = ids[0]
        return out
    best = np.full(prob.shape[1:], -1.0, np.float32)
    for c in range(k):
        p = prob[c]
        take = p >= thr[c]
        take &= p > best
        out[take] = ids[c]
        best[take] = p[take]
    return out


def _class_dtype(top: int) -> np.dtype:
    for dt in (np.uint8, np.uint16):
        if top <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int32)


def _areas(labels: np.ndarray, n: int, rows: int = 512) -> np.ndarray:
    """Pixel count of every id ``0..n-1``, counted a block of rows at a time."""
    area = np.zeros(n, np.int64)
    for r in range(0, labels.shape[0], rows):
        area += np.bincount(labels[r : r + rows].ravel(), minlength=n)[:n]
    return area


def _relabel_inplace(labels: np.ndarray, lut: np.ndarray, rows: int = 512) -> np.ndarray:
    """``lut[labels]`` written back into ``labels`` a block of rows at a time (bounded memory)."""
    for r in range(0, labels.shape[0], rows):
        labels[r : r + rows] = lut[labels[r : r + rows]]
    return labels


def min_area_px(min_size: float, unit: str = "px", pixel_size: PixelSize | None = None) -> float:
    """A minimum object area in pixels from a value in px or nm²."""
    if unit not in SIZE_UNITS:
        raise MicrosegError(f"Minimum size unit {unit!r} is not one of {', '.join(SIZE_UNITS)}.")
    if unit == "px" or not min_size:
        return float(min_size)
    if pixel_size is None or not pixel_size.calibrated:
        raise CalibrationError("A minimum size in nm² needs a calibrated image (pixel size in nm).")
    return float(min_size) / pixel_size.area_nm2


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


#: From this radius on, disk erosion/dilation use a distance transform (cost independent of r).
EDT_RADIUS = 6


def erode_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by the disk ``x² + y² <= r²``, outside the image counting as background.

    Equal to ``ndi.binary_erosion(mask, _disk(radius))``; from :data:`EDT_RADIUS`
    on it is computed as "farther than ``r`` from any background pixel", in
    time independent of ``r``.
    """
    r = int(radius)
    if r < EDT_RADIUS:
        return ndi.binary_erosion(mask, _disk(r))
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return dist > r


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the disk ``x² + y² <= r²`` (equal to ``ndi.binary_dilation``)."""
    r = int(radius)
    if r < EDT_RADIUS:
        return ndi.binary_dilation(mask, _disk(r))
    if not mask.any():
        return np.zeros(mask.shape, bool)
    return ndi.distance_transform_edt(~mask) <= r


def clean_mask(
    mask: np.ndarray,
    *,
    open_radius: int = 0,
    close_radius: int = 0,
    smooth_sigma: float = 0.0,
    fill_holes: bool = False,
) -> np.ndarray:
    """Opening, closing, boundary smoothing and hole filling of a binary mask (in that order)."""
    m = np.asarray(mask, bool)
    if open_radius > 0:
        m = dilate_disk(erode_disk(m, open_radius), open_radius)
    if close_radius > 0:
        # pad so closing does not glue objects to the image border
        r = int(close_radius)
        m = erode_disk(dilate_disk(np.pad(m, r), r), r)[r:-r, r:-r]
    if smooth_sigma > 0:
        m = ndi.gaussian_filter(m.astype(np.float32), smooth_sigma) > 0.5
    if fill_holes:
        m = ndi.binary_fill_holes(m)
    return m


def watershed_split(mask: np.ndarray, min_distance: int = 5) -> np.ndarray:
    """Split touching objects of a mask by a watershed on its distance transform.

    Parameters
    ----------
    mask : ndarray of bool
    min_distance : int
        Smallest distance in px between two object centres (distance-map maxima).

    Returns
    -------
    ndarray of int32
        Instance labels ``1..n``.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    mask = np.asarray(mask, bool)
    cc, n = ndi.label(mask, EIGHT)
    if n == 0:
        return cc.astype(np.int32)
    dist = ndi.distance_transform_edt(mask)
    coords = peak_local_max(dist, min_distance=max(1, int(min_distance)), labels=cc,
                            exclude_border=False)
    peaks = np.zeros(mask.shape, bool)
    peaks[tuple(coords.T)] = True
    markers, n_markers = ndi.label(peaks, EIGHT)  # a plateau of maxima is one marker
    unmarked = np.setdiff1d(np.arange(1, n + 1), np.unique(cc[peaks]))
    if unmarked.size:  # components without a maximum keep their own marker
        lut = np.zeros(n + 1, np.int32)
        lut[unmarked] = np.arange(n_markers + 1, n_markers + 1 + unmarked.size)
        extra = lut[cc]
        markers = np.where(markers > 0, markers, extra)
    return watershed(-dist, markers, mask=mask).astype(np.int32)


def instance_labels(mask: np.ndarray, method: str = "cc", *, min_distance: int = 5) -> np.ndarray:
    """Instance labels of a binary mask: ``"cc"`` (8-connected components) or ``"watershed"``."""
    if method == "cc":
        # ndi.label already returns int32 here: no second full-size copy
        return ndi.label(np.asarray(mask, bool), EIGHT)[0].astype(np.int32, copy=False)
    if method == "watershed":
        return watershed_split(mask, min_distance)
    raise MicrosegError(f"Instance method {method!r} is not one of {', '.join(INSTANCE_METHODS)}.")


def remove_small(labels: np.ndarray, min_px: float) -> np.ndarray:
    """Labels with objects smaller than ``min_px`` pixels removed, renumbered ``1..n``."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.max() == 0:
        return labels.astype(np.int32)
    area = _areas(labels, int(labels.max()) + 1)
    keep = area >= max(min_px, 1)
    keep[0] = False
    lut = np.zeros(area.size, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    return _relabel_inplace(labels.astype(np.int32), lut)


def instance_classes_from_semantic(labels: np.ndarray, semantic: np.ndarray) -> dict[int, int]:
    """``{instance id: class id}`` by majority of the non-background classes under each instance.

    Instances lying wholly on background get no class.
    """
    labels, semantic = np.asarray(labels), np.asarray(semantic)
    fg = (labels > 0) & (semantic > 0)
    if not fg.any():
        return {}
    lab = labels[fg].astype(np.int64)
    cls = semantic[fg].astype(np.int64)
    ncls = int(cls.max()) + 1
    counts = np.bincount(lab * ncls + cls, minlength=(int(lab.max()) + 1) * ncls)
    counts = counts.reshape(-1, ncls)
    present = np.nonzero(counts.sum(axis=1))[0]
    return {int(i): int(np.argmax(counts[i])) for i in present}


@dataclass
class PostprocessSettings:
    """Settings of :func:`postprocess`.

    Attributes
    ----------
    thresholds : float, sequence or dict
        Per-class probability thresholds (see :func:`semantic_labels`).
    min_size : float
        Minimum object area; 0 keeps everything.
    min_size_unit : str
        ``"px"`` or ``"nm2"`` (needs a calibrated image).
    open_radius, close_radius : int
        Radii (px) of the morphological opening and closing; 0 skips.
    smooth_sigma : float
        Gaussian sigma (px) of boundary smoothing; 0 skips.
    fill_holes : bool
    instances : str
        ``"cc"`` or ``"watershed"``.
    min_distance : int
        Watershed: smallest distance between object centres (px).
    """

    thresholds: object = 0.5
    min_size: float = 0.0
    min_size_unit: str = "px"
    open_radius: int = 0
    close_radius: int = 0
    smooth_sigma: float = 0.0
    fill_holes: bool = False
    instances: str = "cc"
    min_distance: int = 5

    def validate(self, where: str = "postprocess", image_shape=None, names=None) -> None:
        """Raise :class:`~napari_microseg.core.bounds.SettingsError` when a field is unusable.

        The one check of post-processing settings: the dock, ``microseg predict``,
        recipes and :func:`postprocess` itself all call it.

        Parameters
        ----------
        where : str
            Prefix of field names in messages (``"postprocess"`` gives
            ``postprocess.smooth_sigma``); empty for bare field names.
        image_shape : tuple of int, optional
            ``(H, W, ...)`` of the image: radii, sigma and the watershed distance
            must then also be less than half its shorter side.
        names : dict, optional
            Display name of some fields (e.g. ``{"smooth_sigma": "--smooth"}``).

        Raises
        ------
        SettingsError
            Naming the field, its value and the allowed range.
        """
        def name(f):
            if names and f in names:
                return names[f]
            return f"{where}.{f}" if where else f

        t = self.thresholds
        values = list(t.values()) if isinstance(t, Mapping) else (
            [t] if isinstance(t, (str, bytes)) or np.ndim(t) == 0 else (
                list(t) if isinstance(t, (list, tuple)) else list(np.ravel(t))))
        if not values:
            raise bounds.SettingsError(f"{name('thresholds')} is empty; give probabilities in [0, 1].")
        for v in values:
            bounds.check_real(name("thresholds"), v.item() if isinstance(v, np.generic) else v,
                              0.0, 1.0, "probability")
        bounds.check_real(name("min_size"), self.min_size, 0.0, None,
                          "nm²" if self.min_size_unit == "nm2" else "px")
        bounds.check_choice(name("min_size_unit"), self.min_size_unit, SIZE_UNITS)
        for f in ("open_radius", "close_radius"):
            bounds.check_int(name(f), getattr(self, f), 0, bounds.RADIUS_MAX, "px")
        bounds.check_real(name("smooth_sigma"), self.smooth_sigma, 0.0, bounds.SIGMA_MAX, "px")
        bounds.check_bool(name("fill_holes"), self.fill_holes)
        bounds.check_choice(name("instances"), self.instances, INSTANCE_METHODS)
        bounds.check_int(name("min_distance"), self.min_distance, *bounds.MIN_DISTANCE_RANGE, "px")
        for f in ("open_radius", "close_radius", "smooth_sigma"):
            bounds.check_fits_image(name(f), getattr(self, f), image_shape)
        if self.instances == "watershed":
            bounds.check_fits_image(name("min_distance"), self.min_distance, image_shape)

    def to_dict(self) -> dict:
        """JSON-ready record for provenance."""
        t = self.thresholds
        t = {str(k): float(v) for k, v in t.items()} if isinstance(t, Mapping) else (
            float(t) if np.ndim(t) == 0 else [float(v) for v in t])
        return {**self.__dict__, "thresholds": t}


@dataclass
class PostprocessResult:
    """Outputs of :func:`postprocess`: semantic class map, instance labels and their classes."""

    semantic: np.ndarray
    labels: np.ndarray
    instance_classes: dict = field(default_factory=dict)


def postprocess(
    prob: np.ndarray,
    class_ids=None,
    settings: PostprocessSettings | None = None,
    pixel_size: PixelSize | None = None,
) -> PostprocessResult:
    """Probabilities ``(K, H, W)`` to a cleaned semantic map and classified instances.

    Raises
    ------
    SettingsError
        When ``settings`` fail :meth:`PostprocessSettings.validate` for this image.
    """
    s = settings or PostprocessSettings()
    s.validate(image_shape=np.shape(prob)[1:])
    k = np.asarray(prob).shape[0]
    ids = list(range(1, k + 1)) if class_ids is None else [int(c) for c in class_ids]
    min_px = min_area_px(s.min_size, s.min_size_unit, pixel_size)
    if s.instances not in INSTANCE_METHODS:
        raise MicrosegError(f"Instance method {s.instances!r} is not one of {', '.join(INSTANCE_METHODS)}.")
    raw = semantic_labels(prob, s.thresholds, ids)
    cleaning = s.open_radius or s.close_radius or s.smooth_sigma or s.fill_holes
    sem = np.zeros_like(raw) if cleaning else raw
    labels = None
    classes_of = [0]
    for cid in ids:
        own = raw == cid
        if not own.any():
            continue
        m = own
        if cleaning:
            m = clean_mask(own, open_radius=s.open_radius, close_radius=s.close_radius,
                           smooth_sigma=s.smooth_sigma, fill_holes=s.fill_holes)
            m &= own | ((raw == 0) & (sem == 0))
            sem[m] = cid
        del own
        inst = instance_labels(m, s.instances, min_distance=s.min_distance)
        n = int(inst.max())
        if labels is None:
            labels = inst
        elif n:
            del m
            fg = inst > 0
            np.add(inst, len(classes_of) - 1, out=inst, where=fg)
            np.copyto(labels, inst, where=fg)
            del fg
        del inst
        classes_of.extend([cid] * n)
    if labels is None:
        labels = np.zeros(raw.shape, np.int32)
    area = _areas(labels, len(classes_of))
    keep = area >= max(min_px, 1)
    keep[0] = False
    lut = np.zeros(area.size, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    labels = _relabel_inplace(labels, lut)
    inst_classes = {int(lut[i]): classes_of[i] for i in np.nonzero(keep)[0]}
    return PostprocessResult(semantic=sem, labels=labels, instance_classes=inst_classes)
