"""Overlapping tiles for embedding images larger than a model's input.

A :class:`TileGrid` covers a ``(rows, cols)`` image with windows of
``tile x tile`` pixels (SAM2's native 1024) that overlap by at least
``2 * halo``. Each tile's *interior* is the window minus ``halo`` on every side
that is not an image border; the interiors cover the whole image, so any single
click lies at least ``halo`` pixels from a cut edge of some tile.

A prompt set (clicks and box) is served by the grid tile whose interior contains
all of it with the largest margin (:meth:`TileGrid.tile_for`). When no interior
contains it all (a box spanning two tiles), a window centred on the prompts is
made instead (:meth:`TileGrid.centred`), so no prompt is dropped and no object
is cut at a tile border. Tiles are pure geometry; embedding them is the
session's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: SAM2's input size: a tile of this size is embedded without resampling.
DEFAULT_TILE = 1024
#: Context kept on each inner side of a tile.
DEFAULT_HALO = 128


@dataclass(frozen=True)
class Tile:
    """A window ``[r0, r1) x [c0, c1)`` of the full image.

    ``interior`` is ``(ir0, ic0, ir1, ic1)`` (half-open): the window minus the
    halo on sides that are not image borders. ``on_demand`` marks a window made
    for one prompt set rather than part of the grid.
    """

    r0: int
    c0: int
    r1: int
    c1: int
    interior: tuple[int, int, int, int]
    on_demand: bool = False

    @property
    def name(self) -> str:
        """Stable id, used as the cache key of the tile's embedding."""
        return f"r{self.r0}-{self.r1}_c{self.c0}-{self.c1}"

    @property
    def shape(self) -> tuple[int, int]:
        return (self.r1 - self.r0, self.c1 - self.c0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index of the window in the full image."""
        return (slice(self.r0, self.r1), slice(self.c0, self.c1))

    def contains(self, bounds) -> bool:
        """Whether the interior contains ``bounds`` = ``(rmin, cmin, rmax, cmax)``."""
        ir0, ic0, ir1, ic1 = self.interior
        rmin, cmin, rmax, cmax = bounds
        return ir0 <= rmin and ic0 <= cmin and rmax < ir1 and cmax < ic1

    def margin(self, bounds, image_shape) -> float:
        """Smallest distance from ``bounds`` to a window edge that is not an image border."""
        rmin, cmin, rmax, cmax = bounds
        h, w = image_shape
        gaps = []
        if self.r0 > 0:
            gaps.append(rmin - self.r0)
        if self.c0 > 0:
            gaps.append(cmin - self.c0)
        if self.r1 < h:
            gaps.append(self.r1 - 1 - rmax)
        if self.c1 < w:
            gaps.append(self.c1 - 1 - cmax)
        return float(min(gaps)) if gaps else math.inf

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """``(row, col)`` points (or a ``(4,)`` box) from image to tile coordinates."""
        pts = np.asarray(points, dtype=float)
        off = np.array([self.r0, self.c0], dtype=float)
        return (pts.reshape(-1, 2) - off).reshape(pts.shape)

    def place(self, mask: np.ndarray, image_shape) -> np.ndarray:
        """A full-image bool mask with ``mask`` (tile-sized) pasted at this tile."""
        if tuple(mask.shape) != self.shape:
            raise ValueError(f"mask shape {mask.shape} does not match tile {self.shape}")
        if (self.r0, self.c0) == (0, 0) and self.shape == tuple(image_shape):
            return np.asarray(mask, dtype=bool)
        full = np.zeros(tuple(image_shape), dtype=bool)
        full[self.slices] = mask
        return full


def _axis_positions(length: int, tile: int, halo: int) -> list[int]:
    """Window starts along one axis: even spacing, overlap >= 2 * halo."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / (tile - 2 * halo)) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _interior(start: int, stop: int, length: int, halo: int) -> tuple[int, int]:
    return (start + halo if start > 0 else 0, stop - halo if stop < length else length)


class TileGrid:
    """Overlapping tiles covering an image.

    Parameters
    ----------
    shape : (int, int)
        Image ``(rows, cols)``.
    tile : int
        Window side in pixels (an image smaller than this is one tile).
    halo : int
        Context on each inner side; windows overlap by at least ``2 * halo``.

    Examples
    --------
    >>> g = TileGrid((2048, 2048), tile=1024, halo=128)
    >>> len(g.tiles), g.tiles[0].name
    (9, 'r0-1024_c0-1024')
    """

    def __init__(self, shape, tile: int = DEFAULT_TILE, halo: int = DEFAULT_HALO):
        self.shape = (int(shape[0]), int(shape[1]))
        self.tile = int(tile)
        self.halo = int(halo)
        if self.shape[0] < 1 or self.shape[1] < 1:
            raise ValueError(f"empty image shape {shape}")
        if self.halo < 0 or 2 * self.halo >= self.tile:
            raise ValueError(f"need 0 <= 2 * halo < tile, got tile={tile}, halo={halo}")
        h, w = self.shape
        rows = _axis_positions(h, self.tile, self.halo)
        cols = _axis_positions(w, self.tile, self.halo)
        self.tiles: list[Tile] = [
            self._make(r0, c0, min(h, r0 + self.tile), min(w, c0 + self.tile))
            for r0 in rows
            for c0 in cols
        ]

    def _make(self, r0, c0, r1, c1, on_demand=False) -> Tile:
        ir = _interior(r0, r1, self.shape[0], self.halo)
        ic = _interior(c0, c1, self.shape[1], self.halo)
        return Tile(r0, c0, r1, c1, (ir[0], ic[0], ir[1], ic[1]), on_demand)

    def __len__(self) -> int:
        return len(self.tiles)

    def signature(self) -> dict:
        """What identifies this tiling (part of the embedding cache key)."""
        return {"tile": self.tile, "halo": self.halo}

    def clip_bounds(self, bounds) -> tuple[float, float, float, float]:
        """``bounds`` limited to the image."""
        h, w = self.shape
        rmin, cmin, rmax, cmax = (float(v) for v in bounds)
        return (
            min(max(rmin, 0.0), h - 1),
            min(max(cmin, 0.0), w - 1),
            min(max(rmax, 0.0), h - 1),
            min(max(cmax, 0.0), w - 1),
        )

    def tile_for(self, bounds) -> Tile:
        """The tile to serve prompts spanning ``bounds`` = ``(rmin, cmin, rmax, cmax)``.

        The grid tile whose interior contains ``bounds`` with the largest margin
        to a cut edge, else an on-demand window centred on ``bounds``.
        """
        b = self.clip_bounds(bounds)
        best, best_margin = None, -math.inf
        for t in self.tiles:
            if t.contains(b):
                m = t.margin(b, self.shape)
                if m > best_margin:
                    best, best_margin = t, m
        return best if best is not None else self.centred(b)

    def centred(self, bounds) -> Tile:
        """A window centred on ``bounds``, at least ``tile`` wide and ``halo`` beyond them.

        Square where the image allows (SAM2 resizes its input to a square), so
        prompts wider than ``tile - 2 * halo`` get a larger, downsampled window.
        """
        rmin, cmin, rmax, cmax = self.clip_bounds(bounds)
        h, w = self.shape
        side = max(
            self.tile,
            math.ceil(rmax - rmin + 1) + 2 * self.halo,
            math.ceil(cmax - cmin + 1) + 2 * self.halo,
        )
        sr, sc = min(side, h), min(side, w)
        r0 = int(min(max(round((rmin + rmax + 1) / 2 - sr / 2), 0), h - sr))
        c0 = int(min(max(round((cmin + cmax + 1) / 2 - sc / 2), 0), w - sc))
        return self._make(r0, c0, r0 + sr, c0 + sc, on_demand=True)
