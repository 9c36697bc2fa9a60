"""Scribble and lasso prompts, and an edge-following refinement usable with every backend.

A freehand *positive stroke* is drawn inside an object, a *negative stroke*
across background (or across a neighbour that must not be included), and a
*lasso* is a closed freehand line around an irregular region. Hand-drawn
lines are imprecise, so the mask must follow the image's edges, not the line:

* strokes become prompts for the backend: a few points sampled along each
  stroke (:func:`sample_stroke`), positive or negative;
* the backend's mask (for strokes) or the lasso's polygon (for a lasso) is
  then only a *rough* mask: :func:`refine_to_edges` keeps its confident core
  and the drawn positive strokes as object seeds, the outside and the negative
  strokes as background seeds, and lets a random walker
  (:func:`skimage.segmentation.random_walker`) decide the band in between,
  where the boundary follows intensity edges. The walk runs on a window
  around the prompts only (downsampled when the window is large), so its cost
  does not grow with the image.

:func:`predict_with_strokes` ties both to a
:class:`~napari_microseg.core.prompting.session.PromptSession`; it works with
any backend, and when an object is being edited (``session.start_from``) the
backend still starts from that object's mask.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line, polygon
from skimage.segmentation import random_walker
from skimage.transform import resize

from .base import Prediction

#: Largest window side the random walk runs at; larger windows are downsampled.
MAX_WALK_SIDE = 256
#: Holes up to this many pixels in a refined mask are speckle and filled.
HOLE_PX = 8


def _as_path(path) -> np.ndarray:
    arr = np.asarray(path, dtype=float).reshape(-1, 2)
    if not len(arr):
        raise ValueError("a stroke needs at least one point")
    return arr


def sample_stroke(path, spacing: float = 12.0, max_points: int = 5) -> np.ndarray:
    """Points spread evenly (by arc length) along a freehand ``path`` of ``(row, col)`` vertices.

    The stroke is cut into ``k`` equal pieces (about ``spacing`` px each, at most
    ``max_points``) and each piece gives its middle point: a hand-drawn line's
    ends, where it most often overshoots the object, are never used, and a
    short stroke is one click at its middle.

    Parameters
    ----------
    path : array-like, shape (n, 2)
        The stroke as drawn.
    spacing : float
        Wanted distance between points in pixels.
    max_points : int
        At most this many points.

    Returns
    -------
    ndarray, shape (k, 2)
    """
    path = _as_path(path)
    seg = np.hypot(*np.diff(path, axis=0).T) if len(path) > 1 else np.zeros(0)
    length = float(seg.sum())
    if length == 0:
        return path[:1].copy()
    k = int(np.clip(np.ceil(length / max(spacing, 1e-6)), 1, max(int(max_points), 1)))
    along = np.concatenate([[0.0], np.cumsum(seg)])
    at = (np.arange(k) + 0.5) * (length / k)
    return np.stack([np.interp(at, along, path[:, 0]), np.interp(at, along, path[:, 1])], axis=1)


def rasterize_path(path, shape: tuple[int, int], offset=(0, 0)) -> np.ndarray:
    """The pixels a polyline passes through (8-connected), on a window of ``shape`` at ``offset``."""
    path = np.rint(_as_path(path) - np.asarray(offset, float)).astype(int)
    out = np.zeros(shape, bool)
    if len(path) == 1:
        path = np.vstack([path, path])
    for (r0, c0), (r1, c1) in zip(path[:-1], path[1:], strict=True):
        rr, cc = line(r0, c0, r1, c1)
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        out[rr[ok], cc[ok]] = True
    return out


def polygon_mask(vertices, shape: tuple[int, int], offset=(0, 0)) -> np.ndarray:
    """Pixels inside a closed polygon of ``(row, col)`` vertices, on a window at ``offset``."""
    v = _as_path(vertices) - np.asarray(offset, float)
    out = np.zeros(shape, bool)
    if len(v) >= 3:
        rr, cc = polygon(v[:, 0], v[:, 1], shape)
        out[rr, cc] = True
    return out | rasterize_path(np.vstack([v, v[:1]]), shape)


def _downsampled(arr: np.ndarray, factor: float, order: int) -> np.ndarray:
    if factor == 1:
        return arr
    shape = tuple(max(2, int(round(s / factor))) for s in arr.shape)
    if arr.dtype == bool:
        return resize(arr.astype(np.float32), shape, order=0, anti_aliasing=False) > 0.5
    return resize(arr, shape, order=order, anti_aliasing=True).astype(np.float32)


def walk(image: np.ndarray, positive: np.ndarray, negative: np.ndarray, *, beta: float = 600.0,
         smooth: float = 0.5) -> np.ndarray:
    """Random-walker split of ``image`` seeded by ``positive`` and ``negative`` pixels.

    Pixels that are neither seed are object when a random walk from them more
    likely reaches an object seed first; walks rarely cross strong intensity
    edges (``beta``), so the boundary settles on edges. Windows larger than
    :data:`MAX_WALK_SIDE` are walked downsampled and the result is resampled.
    Negative seeds win where both are set. Inputs are not modified.
    """
    image = np.asarray(image, np.float32)
    positive = np.asarray(positive, bool) & ~np.asarray(negative, bool)
    negative = np.asarray(negative, bool)
    if not positive.any():
        return np.zeros(image.shape, bool)
    if not negative.any():
        return positive.copy()
    factor = max(1.0, max(image.shape) / MAX_WALK_SIDE)
    img = ndi.gaussian_filter(image, smooth) if smooth > 0 else image
    img, pos, neg = (_downsampled(img, factor, 1), _downsampled(positive, factor, 0),
                     _downsampled(negative, factor, 0))
    pos &= ~neg
    if not pos.any() or not neg.any():
        return positive.copy()
    seeds = np.zeros(img.shape, np.int32)
    seeds[pos], seeds[neg] = 1, 2
    lo, hi = np.percentile(img, [0.5, 99.5])
    data = np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(img)
    with warnings.catch_warnings():  # a high beta leaves probabilities a hair outside [0, 1]
        warnings.filterwarnings("ignore", "The probability range is outside", UserWarning)
        prob = random_walker(data, seeds, beta=beta, mode="cg_j", tol=1e-4, return_full_prob=True)[0]
    if factor != 1:
        prob = resize(prob, image.shape, order=1, anti_aliasing=False)
    out = prob > 0.5
    out[positive] = True
    out[negative] = False
    return out


def refine_to_edges(image: np.ndarray, rough: np.ndarray, *, positive=None, negative=None,
                    band: float | None = None, outside_is_background: bool = False) -> np.ndarray:
    """Move a rough mask's boundary onto the image's edges.

    Parameters
    ----------
    image : ndarray, 2-D
        The window of the (normalised) image.
    rough : ndarray of bool
        The rough mask: a backend's prediction or a lasso polygon.
    positive, negative : ndarray of bool, optional
        Pixels known to be object (positive strokes) or background (negative
        strokes); they override ``rough``.
    band : float, optional
        Half-width in pixels of the uncertain band around ``rough``'s
        boundary. Default: a fifth of the rough mask's equivalent radius,
        at least 2 px (for a lasso: half its largest inscribed radius, at
        least 3 px).
    outside_is_background : bool
        Everything outside ``rough`` is background for sure (a lasso): the
        uncertain band then lies inside it only.

    Returns
    -------
    ndarray of bool
        The refined mask; the connected components holding object seeds.
    """
    rough = np.asarray(rough, bool)
    pos = np.zeros(rough.shape, bool) if positive is None else np.asarray(positive, bool)
    neg = np.zeros(rough.shape, bool) if negative is None else np.asarray(negative, bool)
    inside = ndi.distance_transform_edt(rough)
    if band is None:
        if outside_is_background:
            band = max(3.0, 0.5 * float(inside.max()))
        else:
            band = float(np.clip(0.2 * np.sqrt(rough.sum() / np.pi), 2.0, 12.0))
    like = _object_like(image, rough)
    core = rough & (inside > band) & like
    if neg.any() and core.any():
        # the part of the rough mask nearer a negative stroke than any object seed is not sure
        d_neg = ndi.distance_transform_edt(~neg)
        seeds = pos if pos.any() else core & (inside >= inside.max() - 1)
        d_pos = ndi.distance_transform_edt(~seeds)
        core &= d_pos <= d_neg
    obj = core | pos
    if outside_is_background:
        bg = ~rough | neg
    else:
        out_dist = ndi.distance_transform_edt(~rough)
        bg = ((out_dist > band) & ~like) | (out_dist > 2 * band) | neg
    out = walk(image, obj, bg)
    out |= _small_holes(out, bg, HOLE_PX)
    lab, _ = ndi.label(out, structure=np.ones((3, 3), bool))
    ids = np.unique(lab[obj & out])
    return np.isin(lab, ids[ids > 0])


def _small_holes(mask: np.ndarray, keep_out: np.ndarray, max_px: int) -> np.ndarray:
    """Holes of ``mask`` of at most ``max_px`` pixels (speckle), except background seeds."""
    holes = ndi.binary_fill_holes(mask) & ~mask
    lab, n = ndi.label(holes)
    if n == 0:
        return holes
    small = np.bincount(lab.ravel()) <= max_px
    small[0] = False
    return small[lab] & ~keep_out


def _object_like(image: np.ndarray, rough: np.ndarray, smooth: float = 1.5) -> np.ndarray:
    """Pixels on the object's side of an Otsu split of the window (the side ``rough`` is richer in)."""
    from skimage.filters import threshold_otsu

    img = ndi.gaussian_filter(np.asarray(image, np.float32), smooth)
    if np.ptp(img) == 0 or rough.all() or not rough.any():
        return np.ones(img.shape, bool)
    low = img <= threshold_otsu(img)
    return low if low[rough].mean() >= low[~rough].mean() else ~low


@dataclass
class Strokes:
    """Freehand prompts for one object, in image ``(row, col)`` pixels.

    Parameters
    ----------
    positive : list of ndarray (n, 2)
        Strokes drawn inside the object.
    negative : list of ndarray (n, 2)
        Strokes drawn across background or a neighbour.
    lasso : ndarray (n, 2), optional
        A closed line around the object (its last point joins its first).
    """

    positive: list = field(default_factory=list)
    negative: list = field(default_factory=list)
    lasso: np.ndarray | None = None

    def __post_init__(self):
        self.positive = [_as_path(p) for p in self.positive]
        self.negative = [_as_path(p) for p in self.negative]
        if self.lasso is not None:
            self.lasso = _as_path(self.lasso)

    @property
    def empty(self) -> bool:
        """No stroke and no lasso."""
        return not self.positive and not self.negative and self.lasso is None

    def vertices(self) -> np.ndarray:
        """Every drawn vertex, ``(n, 2)``."""
        parts = [*self.positive, *self.negative] + ([self.lasso] if self.lasso is not None else [])
        return np.concatenate(parts) if parts else np.zeros((0, 2))

    def points(self, spacing: float = 12.0, max_points: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """``(points, labels)`` sampled along the strokes, as clicks for a backend."""
        pts, labs = [np.zeros((0, 2))], [np.zeros(0, int)]
        for paths, label in ((self.positive, 1), (self.negative, 0)):
            for p in paths:
                s = sample_stroke(p, spacing, max_points)
                pts.append(s)
                labs.append(np.full(len(s), label))
        return np.concatenate(pts), np.concatenate(labs)


def _window(parts: list[np.ndarray], shape: tuple[int, int], margin: float) -> tuple[slice, slice]:
    allp = np.concatenate([np.asarray(p, float).reshape(-1, 2) for p in parts if len(p)])
    lo, hi = allp.min(0), allp.max(0)
    pad = margin + 0.25 * float((hi - lo).max())
    r0, c0 = (max(0, int(np.floor(v - pad))) for v in lo)
    r1 = min(shape[0], int(np.ceil(hi[0] + pad)) + 1)
    c1 = min(shape[1], int(np.ceil(hi[1] + pad)) + 1)
    return slice(r0, r1), slice(c0, c1)


def predict_with_strokes(session, strokes: Strokes, points=(), labels=(), box=None, *,
                         use_previous: bool = True, margin: float = 16.0) -> Prediction:
    """A mask from strokes (and any clicks and box) that follows the image's edges.

    Parameters
    ----------
    session : PromptSession
        With its image set (and, to edit an object, ``start_from`` called).
    strokes : Strokes
        The freehand prompts.
    points, labels, box
        Clicks and box as for :meth:`PromptSession.predict`.
    use_previous : bool
        Passed on to the session (refine from the previous prediction).
    margin : float
        Context in pixels around the prompts for the refinement window.

    Returns
    -------
    Prediction
        A full-image mask. With a lasso, the rough mask is the lasso's inside
        and the backend is not asked (clicks and strokes act as seeds); else
        the backend predicts from the clicks plus points sampled on the
        strokes, and that mask is refined. ``logits`` are the backend's.
    """
    shape = session.image_shape
    if shape is None:
        raise ValueError("the session has no image")
    pts = np.asarray(points, float).reshape(-1, 2)
    labs = np.asarray(labels, int).reshape(-1)
    if strokes.empty:
        return session.predict(pts, labs, box, use_previous=use_previous)
    parts = [strokes.vertices(), pts]
    if box is not None:
        parts.append(np.asarray(box, float).reshape(2, 2))
    score, logits = 1.0, None
    if strokes.lasso is None:
        sp, sl = strokes.points()
        allp, alll = np.concatenate([pts, sp]), np.concatenate([labs, sl])
        allp = np.clip(allp, 0, np.array(shape) - 1)
        pred = session.predict(allp, alll, box, use_previous=use_previous)
        score, logits = pred.score, pred.logits
        rows, cols = np.flatnonzero(pred.mask.any(1)), np.flatnonzero(pred.mask.any(0))
        if len(rows):
            parts.append(np.array([[rows[0], cols[0]], [rows[-1], cols[-1]]], float))
    rs, cs = _window(parts, shape, margin)
    win_shape = (rs.stop - rs.start, cs.stop - cs.start)
    off = (rs.start, cs.start)
    pos = np.zeros(win_shape, bool)
    neg = np.zeros(win_shape, bool)
    for p in strokes.positive:
        pos |= rasterize_path(p, win_shape, off)
    for p in strokes.negative:
        neg |= rasterize_path(p, win_shape, off)
    for (r, c), lab in zip(np.rint(pts - off).astype(int), labs, strict=True):
        if 0 <= r < win_shape[0] and 0 <= c < win_shape[1]:
            (pos if lab == 1 else neg)[r, c] = True
    image = session.image_window(rs, cs)  # the walk scales the window's own contrast
    if strokes.lasso is not None:
        rough = polygon_mask(strokes.lasso, win_shape, off)
        mask = refine_to_edges(image, rough, positive=pos, negative=neg, outside_is_background=True)
    else:
        rough = pred.mask[rs, cs]
        if not rough.any():
            rough = ndi.binary_dilation(pos, iterations=2)
        mask = refine_to_edges(image, rough, positive=pos, negative=neg)
    full = np.zeros(shape, bool)
    full[rs, cs] = mask
    return Prediction(full, score if mask.any() else 0.0, logits)
