"""Prediction of huge images in blocks, with memory bounded whatever the image size.

Above :data:`BLOCKWISE_PIXELS` pixels, ``microseg predict`` calls
:func:`predict_blockwise`: the image (opened lazily) is cut into blocks of
about :data:`BLOCK` px whose borders lie on the cuts of the whole-image tile
grid (:mod:`.tiles`). For each block

1. the class probabilities of the block's *region* (core plus a
   post-processing halo, :func:`postprocess_halo`) are computed from the tiles
   of the whole-image grid that keep a part of it, so every pixel gets exactly
   the value whole-image inference gives it;
2. :func:`~.postprocess.postprocess` runs on the region (minimum size off) and
   the core's objects are numbered as *pieces*; their class, area and first
   pixel (raster order) are recorded, the core's labels go to a temporary
   ``.npy`` file and its border rows/columns into full-width strips.

Pieces of one class that touch (8-connectivity) across a block border are
merged (connected components of the "touches" graph); the minimum size is
applied to the merged areas; objects are numbered by class, then by their
first pixel in raster order -- the whole-image numbering. The labels TIFF (and
``--probabilities``) is then written tile by tile from the temporary files.

Exactness: with ``cc`` instances and no opening, closing, smoothing or hole
filling, the result equals whole-image prediction pixel for pixel (tested).
With cleaning, each block sees :func:`postprocess_halo` px of context, so
results agree except for structures larger than the halo (hole filling of
holes crossing a block border, large closings). Watershed splits are
computed per region (core plus a halo of 4 ``min_distance`` or more); pieces
on both sides of a block border are merged when either block's own region
labels them as one object, so objects agree with whole-image watershed except
where the two blocks place a split differently (within the halo's context).
With resampling to the model's scale, each region is resampled on its own
(with a margin of the tile halo), which differs from whole-image resampling
by interpolation round-off near block borders.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .postprocess import PostprocessSettings, min_area_px, postprocess
from .tiles import axis_windows

#: Images with more pixels than this are predicted block by block.
BLOCKWISE_PIXELS = 64 * 2**20
#: Target side of a block's core (px).
BLOCK = 4096
#: Side of the TIFF tiles written (px, a multiple of 16).
TIFF_TILE = 256
#: Smallest post-processing halo (px) when any cleaning or watershed is on.
MIN_PP_HALO = 32


def use_blocks(shape) -> bool:
    """Whether an image of ``shape`` (rows, cols, ...) is predicted block by block."""
    return int(shape[0]) * int(shape[1]) > BLOCKWISE_PIXELS


def postprocess_halo(settings: PostprocessSettings) -> int:
    """Context (px) each block needs around its core for ``settings``; 0 for plain ``cc``."""
    s = settings
    if s.instances == "cc" and not (s.open_radius or s.close_radius or s.smooth_sigma
                                    or s.fill_holes):
        return 0
    halo = 2 * (int(s.open_radius) + int(s.close_radius)) + int(math.ceil(4 * s.smooth_sigma))
    if s.instances == "watershed":
        halo += 4 * int(s.min_distance)
    return max(MIN_PP_HALO, halo)


def block_cuts(length: int, tile: int, halo: int, block: int = BLOCK) -> list[int]:
    """Block borders along one axis, on the cuts of the whole-image tile grid.

    Returns ``[0, ..., length]``; blocks are at least ``block`` px long except
    a single-block axis, and the last one is at most ``1.5 * block`` long.
    """
    cuts = [w[2] for w in axis_windows(int(length), int(tile), int(halo))][1:]
    out = [0]
    for c in cuts:
        if c - out[-1] >= block and length - c >= block // 2:
            out.append(c)
    out.append(int(length))
    return out


@dataclass
class _Pieces:
    """Per-piece records of all blocks (index 0 is the background)."""

    cls: list = field(default_factory=lambda: [np.zeros(1, np.int64)])
    key: list = field(default_factory=lambda: [np.zeros(1, np.int64)])
    area: list = field(default_factory=lambda: [np.zeros(1, np.int64)])
    n: int = 1

    def add(self, cls, key, area) -> int:
        """Append pieces; return the global id of the first."""
        first = self.n
        self.cls.append(np.asarray(cls, np.int64))
        self.key.append(np.asarray(key, np.int64))
        self.area.append(np.asarray(area, np.int64))
        self.n += len(cls)
        return first


@dataclass
class BlockwiseResult:
    """What :func:`predict_blockwise` found; :meth:`label_tiles` streams the final labels."""

    shape: tuple
    dtype: np.dtype
    instance_ids: np.ndarray
    instance_class_ids: np.ndarray
    n_instances: int
    folder: Path
    row_cuts: list
    col_cuts: list
    lut: np.ndarray
    n_classes: int
    has_probabilities: bool

    @property
    def instance_classes(self) -> dict:
        """``{instance_id: class_id}`` as a dict (a Python object per instance: small images)."""
        return dict(zip(self.instance_ids.tolist(), self.instance_class_ids.tolist(), strict=True))

    def _rows(self, kind: str, y0: int, y1: int, plane: int | None = None) -> np.ndarray:
        parts = []
        for bi in range(len(self.row_cuts) - 1):
            r0, r1 = self.row_cuts[bi], self.row_cuts[bi + 1]
            a, b = max(y0, r0), min(y1, r1)
            if a >= b:
                continue
            row = []
            for bj in range(len(self.col_cuts) - 1):
                m = np.load(self.folder / f"{kind}_{bi}_{bj}.npy", mmap_mode="r")
                row.append(np.array(m[a - r0 : b - r0] if plane is None else m[plane, a - r0 : b - r0]))
                del m
            parts.append(np.concatenate(row, axis=1))
        return np.concatenate(parts, axis=0)

    def label_tiles(self, tile: int = TIFF_TILE):
        """Final labels as TIFF tiles (row-major, ``dtype``), read back from the block files."""
        h, w = self.shape
        for y in range(0, h, tile):
            rows = self.lut[self._rows("labels", y, min(h, y + tile))].astype(self.dtype)
            for x in range(0, w, tile):
                yield rows[:, x : x + tile]

    def probability_tiles(self, tile: int = TIFF_TILE):
        """Probability maps as float32 tiles, plane by plane (TIFF ``CYX`` order)."""
        h, w = self.shape
        for k in range(self.n_classes):
            for y in range(0, h, tile):
                rows = self._rows("prob", y, min(h, y + tile), plane=k)
                for x in range(0, w, tile):
                    yield rows[:, x : x + tile]


def _region_probabilities(model, card, image, region, window, tiling, batch_size, tta, cancel,
                          tick=None):
    """Probabilities ``(K, h, w)`` of ``region`` from the whole-image tile grid (exact).

    ``tick(n)`` is called after each batch of ``n`` tiles.
    """
    from .card import ModelError
    from .inference import InferenceCancelled, forward_batch, read_tile
    from .tiles import batches, tile_grid

    (r0, r1), (c0, c1) = region
    tile, halo, multiple = tiling
    k = card.n_classes
    out = np.zeros((k, r1 - r0, c1 - c0), np.float32)
    tiles = [t for t in tile_grid(image.shape[:2], tile, halo)
             if t.kr0 < r1 and t.kr1 > r0 and t.kc0 < c1 and t.kc1 > c0]
    # one read of the tiles' windows (a lazy image may decode whole chunks per read)
    wr0, wc0 = min(t.r0 for t in tiles), min(t.c0 for t in tiles)
    wr1, wc1 = max(t.r1 for t in tiles), max(t.c1 for t in tiles)
    sub = np.asarray(image[wr0:wr1, wc0:wc1])
    for group in batches(tiles, batch_size):
        if cancel is not None and cancel():
            raise InferenceCancelled("Prediction cancelled.")
        arr = np.stack([read_tile(sub, replace(t, r0=t.r0 - wr0, r1=t.r1 - wr0, c0=t.c0 - wc0,
                                               c1=t.c1 - wc0), window, card.in_channels, multiple)
                        for t in group])
        prob = forward_batch(model, arr, card.activation, tta)
        if prob.shape[1] != k or prob.shape[2:] != arr.shape[2:]:
            raise ModelError(f"Model {card.name!r} returned shape {prob.shape[1:]} for an input "
                             f"of {arr.shape[1:]}; expected {k} class maps of the input's size.")
        for t, p in zip(group, prob, strict=True):
            a, b = max(t.kr0, r0), min(t.kr1, r1)
            c, d = max(t.kc0, c0), min(t.kc1, c1)
            out[:, a - r0 : b - r0, c - c0 : d - c0] = p[:, a - t.r0 : b - t.r0, c - t.c0 : d - t.c0]
        if tick is not None:
            tick(len(group))
    return out


def _tile_counts(regions, shape, tiling, factors) -> list[int]:
    """Tiles the network runs on for each region (for progress)."""
    from .tiles import tile_grid

    tile, halo = tiling[:2]
    if factors is None:
        grid = tile_grid(shape, tile, halo)
        return [sum(1 for t in grid if t.kr0 < rb and t.kr1 > ra and t.kc0 < rd and t.kc1 > rc)
                for ra, rb, rc, rd in regions]
    return [len(tile_grid((max(1, round((rb - ra) * factors[0])),
                           max(1, round((rd - rc) * factors[1]))), tile, halo))
            for ra, rb, rc, rd in regions]


def _resampled_region(model, card, image, region, window, pixel_size, kw):
    """Probabilities of ``region`` when the image is resampled: the region resampled alone."""
    from .inference import predict_probabilities

    (r0, r1), (c0, c1) = region
    return predict_probabilities(model, card, image[r0:r1, c0:c1], pixel_size=pixel_size,
                                 window=window, **kw)


def _core_pieces(labels, classes_of, core, region_origin, width):
    """Core labels renumbered ``1..n`` by first pixel; each piece's class, first pixel and area."""
    (a, b), (c, d) = core
    r0, c0 = region_origin
    crop = labels[a - r0 : b - r0, c - c0 : d - c0]
    ids, first = np.unique(crop.ravel(), return_index=True)
    if ids.size and ids[0] == 0:
        ids, first = ids[1:], first[1:]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    local = lut[crop]
    area = np.bincount(local.ravel(), minlength=ids.size + 1)[1:]
    fr, fc = np.divmod(first, d - c)
    key = (fr + a) * np.int64(width) + (fc + c)
    cls = np.array([classes_of.get(int(i), 0) for i in ids], np.int64)
    return local, cls, key, area


def predict_blockwise(model, card, image, settings: PostprocessSettings, *, pixel_size=None,
                      analysis_mask=None, tile=None, halo=None, batch_size=4, tta=False,
                      probabilities=False, progress=None, cancel=None, block=None,
                      work_dir=None) -> BlockwiseResult:
    """Predict and post-process a (lazy) image block by block; see the module docstring.

    Parameters
    ----------
    model, card
        A semantic model and its card.
    image : array-like
        ``(H, W)`` or ``(H, W, C)``; read one region at a time (zarr, memmap).
    settings : PostprocessSettings
        As for :func:`~.postprocess.postprocess`; the minimum size applies to
        whole (merged) objects.
    pixel_size, tile, halo, batch_size, tta, cancel
        As for :func:`~.inference.predict_probabilities`.
    analysis_mask : array-like of bool, optional
        Pixels outside it get probability 0.
    probabilities : bool
        Keep the probability maps for :meth:`BlockwiseResult.probability_tiles`.
    progress : callable, optional
        ``progress(done_tiles, total_tiles)`` after every batch of tiles, over all blocks.
    block : int, optional
        Block side (default :data:`BLOCK`).
    work_dir : str or Path
        Folder for the temporary block files (about 4 bytes per pixel, 4 per
        pixel and class more with ``probabilities``); the caller removes it.

    Returns
    -------
    BlockwiseResult
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from .inference import (
        check_image,
        check_inference_args,
        effective_tiling,
        intensity_window,
        resample_factors,
    )

    check_inference_args(tile, halo, batch_size)
    image = check_image(image, card)
    h, w = (int(v) for v in image.shape[:2])
    settings.validate(image_shape=(h, w))
    min_px = min_area_px(settings.min_size, settings.min_size_unit, pixel_size)
    per_region = replace(settings, min_size=0.0)
    tiling = effective_tiling(model, card, tile, halo)
    window = intensity_window(image, card)
    factors = resample_factors(pixel_size, card)
    block = int(block or BLOCK)
    pp = postprocess_halo(settings)
    if factors is None:
        rows = block_cuts(h, tiling[0], tiling[1], block)
        cols = block_cuts(w, tiling[0], tiling[1], block)
    else:  # regions are resampled alone: margin of the tile halo at the image's scale
        pp += int(math.ceil(tiling[1] / min(factors))) + 1
        rows = [*range(0, h - block // 2, block), h] if h > block else [0, h]
        cols = [*range(0, w - block // 2, block), w] if w > block else [0, w]
        rows = sorted(set(rows))
        cols = sorted(set(cols))
    folder = Path(tempfile.mkdtemp(prefix="microseg-blocks-", dir=work_dir))
    pieces = _Pieces()
    ids = card.class_ids
    hstrips = {r: np.zeros((2, w), np.int64) for r in rows[1:-1]}
    vstrips = {c: np.zeros((2, h), np.int64) for c in cols[1:-1]}
    view = settings.instances == "watershed"  # merge what a block's own region joins
    seen = []
    blocks = [(bi, bj) for bi in range(len(rows) - 1) for bj in range(len(cols) - 1)]

    def region_of(bi, bj):
        a, b, c, d = rows[bi], rows[bi + 1], cols[bj], cols[bj + 1]
        return max(0, a - pp), min(h, b + pp), max(0, c - pp), min(w, d + pp)

    counts = _tile_counts([region_of(*ij) for ij in blocks], (h, w), tiling, factors)
    done = [0, 0]  # tiles of finished blocks, tiles of the current block

    def tick(n):
        done[1] += n
        if progress is not None:
            progress(min(done[0] + done[1], sum(counts)), sum(counts))

    for (bi, bj), count in zip(blocks, counts, strict=True):
        a, b, c, d = rows[bi], rows[bi + 1], cols[bj], cols[bj + 1]
        ra, rb, rc, rd = region_of(bi, bj)
        region = ((ra, rb), (rc, rd))
        if factors is None:
            prob = _region_probabilities(model, card, image, region, window, tiling,
                                         batch_size, tta, cancel, tick)
        else:
            prob = _resampled_region(
                model, card, image, region, window, pixel_size,
                dict(tile=tile, halo=halo, batch_size=batch_size, tta=tta, cancel=cancel,
                     progress=lambda n, _t: tick(n - done[1])))
        if analysis_mask is not None:
            prob[:, ~np.asarray(analysis_mask[ra:rb, rc:rd], bool)] = 0.0
        if probabilities:
            np.save(folder / f"prob_{bi}_{bj}.npy", prob[:, a - ra : b - ra, c - rc : d - rc])
        res = postprocess(prob, ids, per_region, pixel_size=pixel_size)
        del prob
        local, cls, key, area = _core_pieces(res.labels, res.instance_classes,
                                             ((a, b), (c, d)), (ra, rc), w)
        first = pieces.add(cls, key, area)
        glob = np.where(local > 0, local.astype(np.int64) + (first - 1), 0)
        if view:
            seen.extend(_view_pairs(res.labels, glob, (a, b, c, d), (ra, rb, rc, rd)))
        del res
        np.save(folder / f"labels_{bi}_{bj}.npy", glob.astype(np.uint32))
        if a in hstrips:
            hstrips[a][1, c:d] = glob[0]
        if b in hstrips:
            hstrips[b][0, c:d] = glob[-1]
        if c in vstrips:
            vstrips[c][1, a:b] = glob[:, 0]
        if d in vstrips:
            vstrips[d][0, a:b] = glob[:, -1]
        del local, glob
        done[0] += count
        done[1] = 0
        if progress is not None:
            progress(done[0], sum(counts))
    cls = np.concatenate(pieces.cls)
    key = np.concatenate(pieces.key)
    area = np.concatenate(pieces.area)
    n = pieces.n
    if view:
        pairs = [np.stack([pp_, (hstrips if kind == "h" else vstrips)[line][side][q]])
                 for kind, line, side, q, pp_ in seen]
        pairs = [p_[:, p_[1] > 0] for p_ in pairs]
    else:
        pairs = [_touching(s[0], s[1], cls) for s in (*hstrips.values(), *vstrips.values())]
    pairs = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
    graph = coo_matrix((np.ones(pairs.shape[1], np.int8), (pairs[0], pairs[1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    ncomp = int(comp.max()) + 1
    c_area = np.bincount(comp, weights=area, minlength=ncomp).astype(np.int64)
    c_key = np.full(ncomp, np.iinfo(np.int64).max)
    np.minimum.at(c_key, comp, key)
    c_cls = np.zeros(ncomp, np.int64)
    c_cls[comp] = cls
    order_of = np.full(max([0, *ids]) + 1, len(ids), np.int64)  # class id -> its rank
    order_of[np.asarray(ids, np.int64)] = np.arange(len(ids))
    c_order = order_of[c_cls]
    keep = c_area >= max(min_px, 1)
    keep[comp[0]] = False  # the background piece
    kept = np.nonzero(keep)[0]
    kept = kept[np.lexsort((c_key[kept], c_order[kept]))]
    final = np.zeros(ncomp, np.int64)
    final[kept] = np.arange(1, kept.size + 1)
    dtype = np.dtype(np.uint16) if kept.size <= np.iinfo(np.uint16).max else np.dtype(np.uint32)
    lut = final[comp].astype(dtype)  # global piece id (as in the block files) -> final label
    return BlockwiseResult(shape=(h, w), dtype=dtype,
                           instance_ids=np.arange(1, kept.size + 1, dtype=np.int64),
                           instance_class_ids=c_cls[kept],
                           n_instances=int(kept.size), folder=folder, row_cuts=rows,
                           col_cuts=cols, lut=lut,
                           n_classes=card.n_classes, has_probabilities=bool(probabilities))


def _view_pairs(labels, glob, core, region) -> list:
    """Pieces a block's region labels join across its core's border.

    For each 8-neighbour pair ``p`` (on the core's edge) and ``q`` (just outside,
    inside the region) with the same non-zero region label, returns
    ``(kind, line, side, q_position, piece_of_p)``: ``q`` is found later in the
    strip ``hstrips[line][side]`` (``kind == "h"``) or ``vstrips[line][side]``.
    """
    a, b, c, d = core
    ra, rb, rc, rd = region
    out = []
    sides = []
    if b < rb:
        sides.append(("h", b, 1, labels[b - 1 - ra, c - rc : d - rc], glob[-1], labels[b - ra], c, rc))
    if a > ra:
        sides.append(("h", a, 0, labels[a - ra, c - rc : d - rc], glob[0], labels[a - 1 - ra], c, rc))
    if d < rd:
        sides.append(("v", d, 1, labels[a - ra : b - ra, d - 1 - rc], glob[:, -1],
                      labels[:, d - rc], a, ra))
    if c > rc:
        sides.append(("v", c, 0, labels[a - ra : b - ra, c - rc], glob[:, 0], labels[:, c - 1 - rc],
                      a, ra))
    for kind, line, side, lp, pp_, ring, start, ring_start in sides:
        pos = np.arange(start, start + lp.size)
        for shift in (-1, 0, 1):
            q = pos + shift
            ok = (q >= ring_start) & (q < ring_start + ring.size)
            lq = np.zeros(lp.size, labels.dtype)
            lq[ok] = ring[q[ok] - ring_start]
            m = (lp > 0) & (lp == lq) & (pp_ > 0)
            if m.any():
                out.append((kind, line, side, q[m], pp_[m]))
    return out


def _touching(upper: np.ndarray, lower: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """``(2, E)`` pairs of pieces of one class that are 8-neighbours across a border line."""
    out = []
    for shift in (-1, 0, 1):
        if shift < 0:
            u, v = upper[1:], lower[:-1]
        elif shift > 0:
            u, v = upper[:-1], lower[1:]
        else:
            u, v = upper, lower
        m = (u > 0) & (v > 0)
        u, v = u[m], v[m]
        m = cls[u] == cls[v]
        out.append(np.stack([u[m], v[m]]))
    pairs = np.concatenate(out, axis=1)
    return np.unique(pairs, axis=1) if pairs.size else pairs
