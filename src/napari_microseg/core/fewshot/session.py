"""Find similar: label a few objects, get candidates for all the others, review, repeat.

::

    fs = FindSimilar(image)
    fs.set_exemplars(labels)              # the objects the user committed (one class)
    cands = fs.propose()                  # every other similar object, with a score
    fs.review(accept=cands.above(0.8), reject=[7, 12])
    cands = fs.propose()                  # retrained with every decision so far
    other = fs.propose_on(next_image)     # the same recipe on another image

How it works (each step in its own module):

1. :mod:`.features`: a multi-scale filter bank at the exemplars' size;
2. :mod:`.pixels`: a gradient-boosting pixel classifier, exemplar pixels
   against a ring around every committed object, rejected candidates,
   negative clicks and a sparse random draw of the background;
3. :mod:`.proposal`: candidate centres where the Laplacian of Gaussian at the
   exemplars' scale responds like on the exemplars, one mask per centre
   (half-contrast region), tile by tile; optionally (``backend``) the
   better-ranked half of the candidates (at most 400 per million pixels)
   redrawn by a promptable backend clicked at their centres, and measured
   again on the new masks;
4. :mod:`.scoring`: a score in [0, 1] from the objects' measured features
   (similarity to the exemplars, contrast relative to theirs and the mean
   pixel probability; plus a classifier of accepted against rejected objects
   once both exist).

Nothing passed in (image, labels, committed mask) is ever modified, and no
candidate overlaps a committed pixel.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import MicrosegError
from ..prompting.base import PromptBackend
from .features import Scale
from .masks import mask_source, redraw_with_backend, resolve_backend
from .pixels import balance, train_pixel_model, training_set
from .proposal import (
    candidates_in_tiles,
    exemplar_response,
    halo,
    measure_labels,
    probability_map,
)
from .scoring import score_objects
from .tiles import TiledImage

#: Default ``backend``: the promptable backend ("auto": SAM2 when its weights are present,
#: else the offline model) redraws the masks up to 4096², and find similar's own masks
#: (the half-contrast region around each centre, :func:`.proposal.flood_masks`) are kept
#: above (:func:`.masks.mask_source`; BENCHMARKS.md "Find similar").
DEFAULT_BACKEND = "default"
#: Candidates smaller than this fraction of the smallest exemplar are dropped ...
MIN_AREA_FRACTION = 0.25
#: ... and larger than this multiple of the largest one.
MAX_AREA_FACTOR = 4.0
#: A candidate's centre needs this fraction of the exemplars' median blob response.
PEAK_FRACTION = 0.3
#: With a backend, only this best-ranked fraction of the candidates (scored on their own
#: masks) is redrawn and kept, but at least :data:`REDRAW_MIN` of them: one click each is
#: most of the search's time, and on the tuning images the lower half of the thousands of
#: candidates of a 2048² Ti frame held few objects (BENCHMARKS.md "Find similar").
REDRAW_FRACTION = 0.5
#: Fewer candidates than this are all redrawn.
REDRAW_MIN = 500
#: ... and at most this many per million pixels (but never fewer than :data:`REDRAW_MIN`): on
#: the Ti tuning frames with 6,000-8,000 candidates (frames 203 and 355) the best 1,600 of a
#: 2048² frame gave the same F1 as the best half (0.19) in 24 s instead of 35 s per frame.
REDRAW_MAX_PER_MPX = 400


def redraw_count(n_candidates: int, n_pixels: int) -> int:
    """How many of ``n_candidates`` best-ranked candidates a backend redraws on ``n_pixels``."""
    cap = max(REDRAW_MIN, REDRAW_MAX_PER_MPX * n_pixels / 1e6)
    return int(min(n_candidates, np.ceil(min(max(REDRAW_MIN, REDRAW_FRACTION * n_candidates), cap))))


@dataclass
class Candidates:
    """Proposed objects, best first.

    Attributes
    ----------
    labels : ndarray of int32
        ``0`` background, ``1..n`` candidates (never overlapping committed pixels).
    scores : ndarray of float, shape (n,)
        ``scores[i]`` belongs to candidate ``i + 1``; in [0, 1], higher is more
        like the exemplars; non-increasing (candidate 1 is the best).
    cancelled : bool
        The search was stopped early (the candidates are those found so far).
    """

    labels: np.ndarray
    scores: np.ndarray
    cancelled: bool = False

    def above(self, threshold: float) -> np.ndarray:
        """Ids of the candidates scoring ``>= threshold``."""
        return np.flatnonzero(np.asarray(self.scores) >= threshold) + 1

    def __len__(self) -> int:
        return int(len(self.scores))

    @classmethod
    def empty(cls, shape, cancelled: bool = False) -> Candidates:
        """No candidate on an image of ``shape``."""
        return cls(np.zeros(shape, np.int32), np.zeros(0), cancelled)


def as_grey(image) -> np.ndarray:
    """A 2-D image from ``image``; RGB(A) becomes grey with a warning; other shapes fail."""
    shape = np.shape(image)
    if len(shape) == 3 and shape[-1] in (3, 4):
        warnings.warn("Find similar works on grey images: the RGB image is converted to grey.",
                      UserWarning, stacklevel=3)
        rgb = np.asarray(image)[..., :3].astype(np.float32)
        return rgb @ np.array([0.2125, 0.7154, 0.0721], np.float32)
    if len(shape) != 2:
        raise MicrosegError(f"Find similar needs a 2-D grey image, got shape {tuple(shape)}.")
    if min(shape) < 8:
        raise MicrosegError(f"The image is too small to search ({shape[0]} x {shape[1]} px).")
    if getattr(image, "dtype", None) is not None and np.dtype(image.dtype) == np.bool_:
        return np.asarray(image, np.uint8)
    if not hasattr(image, "dtype") or np.dtype(image.dtype).kind not in "uif":
        image = np.asarray(image)
        if image.dtype.kind not in "uif":
            raise MicrosegError(f"Find similar needs a numeric image, got dtype {image.dtype}.")
    return image


class FindSimilar:
    """Exemplar-driven search for similar objects on one image (see module doc).

    Parameters
    ----------
    image : array-like, 2-D
        uint8/uint16/float (RGB(A) is converted to grey with a warning).
    backend : str or PromptBackend
        ``"default"``: ``"auto"`` up to 4096², ``"none"`` above
        (:func:`.masks.mask_source`, decided for each searched image);
        ``"none"``: masks drawn by find similar itself; ``"auto"``: SAM2 if its
        weights are present, else the offline ``"microseg-promptable"``; any
        name :func:`~..prompting.registry.make_backend` knows; or a backend.
    seed : int
        Seed of the random background draw and the classifiers.
    tile : int
        Tile size (px) of the proposal step.
    """

    def __init__(self, image, *, backend=DEFAULT_BACKEND, seed: int = 0, tile: int = 1024):
        self.image = as_grey(image)
        self.shape = tuple(int(s) for s in np.shape(self.image))
        if not (isinstance(backend, (str, PromptBackend)) or backend is None):
            raise MicrosegError(f"backend must be a name or a PromptBackend, got {backend!r}.")
        self._backend_spec = "none" if backend is None else backend
        self._backend = None
        #: Why the last search's masks are not the backend's asked for ("" when they are).
        self.mask_note = ""
        self.seed = int(seed)
        self.tile = int(tile)
        if self.tile < 16:
            raise MicrosegError(f"The tile size must be at least 16 px, got {tile}.")
        self.scale: Scale | None = None
        self._tiled: TiledImage | None = None
        self._model = None
        self._last: Candidates | None = None
        self._rounds = 0
        self._refs = (np.zeros((0, 0)), np.zeros((0, 0)), np.zeros(0, bool))
        self._exemplar_max_id = 0
        self._pos = None
        self._sources: list = []

    # -- inputs ---------------------------------------------------------------------

    def _check_shape(self, a, what: str) -> np.ndarray:
        a = np.asarray(a)
        if a.shape != self.shape:
            raise MicrosegError(f"The {what} ({a.shape}) and the image ({self.shape}) differ in shape.")
        return a

    def set_exemplars(self, labels, ids=None, *, committed=None) -> None:
        """Take the exemplars (one class) and everything the user committed.

        Parameters
        ----------
        labels : ndarray of int
            Instance labels of the image's shape.
        ids : sequence of int, optional
            Which instances are exemplars (default: every non-zero one).
        committed : ndarray of int or bool, optional
            Everything committed (default ``labels != 0``): no candidate overlaps it.
        """
        labels = self._check_shape(labels, "labels")
        if labels.dtype.kind not in "uib":
            raise MicrosegError(f"The labels must be integers, got dtype {labels.dtype}.")
        present = np.unique(labels)
        present = present[present != 0]
        if ids is None:
            ids = present
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        missing = np.setdiff1d(ids, present)
        if len(missing):
            raise MicrosegError(f"No object with id(s) {missing[:10].tolist()} in the labels.")
        ids = ids[ids != 0]
        if len(ids) == 0:
            raise MicrosegError("Find similar needs at least one exemplar: label an object first.")
        pos = np.where(np.isin(labels, ids), labels, 0).astype(np.int32)
        com = labels != 0 if committed is None else self._check_shape(committed, "committed mask") != 0
        self._pos = pos
        self._exemplar_max_id = int(pos.max(initial=0))
        self._committed = np.array(com, bool) | (pos != 0)
        self._neg_labels = np.zeros(self.shape, np.int32)
        self._negative = np.zeros(self.shape, bool)
        self._reset_learning()

    def add_exemplars_from(self, image, labels, ids=None) -> None:
        """Also learn from exemplars on another image (e.g. a labelled image of the same series).

        ``labels``/``ids`` as in :meth:`set_exemplars`. This image's own exemplars
        are optional then: without :meth:`set_exemplars` nothing here is committed.
        """
        image = as_grey(image)
        labels = np.asarray(labels)
        if labels.shape != tuple(np.shape(image)):
            raise MicrosegError(f"The labels ({labels.shape}) and their image "
                                f"({tuple(np.shape(image))}) differ in shape.")
        present = np.unique(labels)
        present = present[present != 0]
        ids = present if ids is None else np.asarray(ids, np.int64).reshape(-1)
        ids = ids[ids != 0]
        if len(ids) == 0 or not np.isin(ids, present).all():
            raise MicrosegError("No exemplar in the other image's labels (or an id is missing).")
        pos = np.where(np.isin(labels, ids), labels, 0).astype(np.int32)
        self._sources.append((image, pos))
        if self._pos is None:
            self._pos = np.zeros(self.shape, np.int32)
            self._exemplar_max_id = 0
            self._committed = np.zeros(self.shape, bool)
            self._neg_labels = np.zeros(self.shape, np.int32)
            self._negative = np.zeros(self.shape, bool)
        self._reset_learning()

    def _reset_learning(self):
        areas = [np.bincount(p.ravel())[1:] for p in [self._pos, *[s[1] for s in self._sources]]]
        areas = np.concatenate(areas)
        self.scale = Scale.from_areas(areas[areas > 0])
        self._tiled = TiledImage(self.image, self.scale, self.tile)
        self._source_tiles = [TiledImage(img, self.scale, self.tile) for img, _ in self._sources]
        self._model, self._last, self._rounds = None, None, 0

    def _require_exemplars(self):
        if self._pos is None:
            raise MicrosegError("Give the exemplars first (set_exemplars).")

    def add_negatives(self, *, points=None, mask=None) -> None:
        """Mark background: ``(n, 2)`` row/col clicks and/or a bool mask."""
        self._require_exemplars()
        if points is not None:
            pts = np.asarray(points, float).reshape(-1, 2)
            h, w = self.shape
            r = max(1.0, 0.5 * self.scale.radius)
            for y, x in pts:
                if not (0 <= y < h and 0 <= x < w):
                    raise MicrosegError(f"Negative click ({y:g}, {x:g}) is outside the image.")
                y0, y1 = int(max(0, np.floor(y - r))), int(min(h, np.ceil(y + r) + 1))
                x0, x1 = int(max(0, np.floor(x - r))), int(min(w, np.ceil(x + r) + 1))
                yy, xx = np.ogrid[y0:y1, x0:x1]
                self._negative[y0:y1, x0:x1] |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r
        if mask is not None:
            self._negative |= self._check_shape(mask, "negative mask").astype(bool)
        self._negative &= ~self._committed
        self._model = None

    # -- rounds ---------------------------------------------------------------------

    @property
    def n_rounds(self) -> int:
        """How many proposals were made since the exemplars were set."""
        return self._rounds

    @property
    def backend(self):
        """The promptable backend that redraws masks on this image (None: find similar's own)."""
        return self.backend_for(self.shape)

    def backend_for(self, shape):
        """The backend that redraws masks on an image of ``shape`` (None: find similar's own).

        Sets :attr:`mask_note` to the line :func:`.masks.mask_source` gives.
        """
        spec, self.mask_note = mask_source(self._backend_spec, shape)
        if spec == "none":
            return None
        if self._backend is None:
            self._backend = resolve_backend(spec)
        return self._backend

    def _train(self, progress=None):
        rng = np.random.default_rng(self.seed + self._rounds)
        parts = []
        if (self._pos != 0).any() or self._negative.any():
            parts.append(training_set(self._tiled, self._pos != 0, self._committed,
                                      self._negative, rng, progress=progress, check=False))
        for tiled, (_, pos) in zip(self._source_tiles, self._sources, strict=True):
            parts.append(training_set(tiled, pos != 0, pos != 0, np.zeros(pos.shape, bool), rng,
                                      check=False))
        x, y, w = (np.concatenate(a) for a in zip(*parts, strict=True))
        self._model = train_pixel_model(*balance(x, y, w), seed=self.seed)
        self._blob_settings()

    def _blob_settings(self):
        """Dark or bright objects, and the blob response a candidate's centre needs."""
        stats = [exemplar_response(self._tiled, self._pos)]
        stats += [exemplar_response(t, pos) for t, (_, pos) in
                  zip(self._source_tiles, self._sources, strict=True)]
        total = sum(s[0] for s in stats)
        dark = total <= 0
        peaks = np.asarray([v for s in stats for v in (s[2] if dark else s[3])], float)
        self._sign = 1.0 if dark else -1.0
        level = np.median(peaks) if len(peaks) else 0.0
        self._peak_threshold = max(1e-3, PEAK_FRACTION * float(level))

    def _source_references(self):
        """Features of the exemplars on the other images (probability where they are)."""
        out = []
        for tiled, (_, pos) in zip(self._source_tiles, self._sources, strict=True):
            rows, cols = np.nonzero(pos)
            pad = halo(self.scale)
            near = tiled.tiles_touching(np.r_[rows - pad, rows + pad, rows, rows].clip(0, tiled.shape[0] - 1),
                                        np.r_[cols, cols, cols - pad, cols + pad].clip(0, tiled.shape[1] - 1))
            prob = probability_map(tiled, self._model, boxes=near)
            _, _, refs = candidates_in_tiles(tiled, prob, pos != 0, [pos], min_area=0,
                                                max_area=0, find=False)
            out.append(refs[0][1])
        return out

    def _search(self, tiled, committed, references, progress, cancel, refs=None):
        """Probability, candidates, their features and the references' on ``tiled``.

        ``refs`` (positive and negative reference features) rank the candidates
        before a backend redraws the best of them (:func:`redraw_count`); by
        default they come from ``references`` (this image's exemplars and
        rejections) and the other images' exemplars. Returns
        ``(labels, features, refs)`` or None when cancelled.
        """
        sub = _sub_progress(progress, 0.0, 0.45)
        backend = self.backend_for(tiled.shape)
        prob = probability_map(tiled, self._model, progress=sub, cancel=cancel)
        if prob is None:
            return None
        s = self.scale
        found = candidates_in_tiles(
            tiled, prob, committed, references,
            min_area=max(3.0, MIN_AREA_FRACTION * s.area_min), max_area=MAX_AREA_FACTOR * s.area_max,
            sign=self._sign, peak_threshold=self._peak_threshold,
            progress=_sub_progress(progress, 0.45, 0.6 if backend is not None else 0.9),
            cancel=cancel,
        )
        if found is None:
            return None
        labels, feats, measured = found
        if refs is None:
            src = self._source_references()
            accepted = np.r_[measured[0][0] > self._exemplar_max_id,
                             np.zeros(sum(len(f) for f in src), bool)]
            refs = (np.vstack([measured[0][1], *src]), measured[1][1], accepted)
        if backend is not None and len(feats):
            first = score_objects(feats, *refs, seed=self.seed)
            labels = _best(labels, first, redraw_count(len(first), labels.size))
            labels = redraw_with_backend(backend, tiled, labels, committed, cancel=cancel,
                                         progress=_sub_progress(progress, 0.6, 0.95))
            # Scored on the masks the user will see, not the ones they replaced.
            labels, feats = measure_labels(tiled, prob, labels)
        return labels, feats, refs

    def propose(self, *, progress=None, cancel=None) -> Candidates:
        """Candidates for every other object like the exemplars (retrains on all decisions)."""
        self._require_exemplars()
        self._train(progress=_sub_progress(progress, 0.0, 0.2))
        found = self._search(self._tiled, self._committed, [self._pos, self._neg_labels],
                             _sub_progress(progress, 0.2, 1.0), cancel)
        if found is None:
            return Candidates.empty(self.shape, cancelled=True)
        labels, feats, self._refs = found
        self._last = _ranked(labels, score_objects(feats, *self._refs, seed=self.seed))
        self._rounds += 1
        if progress is not None:
            progress(1.0)
        return Candidates(self._last.labels.copy(), self._last.scores.copy())

    def review(self, accept=(), reject=()) -> None:
        """Accept (become exemplars and committed) or reject (become negatives) candidates.

        Ids refer to the last :class:`Candidates`; the next :meth:`propose` learns from them.
        """
        if self._last is None:
            raise MicrosegError("Nothing to review yet: call propose() first.")
        acc = np.unique(np.asarray(list(accept), dtype=np.int64).reshape(-1))
        rej = np.unique(np.asarray(list(reject), dtype=np.int64).reshape(-1))
        n = len(self._last)
        bad = [int(i) for i in np.r_[acc, rej] if not 1 <= i <= n]
        if bad:
            raise MicrosegError(f"No candidate with id(s) {bad[:10]} (there are {n}).")
        both = np.intersect1d(acc, rej)
        if len(both):
            raise MicrosegError(f"Candidate(s) {both[:10].tolist()} both accepted and rejected.")
        lab = self._last.labels
        if len(acc):
            new = _renumbered(lab, acc, int(self._pos.max()))
            self._pos = np.where(new != 0, new, self._pos)
            self._committed |= new != 0
        if len(rej):
            new = _renumbered(lab, rej, int(self._neg_labels.max()))
            self._neg_labels = np.where(new != 0, new, self._neg_labels)
            self._negative |= new != 0
        self._negative &= ~self._committed

    def propose_on(self, image, *, progress=None, cancel=None) -> Candidates:
        """Search another image with what was learnt (its pixels are all candidates' ground)."""
        self._require_exemplars()
        image = as_grey(image)
        if self._model is None or self._last is None:
            self.propose(progress=_sub_progress(progress, 0.0, 0.5), cancel=cancel)
            progress = _sub_progress(progress, 0.5, 1.0)
        tiled = TiledImage(image, self.scale, self.tile)
        shape = tuple(int(s) for s in np.shape(image))
        found = self._search(tiled, np.zeros(shape, bool), [], progress, cancel, refs=self._refs)
        if found is None:
            return Candidates.empty(shape, cancelled=True)
        labels, feats = found[:2]
        return _ranked(labels, score_objects(feats, *self._refs, seed=self.seed))


def _best(labels: np.ndarray, scores: np.ndarray, count: float) -> np.ndarray:
    """``labels`` keeping the ``count`` best-scored candidates (at least one), ids unchanged."""
    n = len(scores)
    keep = int(np.clip(np.ceil(count), min(1, n), n))
    table = np.zeros(n + 1, np.int32)
    best = np.argsort(-np.asarray(scores, float), kind="stable")[:keep] + 1
    table[best] = best
    return table[labels]


def _renumbered(labels: np.ndarray, ids: np.ndarray, start: int) -> np.ndarray:
    """The objects ``ids`` of ``labels`` numbered ``start + 1, ...``; everything else 0."""
    table = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    ids = ids[ids < len(table)]
    table[ids] = np.arange(start + 1, start + 1 + len(ids))
    return table[labels]


def _ranked(labels: np.ndarray, scores: np.ndarray) -> Candidates:
    """Renumber candidates best first."""
    scores = np.clip(np.asarray(scores, float), 0.0, 1.0)
    order = np.argsort(-scores, kind="stable")
    table = np.zeros(len(scores) + 1, np.int32)
    table[order + 1] = np.arange(1, len(scores) + 1)
    return Candidates(table[labels], scores[order])


def _sub_progress(progress, lo: float, hi: float):
    if progress is None:
        return None
    return lambda f: progress(lo + (hi - lo) * float(f))


def find_similar(image, labels, ids=None, **kw) -> Candidates:
    """One-shot :class:`FindSimilar`: ``image``'s candidates like the ``ids`` of ``labels``.

    Keyword arguments go to :class:`FindSimilar` (``backend``, ``seed``, ``tile``) and
    ``committed`` to :meth:`FindSimilar.set_exemplars`.
    """
    committed = kw.pop("committed", None)
    fs = FindSimilar(image, **kw)
    fs.set_exemplars(labels, ids, committed=committed)
    return fs.propose()
