"""One image under interactive prompting: normalisation, (cached, tiled) embedding, refinement.

:class:`PromptSession` is what the napari Label dock and the simulated-user
evaluation drive::

    session = PromptSession(Sam2Backend("sam2.1-tiny"), EmbeddingCache())
    status = session.set_image(image, contrast_limits=layer.contrast_limits)
    pred = session.predict([[120, 340]], [1])           # first click
    pred = session.predict([[120, 340], [130, 360]], [1, 0])  # refine (previous logits)
    session.reset()                                     # next object
    session.start_from(labels == 7)                     # edit an existing object:
    pred = session.predict([[50, 60]], [0])             # its mask is the starting mask
    session.note_committed(area, key=class_id)         # sizes later first clicks

Once :data:`~.size_prior.MIN_HINT_OBJECTS` objects of the current kind (:attr:`PromptSession.size_key`)
were committed on the image, a first click carries their median area as
:attr:`~.base.Prompts.size_hint`; the offline model then looks through a window sized
for such objects instead of its fixed one (BENCHMARKS.md "First window sized by the
committed objects").

Backends that need an embedding (``needs_embedding``) must also provide
``get_embedding() -> dict[str, ndarray]`` and ``load_embedding(dict)``; their
image is cut into overlapping tiles (:mod:`.tiling`) embedded lazily, at the
first click in their area, or all at once with :meth:`PromptSession.embed_all`.

Thread use: :meth:`~PromptSession.embed_all` may run in a worker thread while
the GUI thread calls :meth:`~PromptSession.predict`; the session lock is taken
per tile, so a click waits for at most one tile's embedding.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..errors import InvalidImageError, MicrosegError
from ..micrograph import content_hash
from .base import Prediction, Prompts, RegionMask
from .normalize import (
    DEFAULT_PERCENTILES,
    apply_normalization,
    normalization_range,
    normalization_signature,
)
from .size_prior import size_hint
from .tiling import DEFAULT_HALO, DEFAULT_TILE, Tile, TileGrid


class EmbeddingCancelled(MicrosegError):
    """The user stopped the embedding (between two tiles)."""


class PromptSession:
    """Prompting on one image at a time.

    Parameters
    ----------
    backend : PromptBackend
        The model.
    cache : EmbeddingCache, optional
        On-disk embedding cache; None keeps embeddings in memory only.
    tile_size, halo : int
        Tiling of images larger than ``tile_size`` (see :class:`.TileGrid`).
    max_tiles_in_memory : int
        Tile embeddings kept in RAM (least recently used are dropped; they
        come back from the disk cache).
    percentiles : (float, float)
        Robust normalisation percentiles when no contrast limits are given.
    size_prior : bool
        Give first clicks the committed objects' median area as a size hint
        (see the module docstring and :meth:`note_committed`).
    """

    def __init__(
        self,
        backend,
        cache=None,
        *,
        tile_size: int = DEFAULT_TILE,
        halo: int = DEFAULT_HALO,
        max_tiles_in_memory: int = 8,
        percentiles=DEFAULT_PERCENTILES,
        size_prior: bool = True,
    ):
        self.backend = backend
        self.size_prior = bool(size_prior)
        #: Which committed objects size a first click (e.g. the class being labelled).
        self.size_key = 0
        self.cache = cache
        self.tile_size = int(tile_size)
        self.halo = int(halo)
        self.max_tiles_in_memory = max(1, int(max_tiles_in_memory))
        self.percentiles = tuple(percentiles)
        self._lock = threading.RLock()
        self._generation = 0
        self._image = None
        self.grid: TileGrid | None = None
        self.signature: dict | None = None
        #: Outcome of the last :meth:`set_image` / :meth:`embed_all`.
        self.status = ""
        #: Tile that served the last prediction (None for untiled backends).
        self.last_tile: Tile | None = None
        self._clear_state()

    def _clear_state(self):
        self._memory: OrderedDict[str, dict] = OrderedDict()
        self._active: str | None = None
        self._entry = None
        self._found = "new"
        self._tile_reasons: list[str] = []
        self._notes: list[tuple] = []  # (key, area) of each committed object, in order
        self.reset()

    @property
    def image_shape(self) -> tuple[int, int] | None:
        return None if self._image is None else tuple(self._image.shape[:2])

    @property
    def tiled(self) -> bool:
        """Whether the backend is driven tile by tile (it needs an embedding)."""
        return bool(getattr(self.backend, "needs_embedding", False))

    # -- image ---------------------------------------------------------------------

    def set_image(
        self,
        image,
        *,
        image_hash: str | None = None,
        contrast_limits=None,
        progress=None,
        cancel=None,
        eager: bool | None = None,
    ) -> str:
        """Load ``image`` and get its embedding from the cache or the model.

        Parameters
        ----------
        image : array-like, 2-D
            Raw micrograph (any dtype, lazy arrays allowed); normalised here.
        image_hash : str, optional
            :func:`~napari_microseg.core.micrograph.content_hash` of ``image`` if
            already known.
        contrast_limits : (float, float), optional
            Normalise to this window instead of robust percentiles.
        progress : callable, optional
            Called with the embedded fraction in [0, 1].
        cancel : callable, optional
            Returning True stops between tiles with :class:`EmbeddingCancelled`.
        eager : bool, optional
            Embed every tile now. Default: only when the image is one tile;
            larger images are embedded tile by tile at the first click there
            (or call :meth:`embed_all`).

        Returns
        -------
        str
            ``"computed"``, ``"cache hit"``, ``"recomputed: <reason>"``, or for a
            lazily tiled image ``"deferred: ..."`` / ``"cache hit (k of n tiles)"``.
        """
        if np.ndim(image) != 2:
            raise InvalidImageError(
                f"Prompting needs a 2-D grey image, got shape {np.shape(image)}"
            )
        with self._lock:
            self._clear_state()
            self._generation += 1
            self._image = image
            self._range = normalization_range(image, contrast_limits, self.percentiles)
            norm_sig = normalization_signature(
                contrast_limits=contrast_limits,
                percentiles=self.percentiles,
                value_range=self._range,
            )
            if not self.tiled:
                self.grid, self.signature = None, None
                self.backend.set_image(self._normalised(), progress=progress)
                self.status = "computed"
                return self.status
            self.grid = TileGrid(self.image_shape, self.tile_size, self.halo)
            self.signature = {
                "image": image_hash or content_hash(image),
                "backend": self.backend.signature(),
                "normalisation": norm_sig,
                "tiling": self.grid.signature(),
            }
            if self.cache is not None:
                self._entry, self._found = self.cache.open(self.signature)
            if eager if eager is not None else len(self.grid) == 1:
                return self.embed_all(progress=progress, cancel=cancel)
            n = len(self.grid)
            cached = len(self._entry.tiles()) if self._entry is not None else 0
            if self._found == "hit" and cached:
                self.status = f"cache hit ({min(cached, n)} of {n} tiles)"
            else:
                why = "" if self._found in ("hit", "new") else f"; {self._found}"
                self.status = f"deferred: {n} tiles embedded on demand{why}"
            return self.status

    def _normalised(self, tile: Tile | None = None) -> np.ndarray:
        data = self._image if tile is None else self._image[tile.slices]
        return apply_normalization(np.asarray(data), *self._range)

    def image_window(self, rows: slice, cols: slice) -> np.ndarray:
        """The raw image on ``rows, cols`` as float32 (NaN as 0); only that window is read."""
        if self._image is None:
            raise MicrosegError("No image is set.")
        data = np.asarray(self._image[rows, cols])
        return np.nan_to_num(np.real(data).astype(np.float32, copy=True))

    def embed_all(self, progress=None, cancel=None) -> str:
        """Embed every grid tile not yet available (from the cache when possible).

        Returns the status string (see :meth:`set_image`).
        """
        if self._image is None:
            raise MicrosegError("No image is set.")
        if not self.tiled:
            return self.status
        with self._lock:
            tiles, generation = self.grid.tiles, self._generation
        n = len(tiles)
        computed = 0
        for i, tile in enumerate(tiles):
            if cancel is not None and cancel():
                raise EmbeddingCancelled(f"Embedding cancelled after {i} of {n} tiles.")
            sub = None if progress is None else (lambda f, i=i: progress((i + f) / n))
            with self._lock:  # per tile, so clicks can be served between tiles
                if self._generation != generation:
                    raise EmbeddingCancelled("Embedding stopped: another image was set.")
                computed += self._fetch(tile, progress=sub) == "computed"
            if progress is not None:
                progress((i + 1) / n)
        with self._lock:
            self.status = self._status(computed)
            return self.status

    def _status(self, computed: int) -> str:
        reasons = list(self._tile_reasons)
        if self._found not in ("hit", "new"):
            reasons.insert(0, self._found)
        if computed == 0:
            return "cache hit" if self.cache is not None else "computed"
        return "recomputed: " + "; ".join(reasons) if reasons else "computed"

    # -- tiles -----------------------------------------------------------------------

    def _remember(self, name: str, emb: dict):
        self._memory[name] = emb
        self._memory.move_to_end(name)
        while len(self._memory) > self.max_tiles_in_memory:
            self._memory.popitem(last=False)

    def _fetch(self, tile: Tile, progress=None) -> str:
        """Make ``tile``'s embedding available; say from where (memory, cache, computed)."""
        if tile.name in self._memory:
            self._memory.move_to_end(tile.name)
            return "memory"
        if self._entry is not None:
            emb, reason = self._entry.load(tile.name)
            if reason:
                self._tile_reasons.append(reason)
            if emb is not None:
                self._remember(tile.name, emb)
                return "cache"
        self.backend.set_image(self._normalised(tile), progress=progress)
        self._active = tile.name
        emb = self.backend.get_embedding()
        self._remember(tile.name, emb)
        if self._entry is not None:
            self._entry.save(tile.name, emb)
        return "computed"

    def _activate(self, tile: Tile) -> None:
        if self._active == tile.name:
            return
        if self._fetch(tile) != "computed":
            self.backend.load_embedding(self._memory[tile.name])
            self._active = tile.name

    # -- prompts ---------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the previous mask logits and any edited object: the next click starts a new object."""
        self._prev_logits = None
        self._prev_tile: Tile | None = None
        self._start: RegionMask | None = None

    def start_from(self, mask) -> None:
        """Edit an existing object: the next predictions start from ``mask``.

        ``mask`` (a full-image bool array or a :class:`~.base.RegionMask`) is
        handed to the backend with every prediction until :meth:`reset`: as
        its mask input (:meth:`~.base.PromptBackend.mask_prior`, e.g. SAM2's
        ``mask_input`` or the offline model's previous-mask channel) for the
        first prediction, and as :attr:`Prompts.start_mask`. Corrective clicks
        made later refine from the previous prediction as usual. The array
        given is never modified.
        """
        if self._image is None:
            raise MicrosegError("No image is set.")
        if not isinstance(mask, RegionMask):
            if np.shape(mask) != self.image_shape:
                raise ValueError(f"mask shape {np.shape(mask)} is not the image's {self.image_shape}")
            mask = RegionMask.from_full(mask)
        if not mask.any():
            raise ValueError("the object to edit has no pixel")
        self.reset()
        self._start = mask

    def note_committed(self, area: float, key=None) -> None:
        """Record that an object of ``area`` pixels was committed on this image.

        ``key`` (default :attr:`size_key`) groups objects of one kind; a new
        image forgets them all.
        """
        if area > 0:
            self._notes.append((self.size_key if key is None else key, float(area)))

    @property
    def committed(self) -> tuple:
        """``(key, area)`` of every object recorded by :meth:`note_committed`, in order."""
        return tuple(self._notes)

    def forget_committed(self, count: int = 1) -> None:
        """Forget the last ``count`` objects recorded by :meth:`note_committed` (after an undo)."""
        del self._notes[max(len(self._notes) - int(count), 0):]

    @property
    def size_hint(self) -> float | None:
        """Median area of the committed objects of :attr:`size_key` (None: too few, or off)."""
        return self.size_hint_for(self.size_key)

    def size_hint_for(self, key) -> float | None:
        """Median area of the committed objects of ``key`` (None: too few, or off)."""
        if not self.size_prior:
            return None
        return size_hint([a for k, a in self._notes if k == key])

    @property
    def start_mask(self) -> RegionMask | None:
        """The object being edited (see :meth:`start_from`), or None."""
        return self._start

    def predict(self, points=(), labels=(), box=None, use_previous: bool = True) -> Prediction:
        """Mask for the current object from all its clicks (and box) so far.

        Parameters
        ----------
        points : array-like, shape (n, 2)
            ``(row, col)`` clicks in image pixels.
        labels : array-like, shape (n,)
            1 positive, 0 negative.
        box : array-like, shape (4,), optional
            ``(rmin, cmin, rmax, cmax)``; clipped to the image.
        use_previous : bool
            Feed the previous prediction's logits back (refinement), unless
            :meth:`reset` was called since.

        Returns
        -------
        Prediction
            ``mask`` has the full image's shape.
        """
        if self._image is None:
            raise MicrosegError("No image is set.")
        prompts = Prompts(points, labels, box, start_mask=self._start, size_hint=self.size_hint)
        if prompts.empty:
            raise ValueError("give at least one click or a box")
        h, w = self.image_shape
        pts = prompts.points
        if len(pts) and (pts.min() < 0 or np.any(pts.max(0) > (h - 1, w - 1))):
            raise ValueError(f"click outside the {h} x {w} image: {pts.tolist()}")
        if prompts.box is not None:
            b = prompts.box
            if b[2] < 0 or b[3] < 0 or b[0] > h - 1 or b[1] > w - 1:
                raise ValueError(f"box {b.tolist()} lies outside the {h} x {w} image")
            prompts.box = np.clip(b, 0, [h - 1, w - 1, h - 1, w - 1]).astype(float)
        with self._lock:
            if not self.tiled:
                if use_previous:
                    prompts.mask_logits = self._prev_logits
                if prompts.mask_logits is None and self._start is not None:
                    prompts.mask_logits = self.backend.mask_prior(self._start, (h, w))
                pred = self.backend.predict(prompts)
                self._prev_logits = pred.logits
                return pred
            bounds = prompts.bounds()
            prev = self._prev_tile if use_previous else None
            tile = (
                prev if prev is not None and prev.contains(bounds) else self.grid.tile_for(bounds)
            )
            self._activate(tile)
            local = Prompts(
                tile.to_local(prompts.points),
                prompts.labels,
                None if prompts.box is None else tile.to_local(prompts.box),
                start_mask=None if self._start is None else self._start.shifted(-tile.r0, -tile.c0),
                size_hint=prompts.size_hint,
            )
            if use_previous and prev is not None and prev.name == tile.name:
                local.mask_logits = self._prev_logits
            if local.mask_logits is None and local.start_mask is not None:
                local.mask_logits = self.backend.mask_prior(local.start_mask, tile.shape)
            pred = self.backend.predict(local)
            self._prev_logits, self._prev_tile, self.last_tile = pred.logits, tile, tile
            return Prediction(
                mask=tile.place(pred.mask, (h, w)), score=pred.score, logits=pred.logits
            )
