"""Tile geometry for whole-image inference: overlapping windows and their kept parts.

Along each axis of length ``L``, windows of ``T`` pixels start every
``T - 2 * halo`` pixels, the last one ending at the image border (so every
window has the same size and tiles batch together). Consecutive windows
overlap by at least ``2 * halo``; the cut between what each keeps lies in the
middle of the overlap, so every kept pixel is at least ``halo`` pixels from a
window edge that is not an image border, and every image pixel is kept by
exactly one tile. Stitching the kept parts of a model with constant output
therefore gives an exactly constant map.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """Window ``[r0, r1) x [c0, c1)`` and the part ``[kr0, kr1) x [kc0, kc1)`` it keeps.

    All coordinates are in the full image.
    """

    r0: int
    c0: int
    r1: int
    c1: int
    kr0: int
    kc0: int
    kr1: int
    kc1: int

    @property
    def window(self) -> tuple[slice, slice]:
        """Index of the window in the full image."""
        return slice(self.r0, self.r1), slice(self.c0, self.c1)

    @property
    def kept(self) -> tuple[slice, slice]:
        """Index of the kept part in the full image."""
        return slice(self.kr0, self.kr1), slice(self.kc0, self.kc1)

    @property
    def kept_local(self) -> tuple[slice, slice]:
        """Index of the kept part inside the window."""
        return (
            slice(self.kr0 - self.r0, self.kr1 - self.r0),
            slice(self.kc0 - self.c0, self.kc1 - self.c0),
        )

    def keeps_point(self, row: float, col: float) -> bool:
        """Whether the full-image point ``(row, col)`` lies in the kept part."""
        return self.kr0 <= row < self.kr1 and self.kc0 <= col < self.kc1


def axis_windows(length: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(start, stop, keep_start, keep_stop)`` of the windows along one axis."""
    if length <= tile:
        return [(0, length, 0, length)]
    step = tile - 2 * halo
    if step < 1:
        raise ValueError(f"tile {tile} must exceed twice the halo {halo}")
    starts = list(range(0, length - tile, step)) + [length - tile]
    cuts = [0] + [(a + b + tile) // 2 for a, b in zip(starts[:-1], starts[1:], strict=True)] + [length]
    return [(s, s + tile, cuts[i], cuts[i + 1]) for i, s in enumerate(starts)]


def tile_grid(shape: tuple[int, int], tile: int, halo: int) -> list[Tile]:
    """Tiles covering an image of ``shape`` (rows, cols), row by row."""
    rows = axis_windows(int(shape[0]), tile, halo)
    cols = axis_windows(int(shape[1]), tile, halo)
    return [Tile(r0, c0, r1, c1, k0, j0, k1, j1) for r0, r1, k0, k1 in rows for c0, c1, j0, j1 in cols]


def batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    """Consecutive groups of at most ``size`` tiles."""
    for i in range(0, len(tiles), max(1, int(size))):
        yield tiles[i : i + max(1, int(size))]
