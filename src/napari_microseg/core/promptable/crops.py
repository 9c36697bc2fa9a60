"""Crops around prompts: where the network looks, what it sees, where its mask goes.

The network never sees the whole image. For every prediction a square
*window* of ``side`` native pixels is chosen around the prompts, resampled to
the network's ``n x n`` input, and the output logits are resampled back to the
window and pasted into the full-image mask. The per-click cost therefore
depends on the window (the object's size), never on the image's.

Window rules (:func:`prompt_window`), with ``extent`` the bounding square of the
clicks, the box and the previous mask:

* with a box: ``side = box_context * extent + box_pad`` (the object fills about
  two thirds of the window whatever its size, so small boxes are magnified);
* clicks only: ``side = max(min_side, click_context * extent + click_pad)``.
  A first click has no extent, so the window is ``min_side``; if the predicted
  mask then runs into the window's edge (inside the image), the backend doubles
  the window about the same centre and predicts again (:func:`touches_edge`).

A window is shifted to lie inside the image where the image is large enough,
and padded (validity channel 0) where it is not. Coordinates map between the
image and the network as pixel centres: ``u = (r - r0 + 0.5) * n / side - 0.5``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

#: Logit used for "certainly not the object" where a previous mask is unknown.
LOW_LOGIT = -20.0


@dataclass(frozen=True)
class CropConfig:
    """How windows are chosen and encoded (stored in the model card).

    Parameters
    ----------
    n : int
        Network input side (pixels; divisible by 16).
    min_side : int
        Smallest window side for click-only prompts (native pixels).
    max_side : int
        Largest window side the growth may reach.
    click_context, click_pad : float
        Click-only window: ``click_context * extent + click_pad``.
    box_context, box_pad : float
        Box window: ``box_context * extent + box_pad``.
    click_sigma : float
        Width of the click bumps in network pixels.
    """

    n: int = 64
    min_side: int = 64
    max_side: int = 512
    click_context: float = 1.5
    click_pad: float = 16.0
    box_context: float = 1.5
    box_pad: float = 8.0
    click_sigma: float = 2.5

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> CropConfig:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        d = d or {}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Window(NamedTuple):
    """A square window ``[r0, r0 + side) x [c0, c0 + side)`` in image pixels (may overhang)."""

    r0: int
    c0: int
    side: int

    def grown(self, factor: float, shape: tuple[int, int], max_side: int) -> Window:
        """The window ``factor`` times larger about the same centre (at most ``max_side``)."""
        side = int(min(max_side, math.ceil(self.side * factor)))
        centre = (self.r0 + (self.side - 1) / 2, self.c0 + (self.side - 1) / 2)
        return square_window(centre, side, shape)

    def overlap(self, shape: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """``(image slices, window slices)`` of the part of the window inside the image."""
        h, w = shape
        ra, rb = max(self.r0, 0), min(self.r0 + self.side, h)
        ca, cb = max(self.c0, 0), min(self.c0 + self.side, w)
        img = (slice(ra, rb), slice(ca, cb))
        loc = (slice(ra - self.r0, rb - self.r0), slice(ca - self.c0, cb - self.c0))
        return img, loc


def square_window(centre, side: int, shape: tuple[int, int]) -> Window:
    """A ``side``-pixel window centred on ``centre``, shifted inside ``shape`` where it fits."""
    side = max(int(side), 1)
    origin = []
    for c, size in zip(centre, shape, strict=True):
        o = int(round(c - (side - 1) / 2))
        o = min(max(o, 0), size - side) if side <= size else -((side - size) // 2)
        origin.append(o)
    return Window(origin[0], origin[1], side)


#: First-click window sides a size hint may choose from (native pixels).
HINT_SIDES = (24, 32, 48, 64, 96, 128)
#: A hinted first window is this many times the typical object's side (sqrt of its area);
#: chosen on the model's training images (BENCHMARKS.md "First window sized by the committed
#: objects").
HINT_FACTOR = 3.0


def hinted_side(area: float, sides=HINT_SIDES, factor: float = HINT_FACTOR) -> int:
    """The side in ``sides`` nearest (in log scale) to ``factor`` times ``sqrt(area)``."""
    want = factor * math.sqrt(max(float(area), 1.0))
    return int(min(sides, key=lambda s: abs(math.log(s / want))))


def prompt_window(
    points: np.ndarray,
    box: np.ndarray | None,
    prev_bbox: tuple | None,
    shape: tuple[int, int],
    cfg: CropConfig,
) -> Window:
    """The window for a prediction (see the module docstring).

    Parameters
    ----------
    points : ndarray, shape (k, 2)
        Clicks ``(row, col)``.
    box : ndarray, shape (4,), optional
        ``(rmin, cmin, rmax, cmax)``.
    prev_bbox : tuple, optional
        Bounding box of the previous mask, same convention.
    shape : (int, int)
        Image shape.
    cfg : CropConfig
    """
    parts = [np.asarray(points, float).reshape(-1, 2)]
    if box is not None:
        parts.append(np.asarray(box, float).reshape(2, 2))
    if prev_bbox is not None:
        parts.append(np.asarray(prev_bbox, float).reshape(2, 2))
    allp = np.concatenate(parts)
    if not len(allp):
        raise ValueError("no prompts")
    lo, hi = allp.min(0), allp.max(0)
    extent = float((hi - lo).max()) + 1.0
    if box is not None:
        side = cfg.box_context * extent + cfg.box_pad
    else:
        side = max(cfg.min_side, cfg.click_context * extent + cfg.click_pad)
    side = int(math.ceil(min(side, max(cfg.max_side, extent + 2))))
    return square_window((lo + hi) / 2, side, shape)


def resize(arr: np.ndarray, n: int, mode: str = "bilinear") -> np.ndarray:
    """Resample a square 2-D array to ``n x n`` (antialiased when shrinking)."""
    if arr.shape[0] == n and arr.shape[1] == n:
        return np.asarray(arr, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(arr, np.float32))[None, None]
    anti = mode == "bilinear" and arr.shape[0] > n
    out = F.interpolate(t, size=(n, n), mode=mode, align_corners=False, antialias=anti)
    return out[0, 0].numpy()


def extract(image: np.ndarray, win: Window, fill: float | None = None) -> tuple:
    """``(crop, valid)`` at native resolution: the window's pixels, padded where it overhangs.

    ``fill`` (default: the mean of the valid pixels) pads the outside.
    """
    img_sl, loc_sl = win.overlap(image.shape)
    part = np.asarray(image[img_sl], np.float32)
    if part.shape == (win.side, win.side):
        return part, np.ones((win.side, win.side), np.float32)
    val = float(part.mean()) if part.size and fill is None else float(fill or 0.0)
    crop = np.full((win.side, win.side), val, np.float32)
    valid = np.zeros((win.side, win.side), np.float32)
    crop[loc_sl] = part
    valid[loc_sl] = 1.0
    return crop, valid


def to_net(coords: np.ndarray, win: Window, n: int) -> np.ndarray:
    """Image ``(row, col)`` coordinates to network pixel coordinates."""
    coords = np.asarray(coords, float).reshape(-1, 2)
    return (coords - [win.r0, win.c0] + 0.5) * (n / win.side) - 0.5


def click_map(points: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """Max of Gaussian bumps (peak 1) at network coordinates ``points``."""
    out = np.zeros((n, n), np.float32)
    if not len(points):
        return out
    ax = np.arange(n, dtype=np.float32)
    for r, c in points:
        g = np.exp(-((ax - r) ** 2) / (2 * sigma**2))[:, None] * np.exp(
            -((ax - c) ** 2) / (2 * sigma**2)
        )[None, :]
        np.maximum(out, g, out=out)
    return out


def box_map(box: np.ndarray | None, win: Window, n: int) -> np.ndarray:
    """1 on network pixels whose centre lies in ``box`` (pixel-inclusive edges)."""
    out = np.zeros((n, n), np.float32)
    if box is None:
        return out
    b = np.asarray(box, float)
    s = n / win.side
    r0 = (b[0] - 0.5 - win.r0 + 0.5) * s - 0.5
    r1 = (b[2] + 0.5 - win.r0 + 0.5) * s - 0.5
    c0 = (b[1] - 0.5 - win.c0 + 0.5) * s - 0.5
    c1 = (b[3] + 0.5 - win.c0 + 0.5) * s - 0.5
    ra, rb = max(int(math.ceil(r0)), 0), min(int(math.floor(r1)), n - 1)
    ca, cb = max(int(math.ceil(c0)), 0), min(int(math.floor(c1)), n - 1)
    if rb < ra or cb < ca:  # thinner than a network pixel: mark the nearest one
        ra = rb = int(np.clip(round((r0 + r1) / 2), 0, n - 1))
        ca = cb = int(np.clip(round((c0 + c1) / 2), 0, n - 1))
    out[ra : rb + 1, ca : cb + 1] = 1.0
    return out


class CropLogits(NamedTuple):
    """A prediction's logits on its window (what :attr:`Prediction.logits` holds)."""

    window: Window
    logits: np.ndarray  # (side, side) float32, native resolution


def prev_logits_in(prev, win: Window, shape: tuple[int, int]) -> np.ndarray | None:
    """The previous logits resampled onto ``win`` at native resolution (or ``None``).

    ``prev`` is a :class:`CropLogits` or a full-image array (a mask or logits;
    values > 0 count as object).
    """
    if prev is None:
        return None
    if isinstance(prev, CropLogits):
        if prev.window == win:
            return prev.logits
        out = np.full((win.side, win.side), LOW_LOGIT, np.float32)
        pw = prev.window
        # overlap of the two windows, in image coordinates
        ra, rb = max(win.r0, pw.r0), min(win.r0 + win.side, pw.r0 + pw.side)
        ca, cb = max(win.c0, pw.c0), min(win.c0 + win.side, pw.c0 + pw.side)
        if ra < rb and ca < cb:
            out[ra - win.r0 : rb - win.r0, ca - win.c0 : cb - win.c0] = prev.logits[
                ra - pw.r0 : rb - pw.r0, ca - pw.c0 : cb - pw.c0
            ]
        return out
    arr = np.asarray(prev)
    if arr.shape != tuple(shape):
        return None
    crop, _ = extract(arr.astype(np.float32), win, fill=0.0)
    return np.where(crop > 0, -LOW_LOGIT, LOW_LOGIT).astype(np.float32)


def encode(
    image: np.ndarray,
    win: Window,
    cfg: CropConfig,
    points: np.ndarray,
    labels: np.ndarray,
    box: np.ndarray | None = None,
    prev_native: np.ndarray | None = None,
) -> np.ndarray:
    """The network input ``(6, n, n)`` float32 for one window (see :mod:`.model`)."""
    n = cfg.n
    crop, valid = extract(image, win)
    img = resize(crop, n)
    val = resize(valid, n)
    v = val > 0.5
    if v.any():
        mu, sd = float(img[v].mean()), float(img[v].std())
    else:
        mu, sd = 0.0, 1.0
    img = np.where(v, (img - mu) / max(sd, 1e-3), 0.0)
    pts = to_net(points, win, n)
    labels = np.asarray(labels).reshape(-1)
    pos = click_map(pts[labels == 1], n, cfg.click_sigma)
    neg = click_map(pts[labels == 0], n, cfg.click_sigma)
    prev = np.zeros((n, n), np.float32)
    if prev_native is not None:
        prev = 1.0 / (1.0 + np.exp(-resize(prev_native, n)))
    return np.stack(
        [np.clip(img, -6, 6), val, pos, neg, box_map(box, win, n), prev]
    ).astype(np.float32)


def window_logits(net_logits: np.ndarray, win: Window) -> np.ndarray:
    """Network logits ``(n, n)`` resampled to the window's native ``(side, side)``."""
    return resize(net_logits, win.side)


def touches_edge(mask: np.ndarray, win: Window, shape: tuple[int, int]) -> bool:
    """Whether ``mask`` (native, on ``win``) reaches a window edge that lies inside the image."""
    h, w = shape
    s = win.side
    return bool(
        (win.r0 > 0 and mask[0].any())
        or (win.c0 > 0 and mask[:, 0].any())
        or (win.r0 + s < h and mask[-1].any())
        or (win.c0 + s < w and mask[:, -1].any())
    )


def place(mask: np.ndarray, win: Window, shape: tuple[int, int]) -> np.ndarray:
    """A full-image bool mask with the window's ``mask`` pasted in (overhang dropped)."""
    full = np.zeros(shape, dtype=bool)
    img_sl, loc_sl = win.overlap(shape)
    full[img_sl] = mask[loc_sl]
    return full
