"""Tiles of an image and their pixel features, kept in a bounded cache.

"Find similar" reads the image tile by tile (``tile`` px, a multiple of the
feature factor) so any image size works; the features of each tile are exact
(:func:`.features.window_features` reads a margin around it), so the result
does not depend on the tiling. Features of the tiles used most recently are
kept within a memory budget: a frame that fits is computed once and reused by
every review round; a mosaic streams.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..prompting.normalize import normalization_range
from .features import Scale, window_features

#: Grid (px) of the windows the pixel classifier is trained on: independent of the
#: proposal tile, so the result does not depend on the tiling.
TRAIN_TILE = 1024
#: Bytes of tile features kept in memory (least recently used are dropped).
FEATURE_BUDGET = 512 * 2**20


class TiledImage:
    """An image cut into tiles, with its global intensity window and cached features.

    Parameters
    ----------
    image : array-like, 2-D
        Raw grey image (any dtype; lazy arrays are read window by window).
    scale : Scale
        The exemplars' scale (fixes the feature factor and filters).
    tile : int
        Tile size in full-resolution px (rounded up to a multiple of the factor).
    """

    def __init__(self, image, scale: Scale, tile: int = 1024, budget: int = FEATURE_BUDGET):
        self.image = image
        self.shape = tuple(int(s) for s in image.shape[:2])
        self.scale = scale
        f = scale.factor
        self.tile = int(-(-max(int(tile), 4 * f) // f) * f)
        self.value_range = normalization_range(image)
        self.budget = int(budget)
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._bytes = 0

    def grid(self, size: int) -> list[tuple[int, int, int, int]]:
        """``(r0, c0, r1, c1)`` of a grid of ``size`` px (rounded to the factor), row by row."""
        h, w = self.shape
        f = self.scale.factor
        t = int(-(-int(size) // f) * f)
        return [(r, c, min(r + t, h), min(c + t, w)) for r in range(0, h, t) for c in range(0, w, t)]

    @property
    def tiles(self) -> list[tuple[int, int, int, int]]:
        """``(r0, c0, r1, c1)`` of every tile, row by row."""
        return self.grid(self.tile)

    def tiles_touching(self, mask_rows: np.ndarray, mask_cols: np.ndarray, size=None) -> list:
        """Tiles (of the grid of ``size``, default the tile size) holding any of the pixels."""
        boxes = self.tiles if size is None else self.grid(size)
        t = self.tile if size is None else int(-(-int(size) // self.scale.factor) * self.scale.factor)
        keys = set(zip((np.asarray(mask_rows) // t).tolist(), (np.asarray(mask_cols) // t).tolist(),
                       strict=True))
        return [b for b in boxes if (b[0] // t, b[1] // t) in keys]

    def features(self, box) -> np.ndarray:
        """Feature-resolution features ``(h, w, F)`` of the tile ``box`` (cached)."""
        key = tuple(box)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        feats = window_features(self.image, self.value_range, self.scale, *box)
        if feats.nbytes <= self.budget:
            self._cache[key] = feats
            self._bytes += feats.nbytes
            while self._bytes > self.budget and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.nbytes
        return feats

    def clear(self) -> None:
        """Drop every cached feature tile."""
        self._cache.clear()
        self._bytes = 0


def subsample(a: np.ndarray, f: int, shape) -> np.ndarray:
    """Pixels of the full-resolution window ``a`` at the centres of ``f x f`` blocks, as ``shape``."""
    if f == 1:
        out = a
    else:
        out = a[f // 2:: f, f // 2:: f]
    if out.shape != tuple(shape):
        pad = [(0, max(0, s - o)) for s, o in zip(shape, out.shape, strict=True)]
        out = np.pad(out, pad, mode="edge")[: shape[0], : shape[1]]
    return out
