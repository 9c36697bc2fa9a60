"""Unlabelled image content: uneven background, texture, grains, bend contours,
line dislocations, blur, and the detector noise models.

Nothing here touches the labels. Every component draws from its own random
stream, so switching one on or off, or changing its parameters, leaves the
objects, their labels and the other components unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

#: Order of the independent random streams used by :func:`apply_nuisances`.
STREAMS = ("background", "texture", "grains", "bends", "dislocations")


@dataclass(frozen=True)
class Nuisances:
    """Switchable unlabelled content; a zero amplitude or count turns a part off.

    Parameters
    ----------
    background : float
        Relative amplitude of the uneven illumination: a random quadratic
        polynomial plus a large-scale smooth field (about +-``background``).
    background_scale : float
        Correlation length of the smooth part, as a fraction of the image size.
    texture : float
        Relative standard deviation of fine mottling (specimen texture).
    texture_nm : float
        Correlation length of the mottling in nm.
    grains : float
        Relative standard deviation of grain-to-grain brightness (SEM surface);
        grain boundaries are drawn as thin dark lines of 1.5 times that contrast.
    grain_size_nm : float
        Mean grain diameter in nm.
    bend_contours : int
        Number of broad curved bands (bend contours).
    bend_contrast : float
        Peak relative darkening of a bend contour.
    bend_width : float
        Band width (sigma) as a fraction of the larger image side.
    dislocations : int
        Number of line dislocations (thin curves), kept clear of the objects.
    dislocation_contrast : float
        Peak relative contrast of a line.
    dislocation_width_nm : float
        Line width (sigma) in nm.
    blur_nm : float
        Sigma of the Gaussian point-spread function in nm.
    """

    background: float = 0.1
    background_scale: float = 0.5
    texture: float = 0.04
    texture_nm: float = 0.8
    grains: float = 0.0
    grain_size_nm: float = 2000.0
    bend_contours: int = 1
    bend_contrast: float = 0.25
    bend_width: float = 0.05
    dislocations: int = 2
    dislocation_contrast: float = 0.3
    dislocation_width_nm: float = 0.7
    blur_nm: float = 0.3

    def none(self) -> Nuisances:
        """A copy with everything switched off."""
        return replace(
            self, background=0.0, texture=0.0, grains=0.0, bend_contours=0, dislocations=0,
            blur_nm=0.0,
        )


@dataclass(frozen=True)
class Noise:
    """Detector noise.

    Parameters
    ----------
    dose : float
        Mean counts per pixel at background level for Poisson (shot) noise;
        0 turns it off.
    gaussian : float
        Standard deviation of additive Gaussian (read-out) noise, relative to
        the background level.
    scan_lines : float
        Standard deviation of a per-row offset (scan-line noise of STEM/SEM),
        relative to the background level.
    """

    dose: float = 50.0
    gaussian: float = 0.03
    scan_lines: float = 0.0

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of ``image`` (background ~ 1, non-negative)."""
        out = np.clip(image, 0.0, None)
        if self.dose > 0:
            out = rng.poisson(out * self.dose).astype(np.float32) / np.float32(self.dose)
        else:
            out = out.astype(np.float32, copy=True)
        if self.gaussian > 0:
            out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(self.gaussian)
        if self.scan_lines > 0:
            out += (rng.standard_normal(out.shape[0]) * self.scan_lines).astype(np.float32)[:, None]
        return out


def _interp_matrix(n: int, step: float, m: int) -> np.ndarray:
    """``(n, m)`` linear-interpolation weights from a grid of spacing ``step``
    (node ``j`` at ``(j - 1) * step``) to positions ``0..n-1``."""
    pos = np.arange(n) / step + 1.0
    j = np.clip(np.floor(pos).astype(int), 0, m - 2)
    f = (pos - j).astype(np.float32)
    mat = np.zeros((n, m), np.float32)
    mat[np.arange(n), j] = 1 - f
    mat[np.arange(n), j + 1] = f
    return mat


def upsample(coarse: np.ndarray, shape, step: float) -> np.ndarray:
    """Bilinear upsampling of a grid with node ``(i, j)`` at ``((i-1) step, (j-1) step)``."""
    wy = _interp_matrix(shape[0], step, coarse.shape[0])
    wx = _interp_matrix(shape[1], step, coarse.shape[1])
    return wy @ (coarse.astype(np.float32) @ wx.T)


def _coarse_grid(shape, step: float):
    h, w = shape
    gh, gw = int(math.ceil((h - 1) / step)) + 3, int(math.ceil((w - 1) / step)) + 3
    yy = ((np.arange(gh) - 1) * step).astype(np.float32)[:, None]
    xx = ((np.arange(gw) - 1) * step).astype(np.float32)[None, :]
    return yy, xx


def smooth_field(rng: np.random.Generator, shape, corr_px: float) -> np.ndarray:
    """Zero-mean, unit-std random field with correlation length ``corr_px``."""
    step = max(corr_px / 3.0, 1.0)
    yy, xx = _coarse_grid(shape, step)
    coarse = ndimage.gaussian_filter(rng.standard_normal((yy.size, xx.size)), 1.5, mode="wrap")
    coarse /= coarse.std() or 1.0
    return upsample(coarse, shape, step)


def illumination(rng, shape, amplitude: float, scale: float) -> np.ndarray:
    """Multiplicative uneven background ``1 + amplitude * (poly + field)``."""
    h, w = shape
    step = max(max(h, w) / 64.0, 1.0)
    yy, xx = _coarse_grid(shape, step)
    y, x = 2 * yy / max(h - 1, 1) - 1, 2 * xx / max(w - 1, 1) - 1
    c = rng.normal(0, 1, 5) * np.array([0.5, 0.5, 0.25, 0.25, 0.2])
    poly = c[0] * x + c[1] * y + c[2] * x * x + c[3] * y * y + c[4] * x * y
    field = smooth_field(rng, (yy.size, xx.size), scale * max(h, w) / step)
    return 1.0 + amplitude * upsample(0.6 * poly + 0.5 * field, shape, step)


def texture(rng, shape, amplitude: float, corr_px: float) -> np.ndarray:
    """Fine mottling: Gaussian-filtered white noise of std ``amplitude``."""
    n = rng.standard_normal(shape, dtype=np.float32)
    if corr_px > 0.3:
        n = ndimage.gaussian_filter(n, corr_px)
    s = float(n.std()) or 1.0
    return n * np.float32(amplitude / s)


def grains(rng, shape, amplitude: float, grain_px: float) -> np.ndarray:
    """Voronoi grains with random brightness and darker boundaries."""
    h, w = shape
    n = max(int(h * w / (0.8 * grain_px**2)), 2)
    seeds = np.column_stack([rng.uniform(-grain_px, h + grain_px, n),
                             rng.uniform(-grain_px, w + grain_px, n)])
    grey = rng.normal(0, amplitude, n).astype(np.float32)
    step = int(max(1, min(4, grain_px // 25)))
    gy, gx = np.mgrid[0:h:step, 0:w:step]
    dist, idx = cKDTree(seeds).query(np.column_stack([gy.ravel(), gx.ravel()]), k=2)
    gap = (dist[:, 1] - dist[:, 0]).reshape(gy.shape).astype(np.float32)
    gid = idx[:, 0].reshape(gy.shape)
    if step > 1:
        gap = ndimage.zoom(gap, step, order=1)[:h, :w]
        gid = np.repeat(np.repeat(gid, step, 0), step, 1)[:h, :w]
    bw = max(1.5, grain_px / 100.0)
    return grey[gid] - np.float32(1.5 * amplitude) * np.exp(-0.5 * (gap / bw) ** 2)


def bend_contours(rng, shape, count: int, contrast: float, width: float) -> np.ndarray:
    """Darkening map (0 = none) of ``count`` broad, wavy bands of varying width.

    Each contour follows a large perturbed circle crossing the image and comes
    with a weaker parallel band, as bend contours of a buckled foil do.
    """
    h, w = shape
    size = max(h, w)
    step = max(size / 256.0, 1.0)
    yy, xx = _coarse_grid(shape, step)
    out = np.zeros((yy.size, xx.size), np.float32)
    for _ in range(count):
        radius = size * rng.uniform(0.4, 1.5)
        theta = rng.uniform(0, 2 * math.pi)
        py, px = rng.uniform(0.1, 0.9) * (h - 1), rng.uniform(0.1, 0.9) * (w - 1)
        cy, cx = py - radius * math.sin(theta), px - radius * math.cos(theta)
        wobble = smooth_field(rng, out.shape, 0.3 * size / step)
        dist = np.hypot(yy - cy, xx - cx) - radius + 0.05 * size * wobble
        sig = width * size * rng.uniform(0.6, 1.4)
        sig = sig * np.clip(1 + 0.4 * smooth_field(rng, out.shape, 0.3 * size / step), 0.3, 2.0)
        amp = contrast * rng.uniform(0.6, 1.0)
        band = np.exp(-0.5 * (dist / sig) ** 2)
        band += 0.5 * np.exp(-0.5 * ((dist - 3.0 * sig) / (0.6 * sig)) ** 2)
        out = np.maximum(out, amp * band)
    return upsample(out, shape, step)


def _curve(rng, shape, step: float) -> np.ndarray:
    """Points ``(y, x)`` every ``step`` px along a smooth random curve."""
    h, w = shape
    size = max(h, w)
    length = rng.uniform(0.1, 0.5) * size
    s = np.arange(0, length, step)
    t = s / length
    heading = rng.uniform(0, 2 * math.pi) + rng.normal(0, 0.7) * t + rng.normal(0, 0.5) * t * t
    y0, x0 = rng.uniform(-0.1, 1.1) * h, rng.uniform(-0.1, 1.1) * w
    y = y0 + np.concatenate([[0], np.cumsum(np.sin(heading[:-1]) * step)])
    x = x0 + np.concatenate([[0], np.cumsum(np.cos(heading[:-1]) * step)])
    return np.column_stack([y, x])


def dislocations(rng, shape, count, contrast, width_px, keep_clear=None) -> np.ndarray:
    """Contrast map (>= 0) of ``count`` line dislocations of varying width.

    Parameters
    ----------
    keep_clear : tuple of (ndarray, ndarray) or None
        ``(centres (n, 2), radii (n,))`` of circles the lines must avoid; a
        line that cannot be placed clear of them in 10 tries is cut into
        pieces outside them.
    """
    h, w = shape
    step = 0.5
    layer = np.zeros(shape, np.float32)
    for _ in range(count):
        amp = contrast * rng.uniform(0.5, 1.0)
        sig = max(width_px * rng.uniform(0.7, 2.0), 0.5)
        for _try in range(10):
            pts = _curve(rng, shape, step)
            if keep_clear is None or len(keep_clear[0]) == 0:
                break
            dist, _ = cKDTree(pts).query(keep_clear[0])
            if np.all(dist > keep_clear[1] + 2 * sig + 1):
                break
        else:
            # no clear path: cut the last curve where it would cross an object
            hit = cKDTree(keep_clear[0]).query_ball_point(pts, keep_clear[1].max() + 2 * sig + 1)
            keep = np.ones(len(pts), bool)
            for k, near in enumerate(hit):
                if near:
                    d = np.hypot(*(keep_clear[0][near] - pts[k]).T)
                    keep[k] = np.all(d > keep_clear[1][near] + 2 * sig + 1)
            pts = pts[keep]
            if len(pts) < 2:
                continue
        # contrast oscillates along dislocations inclined in the foil
        s = np.arange(len(pts)) * step
        period = rng.uniform(8, 30) * sig
        weight = amp * (0.65 + 0.35 * np.sin(2 * math.pi * s / period + rng.uniform(0, 6.3)))
        weight *= step * math.sqrt(2 * math.pi) * sig
        pad = int(4 * sig) + 2
        r0 = max(int(pts[:, 0].min()) - pad, 0)
        r1 = min(int(pts[:, 0].max()) + pad + 2, h)
        c0 = max(int(pts[:, 1].min()) - pad, 0)
        c1 = min(int(pts[:, 1].max()) + pad + 2, w)
        if r1 <= r0 or c1 <= c0:
            continue
        win = np.zeros((r1 - r0, c1 - c0), np.float32)
        iy, ix = np.floor(pts[:, 0]).astype(int) - r0, np.floor(pts[:, 1]).astype(int) - c0
        fy, fx = pts[:, 0] - r0 - iy, pts[:, 1] - c0 - ix
        for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            yy, xx = iy + dy, ix + dx
            ok = (yy >= 0) & (yy < win.shape[0]) & (xx >= 0) & (xx < win.shape[1])
            np.add.at(win, (yy[ok], xx[ok]), (weight * wt)[ok])
        layer[r0:r1, c0:c1] += ndimage.gaussian_filter(win, sig)
    return layer


def apply_nuisances(contrast, nuis: Nuisances, rngs: dict, pixel_size_nm: float,
                    sign: float = -1.0, keep_clear=None) -> np.ndarray:
    """Build the clean image (background ~ 1) from the objects' contrast.

    Parameters
    ----------
    contrast : ndarray of float32
        Objects' contrast relative to background (0 = background).
    nuis : Nuisances
    rngs : dict
        One ``numpy.random.Generator`` per name in :data:`STREAMS`.
    pixel_size_nm : float
    sign : float
        -1 when distractors (lines, bends, grain boundaries) are dark, +1 when
        bright (HAADF).
    keep_clear : tuple or None
        Circles the dislocation lines avoid, see :func:`dislocations`.
    """
    shape = contrast.shape
    img = 1.0 + contrast.astype(np.float32, copy=True)
    if nuis.texture > 0:
        img += texture(rngs["texture"], shape, nuis.texture, nuis.texture_nm / pixel_size_nm)
    if nuis.grains > 0:
        img += grains(rngs["grains"], shape, nuis.grains, nuis.grain_size_nm / pixel_size_nm)
    if nuis.dislocations > 0 and nuis.dislocation_contrast > 0:
        lines = dislocations(rngs["dislocations"], shape, nuis.dislocations,
                             nuis.dislocation_contrast,
                             nuis.dislocation_width_nm / pixel_size_nm, keep_clear)
        img *= 1.0 + sign * np.minimum(lines, 0.9)
    if nuis.bend_contours > 0 and nuis.bend_contrast > 0:
        bends = bend_contours(rngs["bends"], shape, nuis.bend_contours, nuis.bend_contrast,
                              nuis.bend_width)
        img *= 1.0 + sign * bends
    if nuis.blur_nm > 0:
        img = ndimage.gaussian_filter(img, nuis.blur_nm / pixel_size_nm)
    if nuis.background > 0:
        img *= illumination(rngs["background"], shape, nuis.background, nuis.background_scale)
    return img
