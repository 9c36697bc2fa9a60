"""Contrast profiles that draw one defect onto a float canvas.

The canvas holds contrast relative to the background (background = 0, the
image is later built as ``1 + canvas``). Every profile is a function of the
signed distance ``d`` (px, negative inside) to the labelled outline, so the
drawn object and its label share one geometry. Widths are in pixels.

Styles
------
``"filled"``
    Uniform contrast ``amp`` inside with an erf edge of width ``width``, plus
    an optional rim ``rim * amp`` just inside the outline (filled loops, black
    dots, edge-on loops, precipitates).
``"ring"``
    A loop seen as its line: a Gaussian band of contrast ``amp`` centred half a
    width inside the outline, an interior of ``fill * amp`` and a weak fringe of
    opposite sign ``fringe * amp`` one and a half widths outside (the blurred
    dark-bright contrast of a dislocation loop in bright field).
``"void"``
    A cavity in underfocus: bright interior ``amp`` and a dark Fresnel fringe
    ``rim`` (negative) just outside the outline, with a faint second fringe.
``"pit"``
    An SEM pit: dark interior ``amp`` shaded across by ``shade`` along
    ``shade_angle``, and a bright secondary-electron edge ``rim`` at the outline.
``"corroded"``
    A generally corroded SEM area: mean contrast ``amp`` inside with an erf edge,
    modulated by its own rough texture (``texture``: relative strength of a
    speckle of dark micro-pits and bright nodules of size ``texture_px``,
    drawn from ``seed``), and a faint bright edge ``rim``.
``"attack"``
    An attacked grain-boundary stretch: a dark groove ``amp`` (darkest along
    the middle, where it is deepest) with bright secondary-electron edges
    ``rim`` on both banks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erfc

from .geometry import rasterize

STYLES = ("filled", "ring", "void", "pit", "corroded", "attack")


@dataclass(frozen=True)
class Look:
    """How one object is drawn (contrast relative to background, widths in px).

    Parameters
    ----------
    style : str
        One of :data:`STYLES`.
    amp : float
        Main contrast (negative = darker than background).
    width : float
        Edge softness or line/fringe width in px.
    fill, fringe, rim, shade : float
        Style-specific secondary contrasts (see module docstring).
    shade_angle : float
        Direction of the shading gradient (radians, counter-clockwise on screen).
    lobe : float
        Depth (0-1) of the angular fading of a loop's contrast: the contrast
        is multiplied by ``1 - lobe * cos²(phi - lobe_angle)``, ``phi`` being
        the polar angle about the centre, so it fades where the outline runs
        perpendicular to ``lobe_angle``.
    lobe_angle : float
        Direction (radians) along which the contrast fades (e.g. the
        diffraction vector g).
    texture, texture_px : float
        Strength and grain size (px) of a corroded area's own texture.
    seed : int
        Seed of that texture (drawn from the object stream).
    """

    style: str
    amp: float
    width: float = 1.0
    fill: float = 0.0
    fringe: float = 0.0
    rim: float = 0.0
    shade: float = 0.0
    shade_angle: float = 0.0
    lobe: float = 0.0
    lobe_angle: float = 0.0
    texture: float = 0.0
    texture_px: float = 1.0
    seed: int = 0

    def pad(self) -> float:
        """Pixels beyond the outline that the profile reaches."""
        return 4.0 * self.width + 2.0


def _inside(d: np.ndarray, w: float) -> np.ndarray:
    """Smooth indicator: 1 inside, 0 outside, edge width ``w`` px."""
    return 0.5 * erfc(d / (max(w, 0.2) * math.sqrt(2.0)))


def _band(d: np.ndarray, centre: float, w: float) -> np.ndarray:
    w = max(w, 0.3)
    return np.exp(-0.5 * ((d - centre) / w) ** 2)


def profile(look: Look, d: np.ndarray, yy=None, xx=None, centre=None) -> np.ndarray:
    """Contrast of ``look`` at signed distances ``d`` (px).

    ``yy``, ``xx`` (pixel coordinates) and ``centre`` ``(cy, cx, radius)`` are
    needed by the angular terms (``lobe``, ``shade``).
    """
    out = _profile(look, d, yy, xx, centre)
    if look.lobe and centre is not None:
        phi = np.arctan2(-(yy - centre[0]), xx - centre[1])
        out = out * (1.0 - look.lobe * np.cos(phi - look.lobe_angle) ** 2)
    return out


def _profile(look: Look, d, yy, xx, centre) -> np.ndarray:
    w = look.width
    if look.style == "filled":
        out = look.amp * _inside(d, w)
        if look.rim:
            out += look.rim * look.amp * _band(d, -w, w)
        return out
    if look.style == "ring":
        out = look.amp * _band(d, -0.5 * w, 0.6 * w)
        if look.fill:
            out += look.fill * look.amp * _inside(d, w)
        if look.fringe:
            out -= look.fringe * look.amp * _band(d, 1.2 * w, 0.8 * w)
        return out
    if look.style == "void":
        out = look.amp * _inside(d, 0.5 * w)
        out += look.rim * _band(d, 0.8 * w, 0.7 * w)
        out -= 0.3 * look.rim * _band(d, 2.6 * w, 0.8 * w)
        return out
    if look.style == "pit":
        # deeper (darker) towards the middle of the pit
        r = centre[2] if centre is not None else 10.0 * w
        out = look.amp * _inside(d, w) * (0.75 + 0.25 * np.clip(-d / (0.5 * r), 0.0, 1.0))
        if look.shade and centre is not None:
            cy, cx, r = centre
            gx = ((xx - cx) * math.cos(look.shade_angle) - (yy - cy) * math.sin(look.shade_angle))
            out = out * (1.0 + look.shade * np.clip(gx / max(r, 1.0), -1.0, 1.0))
        out += look.rim * _band(d, 0.3 * w, 0.8 * w)
        return out
    if look.style == "corroded":
        inside = _inside(d, w)
        out = look.amp * inside * (1.0 + look.texture * _speckle(look, d.shape))
        out += look.rim * _band(d, 0.0, w)
        return out
    if look.style == "attack":
        depth = np.clip(-d / max(w, 0.5), 0.0, 1.0)  # w: the groove's half-width here
        out = look.amp * _inside(d, 0.35 * w) * (0.6 + 0.4 * depth)
        out += look.rim * _band(d, 0.6, 0.8)
        return out
    raise ValueError(f"Unknown style {look.style!r}; expected one of {STYLES}.")


def _speckle(look: Look, shape) -> np.ndarray:
    """Zero-mean rough texture (about unit std, skewed: a few deep micro-pits)."""
    from scipy import ndimage

    rng = np.random.default_rng(look.seed)
    n = ndimage.gaussian_filter(rng.standard_normal(shape), max(look.texture_px, 0.5))
    n /= n.std() or 1.0
    coarse = ndimage.gaussian_filter(rng.standard_normal(shape), 4.0 * max(look.texture_px, 0.5))
    coarse /= coarse.std() or 1.0
    pits = np.where(n > 1.3, 2.5 * (n - 1.3), 0.0)  # amp < 0: positive values darken
    return 0.6 * n + pits + 0.5 * coarse - float(np.mean(pits))


def draw(canvas: np.ndarray, shape, look: Look) -> None:
    """Add the contrast of ``shape`` drawn with ``look`` to ``canvas`` in place."""
    h, w = canvas.shape
    window, yy, xx, _ = rasterize(shape, h, w, pad=look.pad())
    if yy.size == 0 or xx.size == 0:
        return
    d = shape.signed_distance(yy, xx)
    canvas[window] += profile(look, d, yy, xx, (shape.cy, shape.cx, shape.extent))
