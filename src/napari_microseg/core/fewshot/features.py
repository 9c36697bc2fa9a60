"""Multi-scale pixel features at the exemplars' scale, computed window by window.

The pixel classifier of "find similar" sees, for every pixel, a stack of
filter responses (Gaussian contrast against the local background, Laplacian of
Gaussian, Hessian eigenvalues, gradient magnitude, local standard deviation) at
a few scales chosen from the exemplars' size (:class:`Scale`). Large objects
are analysed on a block-averaged image (``Scale.factor``) so a 2048 x 2048
frame of 20-px loops costs as much as a 1024 x 1024 one.

Every computation reads a window of the raw image plus a margin wide enough
for the widest filter (reflected at image borders), normalises it with one
global intensity window and returns the window's interior, so a feature at a
pixel is the same whether the image is processed whole or tile by tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..prompting.normalize import apply_normalization

#: Relative scales (times the median exemplar radius) of the filter bank.
RELATIVE_SIGMAS = (0.3, 0.6, 1.0, 1.6)
#: Features are computed on ``f x f`` block means, ``f = floor(radius / FACTOR_RADIUS)``.
FACTOR_RADIUS = 4.0
#: The local background is a Gaussian this many times the largest exemplar radius.
BACKGROUND_FACTOR = 3.0


@dataclass(frozen=True)
class Scale:
    """Sizes learnt from the exemplars (full-resolution pixels).

    Attributes
    ----------
    radius : float
        Median equivalent radius ``sqrt(area / pi)`` of the exemplars.
    r_min, r_max : float
        Smallest and largest exemplar radius.
    area_min, area_max : float
        Smallest and largest exemplar area (px).
    factor : int
        Block-averaging factor of the feature image (1 = full resolution).
    """

    radius: float
    r_min: float
    r_max: float
    area_min: float
    area_max: float
    factor: int

    @classmethod
    def from_areas(cls, areas) -> Scale:
        """Scale from the exemplars' pixel areas."""
        areas = np.asarray(areas, float)
        radii = np.sqrt(areas / np.pi)
        r = float(np.median(radii))
        factor = int(np.clip(np.floor(r / FACTOR_RADIUS), 1, 8))
        return cls(r, float(radii.min()), float(radii.max()), float(areas.min()),
                   float(areas.max()), factor)

    @property
    def sigmas(self) -> tuple[float, ...]:
        """Filter scales in feature-image pixels (at least 0.7)."""
        r = self.radius / self.factor
        return tuple(float(max(0.7, s * r)) for s in RELATIVE_SIGMAS)

    @property
    def background_sigma(self) -> float:
        """Scale of the local background, in feature-image pixels."""
        return float(max(4.0, BACKGROUND_FACTOR * max(self.r_max, self.radius) / self.factor))

    @property
    def margin(self) -> int:
        """Margin (full-resolution px, a multiple of ``factor``) a window needs for exact features."""
        m = int(np.ceil(3.0 * self.background_sigma)) * self.factor + 4 * self.factor
        return m


def n_features(scale: Scale) -> int:
    """Length of the feature vector of one pixel."""
    return 2 + 6 * len(scale.sigmas)


def feature_stack(norm: np.ndarray, scale: Scale) -> np.ndarray:
    """Features of every pixel of a (block-averaged, normalised) float32 image.

    Returns
    -------
    ndarray of float32, shape (H, W, F)
    """
    x = np.asarray(norm, np.float32)
    bg = ndi.gaussian_filter(x, scale.background_sigma, mode="reflect", truncate=3.0)
    feats = [ndi.gaussian_filter(x, 0.7) - bg, bg]
    x2 = x * x
    for s in scale.sigmas:
        # Derivatives by central differences of the smoothed image: two Gaussian
        # filters per scale instead of seven, the same responses for s >= 0.7.
        g = ndi.gaussian_filter(x, s)
        gr, gc = np.gradient(g)
        hrr, hrc = np.gradient(gr)
        hcc = np.gradient(gc, axis=1)
        var = np.maximum(ndi.gaussian_filter(x2, s) - g * g, 0)
        s2 = np.float32(s * s)
        tr = (hrr + hcc) * 0.5
        det = np.sqrt(((hrr - hcc) * 0.5) ** 2 + hrc * hrc)
        feats += [g - bg, s2 * (hrr + hcc), s2 * (tr + det), s2 * (tr - det),
                  np.float32(s) * np.hypot(gr, gc), np.sqrt(var)]
    return np.stack(feats, axis=-1).astype(np.float32, copy=False)


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over ``f x f`` blocks (the shape must be a multiple of ``f``)."""
    if f == 1:
        return np.asarray(a, np.float32)
    h, w = a.shape
    return a.reshape(h // f, f, w // f, f).mean(axis=(1, 3), dtype=np.float32)


def read_window(image, value_range, r0: int, c0: int, r1: int, c1: int, pad: int, f: int):
    """Normalised, block-averaged window ``[r0, r1) x [c0, c1)`` plus ``pad`` px each side.

    ``r0, c0`` must be multiples of ``f``; the padded window is extended to a
    multiple of ``f`` and reflected where it leaves the image.

    Returns
    -------
    (ndarray, int)
        The float32 feature-resolution window and its padding in feature pixels.
    """
    h, w = image.shape
    h1 = r1 + (-(r1 - r0)) % f
    w1 = c1 + (-(c1 - c0)) % f
    ar0, ac0, ar1, ac1 = r0 - pad, c0 - pad, h1 + pad, w1 + pad
    sr0, sc0, sr1, sc1 = max(ar0, 0), max(ac0, 0), min(ar1, h), min(ac1, w)
    data = apply_normalization(np.asarray(image[sr0:sr1, sc0:sc1]), *value_range)
    widths = ((sr0 - ar0, ar1 - sr1), (sc0 - ac0, ac1 - sc1))
    if any(a or b for a, b in widths):
        data = _pad_reflect(data, widths)
    return block_mean(data, f), pad // f


def _pad_reflect(data: np.ndarray, widths) -> np.ndarray:
    """Reflect-pad, repeating the reflection when the pad is wider than the data."""
    out = data
    while True:
        avail = [(min(a, s - 1 if s > 1 else 0), min(b, s - 1 if s > 1 else 0))
                 for (a, b), s in zip(widths, out.shape, strict=True)]
        if all(x == 0 and y == 0 for x, y in avail):
            break
        out = np.pad(out, avail, mode="reflect")
        widths = [(a - x, b - y) for (a, b), (x, y) in zip(widths, avail, strict=True)]
        if all(a == 0 and b == 0 for a, b in widths):
            return out
    if any(a or b for a, b in widths):  # a 1-pixel dimension: repeat the edge
        out = np.pad(out, widths, mode="edge")
    return out


def window_features(image, value_range, scale: Scale, r0: int, c0: int, r1: int, c1: int):
    """Features of the window ``[r0, r1) x [c0, c1)`` at feature resolution.

    ``r0`` and ``c0`` must be multiples of ``scale.factor``. Returns an array
    of shape ``(ceil((r1-r0)/f), ceil((c1-c0)/f), F)``.
    """
    f = scale.factor
    data, p = read_window(image, value_range, r0, c0, r1, c1, scale.margin, f)
    feats = feature_stack(data, scale)
    return feats[p: feats.shape[0] - p, p: feats.shape[1] - p]
