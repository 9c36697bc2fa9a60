"""Non-learned prompt backends: a classical baseline and a ground-truth oracle.

:class:`OtsuFloodBackend` is the one-click baseline that the promptable-segmentation
issue quotes (about 0.15 mean IoU after one click on the creme 316L loops): an Otsu
threshold in a crop around the prompt, then the connected component under the
click. Any learned backend has to beat it.

:class:`OracleBackend` returns the true instance under the prompt. It exists to test
the simulated-user evaluation (:mod:`.evaluation`), which must score it IoU 1.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from .base import Prediction, PromptBackend, Prompts

#: 8-connectivity for connected components.
_EIGHT = np.ones((3, 3), dtype=bool)


def _component_at(mask: np.ndarray, rc: tuple[int, int]) -> np.ndarray:
    """The 8-connected component of ``mask`` containing pixel ``rc`` (empty if off)."""
    lab, _ = ndi.label(mask, structure=_EIGHT)
    k = lab[rc]
    return lab == k if k else np.zeros_like(mask)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask`` (empty mask if none)."""
    lab, n = ndi.label(mask, structure=_EIGHT)
    if n == 0:
        return np.zeros_like(mask)
    return lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)


class OtsuFloodBackend(PromptBackend):
    """Otsu threshold around the prompt, then flood from the click.

    For a prediction the backend takes a crop around the prompts (the clicks'
    extent plus ``crop / 2`` px on each side; with a box, plus the box's longer
    side, at least ``crop / 2``, on each side), smooths
    it with a Gaussian of ``sigma`` px and splits it with Otsu's threshold. The
    object class is the side of the threshold the first positive click falls
    on (dark objects on a bright background are the common case, bright ones
    work too); with a box, it is the class concentrated inside the box rather
    than in the rest of the crop. The mask is then

    * the 8-connected component of the object class under each positive click
      (a positive click on a background-class pixel adds a disc of 3 px); with
      a box, the largest object-class component inside the box, plus those,
      and nothing outside the box;
    * minus every component containing a negative click; where a negative click
      shares a component with a positive click (or with the box's component,
      anchored at its innermost pixel), the component is split between them
      (pixels nearer the negative click than to every anchor are dropped).

    It keeps no state between clicks and ignores :attr:`Prompts.mask_logits`.
    When editing an existing object (:attr:`Prompts.start_mask`), that mask is
    the start: positive clicks add their components, a negative click on a
    background-class pixel of the mask cuts that overshoot away, and one on an
    object-class pixel splits the mask along its distance-transform watershed
    between the click and the mask's other cores (see :func:`edit_start_mask`);
    a box outlines the object afresh.

    Parameters
    ----------
    crop : int
        Smallest crop side in pixels (default 64).
    sigma : float
        Gaussian smoothing before thresholding, in pixels (0 disables).
    """

    name = "otsu-flood"

    def __init__(self, crop: int = 64, sigma: float = 1.0):
        self.crop = int(crop)
        self.sigma = float(sigma)
        self._image: np.ndarray | None = None

    def signature(self) -> dict:
        """Backend name and parameters."""
        return {"backend": self.name, "crop": self.crop, "sigma": self.sigma}

    def set_image(self, image: np.ndarray, *, progress=None) -> None:
        """Keep a float copy of ``image`` (2-D)."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D image, got shape {image.shape}")
        self._image = image
        if progress is not None:
            progress(1.0)

    def _window(self, prompts: Prompts) -> tuple[slice, slice]:
        """The crop, clipped to the image, that this prediction looks at."""
        r0, c0, r1, c1 = prompts.bounds()
        if prompts.box is not None:
            br0, bc0, br1, bc1 = prompts.box
            half = max(br1 - br0, bc1 - bc0, self.crop / 2)
        else:
            half = self.crop / 2
        h, w = self._image.shape
        rs = slice(max(0, int(np.floor(r0 - half))), min(h, int(np.ceil(r1 + half)) + 1))
        cs = slice(max(0, int(np.floor(c0 - half))), min(w, int(np.ceil(c1 + half)) + 1))
        return rs, cs

    def predict(self, prompts: Prompts) -> Prediction:
        """Threshold-and-flood mask for ``prompts``; see the class docstring."""
        if self._image is None:
            raise RuntimeError("set_image() must be called before predict()")
        full = np.zeros(self._image.shape, dtype=bool)
        if prompts.empty:
            return Prediction(full, 0.0, None)
        rs, cs = self._window(prompts)
        crop = self._image[rs, cs]
        if self.sigma > 0:
            crop = ndi.gaussian_filter(crop, self.sigma)
        off = np.array([rs.start, cs.start])
        pts = np.rint(prompts.points - off).astype(int)
        pts = np.clip(pts, 0, np.array(crop.shape) - 1)
        pos, neg = pts[prompts.labels == 1], pts[prompts.labels == 0]
        t = threshold_otsu(crop) if np.ptp(crop) > 0 else crop.flat[0]
        dark = crop <= t
        if prompts.start_mask is not None and prompts.box is None:
            start = prompts.start_mask.crop(rs, cs)
            fg = dark if not start.any() or dark[start].mean() >= 0.5 else ~dark
            full[rs, cs] = mask = edit_start_mask(start, fg, pos, neg)
            return Prediction(full, float(mask.any()), full.astype(np.float32))
        box = None
        if prompts.box is not None:
            b = np.rint(prompts.box - np.r_[off, off]).astype(int)
            b = np.clip(b, 0, np.r_[crop.shape, crop.shape] - 1)
            box = (slice(b[0], b[2] + 1), slice(b[1], b[3] + 1))
        if box is not None:
            fg = dark if _inside_excess(dark, box) >= _inside_excess(~dark, box) else ~dark
        elif len(pos):
            fg = dark if dark[tuple(pos[0])] else ~dark
        else:
            fg = dark
        mask = np.zeros_like(fg)
        anchors = list(pos)
        if box is not None:
            inside = np.zeros_like(fg)
            inside[box] = fg[box]
            fg = inside
            mask |= _largest_component(fg)
            if mask.any():
                dist = ndi.distance_transform_edt(mask)
                anchors.append(np.array(np.unravel_index(np.argmax(dist), mask.shape)))
        for p in pos:
            if fg[tuple(p)]:
                mask |= _component_at(fg, tuple(p))
            else:
                mask |= _disc(fg.shape, p, 3)
        mask = _remove_negatives(mask, np.array(anchors).reshape(-1, 2), neg)
        full[rs, cs] = mask
        score = float(mask.any())
        return Prediction(full, score, full.astype(np.float32))


def edit_start_mask(start: np.ndarray, fg: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Change an existing object's mask ``start`` by clicks, with the object class ``fg``.

    Parameters
    ----------
    start : ndarray of bool
        The object being edited (crop frame); not modified.
    fg : ndarray of bool
        Pixels of the object class (e.g. an Otsu split).
    pos, neg : ndarray, shape (k, 2)
        Positive and negative clicks, integer ``(row, col)`` inside the crop.

    Returns
    -------
    ndarray of bool
        ``start`` plus the ``fg`` components under positive clicks, minus, for
        each negative click inside the mask, the connected background-class
        overshoot under it, or (on an object-class pixel) the part of the mask
        that the distance-transform watershed gives to the click rather than to
        the positive clicks and the mask's other cores (maxima of the distance
        to the mask's edge whose inscribed disc does not hold the click). With
        no such core left, the click's whole component goes.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    mask = np.asarray(start, bool).copy()
    for p in pos:
        mask |= _component_at(fg, tuple(p)) if fg[tuple(p)] else _disc(fg.shape, p, 3)
    for q in (tuple(q) for q in neg):
        if not mask[q]:
            continue
        if not fg[q]:
            mask &= ~_component_at(mask & ~fg, q)
            continue
        dist = ndi.distance_transform_edt(mask)
        peaks = peak_local_max(dist, min_distance=2, labels=mask.astype(np.uint8), exclude_border=False)
        anchors = [p for p in peaks if np.hypot(*(p - q)) > dist[tuple(p)]]
        anchors += [p for p in pos if mask[tuple(p)]]
        if not anchors:
            mask &= ~_component_at(mask, q)
            continue
        markers = np.zeros(mask.shape, np.int32)
        for p in anchors:
            markers[tuple(p)] = 1
        markers[q] = 2
        mask &= watershed(-dist, markers, mask=mask) != 2
    return mask


def _inside_excess(fg: np.ndarray, box: tuple[slice, slice]) -> float:
    """Fraction of ``fg`` inside ``box`` minus its fraction in the rest of the crop."""
    inside = fg[box]
    n_out = fg.size - inside.size
    frac_in = inside.mean() if inside.size else 0.0
    frac_out = (fg.sum() - inside.sum()) / n_out if n_out else 0.0
    return float(frac_in - frac_out)


def _disc(shape: tuple[int, int], rc: np.ndarray, radius: float) -> np.ndarray:
    """Boolean disc of ``radius`` px around ``rc``."""
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - rc[0]) ** 2 + (cc - rc[1]) ** 2 <= radius**2


def _remove_negatives(mask: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Drop components under negative clicks; split those shared with anchors ``pos``."""
    if not len(neg) or not mask.any():
        return mask
    lab, _ = ndi.label(mask, structure=_EIGHT)
    pos_ids = {int(lab[tuple(p)]) for p in pos} - {0}
    mask = mask.copy()
    shared = False
    for q in neg:
        k = int(lab[tuple(q)])
        if k == 0:
            continue
        if k in pos_ids:
            shared = True
        else:
            mask[lab == k] = False
    if shared:
        d_neg = _distance_to(mask.shape, neg)
        d_pos = _distance_to(mask.shape, pos)
        mask &= ~(d_neg < d_pos)
        keep = np.zeros_like(mask)
        for p in pos:
            if mask[tuple(p)]:
                keep |= _component_at(mask, tuple(p))
        mask = keep
    return mask


def _distance_to(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest of ``pts``."""
    if not len(pts):
        return np.full(shape, np.inf)
    rr, cc = np.indices(shape)
    d = np.full(shape, np.inf)
    for p in pts:
        d = np.minimum(d, np.hypot(rr - p[0], cc - p[1]))
    return d


class OracleBackend(PromptBackend):
    """Returns the true instance under the prompt (for testing the evaluation).

    The answer is the instance under the first positive click; with no positive
    click (or one on background), the instance covering most of the box. Later
    clicks are ignored, so the oracle is perfect from the first prompt on.

    Parameters
    ----------
    labels : ndarray of int
        True instance labels of the image that :meth:`set_image` will receive
        (0 is background).
    """

    name = "oracle"

    def __init__(self, labels: np.ndarray):
        self.labels = np.asarray(labels)

    def set_image(self, image: np.ndarray, *, progress=None) -> None:
        """Check that ``image`` matches the labels' shape."""
        if np.shape(image)[:2] != self.labels.shape:
            raise ValueError(
                f"image shape {np.shape(image)} does not match labels {self.labels.shape}"
            )
        if progress is not None:
            progress(1.0)

    def predict(self, prompts: Prompts) -> Prediction:
        """Mask of the true instance the prompts point at (empty if none)."""
        h, w = self.labels.shape
        k = 0
        pos = prompts.points[prompts.labels == 1]
        if len(pos):
            r, c = np.clip(np.rint(pos[0]).astype(int), 0, [h - 1, w - 1])
            k = int(self.labels[r, c])
        if k == 0 and prompts.box is not None:
            r0, c0, r1, c1 = np.clip(np.rint(prompts.box).astype(int), 0, [h - 1, w - 1] * 2)
            ids, n = np.unique(self.labels[r0 : r1 + 1, c0 : c1 + 1], return_counts=True)
            n, ids = n[ids > 0], ids[ids > 0]
            if len(ids):
                k = int(ids[np.argmax(n)])
        mask = self.labels == k if k else np.zeros((h, w), dtype=bool)
        return Prediction(mask, 1.0 if k else 0.0, None)
