"""What each synthetic kind contains: defect populations, sizes, looks, noise.

Projection geometry (bright-field TEM and STEM of a bcc/fcc crystal)
--------------------------------------------------------------------
The foil is viewed along the [001] zone axis. The crystal's [100] direction
makes a random angle ``theta0`` with the image x axis (one per image, drawn
from the object stream), so all defects of an image share one crystal frame:

* a0<100> loops (habit plane normal <100>): the [001] variant is face-on and
  projects to a circle; the [100] and [010] variants are edge-on and project
  to thin line-like ellipses along ``theta0 + 90 deg`` and ``theta0``;
* a0/2<111> loops: the normal makes 54.74 deg with the beam, so a loop of
  radius ``r`` projects to an ellipse with semi-axes ``r`` and
  ``r cos 54.74 = r / sqrt(3)``; the projected normals lie along the <110>
  diagonals, so the major axes lie along ``theta0 +- 45 deg``;
* a small jitter (+-2 deg, +-3 % aspect) stands for a slightly off-zone foil.

What the labels cover
---------------------
* loops: the filled ellipse bounded by the loop line, whether the loop is drawn
  as a ring (the dark line lies just inside the label's edge) or as a filled
  dark ellipse; edge-on loops: the thin ellipse of their dark line (at least
  2 px half-width, so that pixel counts stay faithful to the analytic area);
* black dots, precipitates: the drawn disc/ellipse;
* voids: the bright disc; the dark Fresnel fringe lies just outside it;
* pits: the irregular dark hollow; its bright secondary-electron edge straddles
  the outline.

Sizes are drawn in nm (log-normal or uniform, see the samplers) and capped at
30 % of the field of view; semi-axes below 1 px are raised to 1 px.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..classes import DEFAULT_CLASSES
from .geometry import COS_111_001
from .nuisances import Noise, Nuisances


@dataclass(frozen=True)
class Draft:
    """One object before placement: class, geometry in nm and look.

    ``geometry`` is ``("ellipse", a_nm, b_nm, angle_rad)`` or
    ``("star", r0_nm, harmonics)``; ``look`` holds :class:`~.render.Look`
    keyword arguments with widths in nm (``width_nm``).
    """

    class_name: str
    appearance: str
    geometry: tuple
    look: dict
    min_semi_minor_px: float = 1.0


@dataclass(frozen=True)
class Context:
    """Per-image quantities shared by the samplers."""

    pixel_size_nm: float
    theta0: float
    sign: float
    max_diameter_nm: float
    light_angle: float
    g_angle: float = 0.0


@dataclass(frozen=True)
class Population:
    """A defect population: class, relative abundance and a draft sampler."""

    weight: float
    sampler: Callable[[np.random.Generator, Context], Draft]


@dataclass(frozen=True)
class KindSpec:
    """Everything that defines one synthetic kind."""

    name: str
    description: str
    modality: str
    populations: tuple
    coverage: float
    pixel_size_nm: float
    background_level: float
    sign: float
    noise: Noise = field(default_factory=Noise)
    nuisances: Nuisances = field(default_factory=Nuisances)
    margin_nm: float = 1.5
    #: Optional ``layout(rng, ctx, shape, n_objects, spec) -> (placed, background,
    #: n_requested)`` placing the objects itself (see :mod:`.corrosion`).
    layout: Callable | None = None
    #: The kind's class table.
    classes: tuple = DEFAULT_CLASSES


def _lognormal(rng, median, sigma, lo, hi):
    return float(np.clip(median * math.exp(sigma * rng.standard_normal()), lo, hi))


def _loop_look(rng, ctx: Context, diameter_nm: float, ring_above_nm: float, stem: bool):
    """Ring or filled look for a loop of the given projected diameter."""
    p_ring = np.clip((diameter_nm - ring_above_nm) / (0.5 * ring_above_nm) + 0.5, 0.0, 1.0)
    if rng.random() < p_ring:
        if stem:
            look = dict(style="ring", amp=ctx.sign * rng.uniform(0.45, 0.7),
                        width_nm=rng.uniform(1.6, 2.6), fill=rng.uniform(0.15, 0.35),
                        fringe=rng.uniform(0.0, 0.1), lobe=rng.uniform(0.0, 0.35),
                        lobe_angle=ctx.g_angle)
        else:
            look = dict(style="ring", amp=ctx.sign * rng.uniform(0.35, 0.55),
                        width_nm=rng.uniform(0.7, 1.2), fill=rng.uniform(0.0, 0.2),
                        fringe=rng.uniform(0.1, 0.3), lobe=rng.uniform(0.2, 0.7),
                        lobe_angle=ctx.g_angle)
        return "ring", look
    look = dict(style="filled", amp=ctx.sign * rng.uniform(0.25, 0.4),
                width_nm=rng.uniform(0.3, 0.5), rim=rng.uniform(0.0, 0.4),
                lobe=rng.uniform(0.0, 0.5), lobe_angle=ctx.g_angle + math.pi / 2)
    return "filled", look


def loop_111(median_nm=9.0, sigma=0.35, lo=3.0, hi=30.0, ring_above_nm=7.0, stem=False):
    """Sampler of a0/2<111> loops seen along [001] (ellipses on the diagonals)."""

    def sample(rng, ctx: Context) -> Draft:
        d = _lognormal(rng, median_nm, sigma, lo, min(hi, ctx.max_diameter_nm))
        a = d / 2
        b = a * COS_111_001 * (1 + 0.03 * rng.uniform(-1, 1))
        angle = ctx.theta0 + rng.choice([-1, 1]) * math.pi / 4 + math.radians(rng.uniform(-2, 2))
        app, look = _loop_look(rng, ctx, d, ring_above_nm, stem)
        return Draft("<111> loop", app, ("ellipse", a, b, angle), look)

    return sample


def loop_100(median_nm=9.0, sigma=0.35, lo=3.0, hi=30.0, ring_above_nm=7.0, stem=False):
    """Sampler of a0<100> loops: face-on circles or edge-on lines along x/y."""

    def sample(rng, ctx: Context) -> Draft:
        d = _lognormal(rng, median_nm, sigma, lo, min(hi, ctx.max_diameter_nm))
        variant = int(rng.integers(3))
        if variant == 0:
            a = d / 2
            b = a * (1 - 0.03 * rng.uniform(0, 1))
            app, look = _loop_look(rng, ctx, d, ring_above_nm, stem)
            angle = ctx.theta0 + rng.uniform(0, math.pi)
            return Draft("<100> loop", app, ("ellipse", a, b, angle), look)
        half_width = rng.uniform(0.6, 1.0) * (1.6 if stem else 1.0)
        angle = ctx.theta0 + (math.pi / 2 if variant == 1 else 0.0)
        angle += math.radians(rng.uniform(-2, 2))
        look = dict(style="filled", amp=ctx.sign * rng.uniform(0.3, 0.5),
                    width_nm=rng.uniform(0.3, 0.5), rim=0.0)
        return Draft("<100> loop", "edge-on", ("ellipse", d / 2, half_width, angle), look,
                     min_semi_minor_px=2.0)

    return sample


def black_dot(lo=1.0, hi=4.0, stem=False):
    """Sampler of black dots: small dark blobs of 1-4 nm."""

    def sample(rng, ctx: Context) -> Draft:
        d = float(np.clip(rng.uniform(lo, hi), lo, ctx.max_diameter_nm))
        a = d / 2
        b = a * rng.uniform(0.75, 1.0)
        look = dict(style="filled", amp=ctx.sign * rng.uniform(0.4, 0.65),
                    width_nm=rng.uniform(0.25, 0.4) * (1.5 if stem else 1.0),
                    lobe=rng.uniform(0.0, 0.4), lobe_angle=ctx.g_angle + math.pi / 2)
        return Draft("black dot", "dot", ("ellipse", a, b, rng.uniform(0, math.pi)), look)

    return sample


def void(median_nm=7.0, sigma=0.4, lo=2.5, hi=25.0):
    """Sampler of voids in underfocus: bright disc with a dark Fresnel rim."""

    def sample(rng, ctx: Context) -> Draft:
        d = _lognormal(rng, median_nm, sigma, lo, min(hi, ctx.max_diameter_nm))
        a = d / 2
        b = a * rng.uniform(0.9, 1.0)
        look = dict(style="void", amp=rng.uniform(0.12, 0.25), rim=-rng.uniform(0.25, 0.4),
                    width_nm=rng.uniform(0.5, 0.8))
        return Draft("void", "underfocus", ("ellipse", a, b, rng.uniform(0, math.pi)), look)

    return sample


def precipitate(median_nm=9.0, sigma=0.4, lo=3.0, hi=30.0):
    """Sampler of precipitates: uniform slightly darker or brighter discs."""

    def sample(rng, ctx: Context) -> Draft:
        d = _lognormal(rng, median_nm, sigma, lo, min(hi, ctx.max_diameter_nm))
        a = d / 2
        b = a * rng.uniform(0.6, 1.0)
        sign = -1.0 if rng.random() < 0.7 else 1.0
        look = dict(style="filled", amp=sign * rng.uniform(0.12, 0.25),
                    width_nm=rng.uniform(0.3, 0.6))
        app = "dark-disc" if sign < 0 else "bright-disc"
        return Draft("precipitate", app, ("ellipse", a, b, rng.uniform(0, math.pi)), look)

    return sample


def pit(median_nm=600.0, sigma=0.45, lo=150.0, hi=2500.0):
    """Sampler of SEM corrosion pits: irregular round dark hollows."""

    def sample(rng, ctx: Context) -> Draft:
        d = _lognormal(rng, median_nm, sigma, lo, min(hi, ctx.max_diameter_nm))
        harm = []
        for k in (2, 3, 4, 5):
            amp = float(np.clip(rng.normal(0, 0.08 / math.sqrt(k - 1)), -0.15, 0.15))
            harm.append((k, amp, float(rng.uniform(0, 2 * math.pi))))
        look = dict(style="pit", amp=-rng.uniform(0.35, 0.55), rim=rng.uniform(0.15, 0.3),
                    width_nm=rng.uniform(0.04, 0.08) * d, shade=rng.uniform(0.2, 0.5),
                    shade_angle=ctx.light_angle)
        return Draft("pit", "pit", ("star", d / 2, tuple(harm)), look)

    return sample


_TEM_NOISE = Noise(dose=35.0, gaussian=0.04)
_TEM_NUIS = Nuisances(texture=0.06, texture_nm=0.6)
_STEM_NOISE = Noise(dose=60.0, gaussian=0.03, scan_lines=0.01)
_STEM_NUIS = Nuisances(background=0.2, background_scale=0.2, texture=0.05, texture_nm=1.0,
                       bend_contours=2, bend_contrast=0.3, bend_width=0.03, dislocations=14,
                       dislocation_contrast=0.6, dislocation_width_nm=1.8, blur_nm=0.6)
_SEM_NOISE = Noise(dose=80.0, gaussian=0.04, scan_lines=0.01)
_SEM_NUIS = Nuisances(background=0.12, texture=0.09, texture_nm=30.0, grains=0.07,
                      grain_size_nm=3000.0, bend_contours=0, dislocations=0, blur_nm=15.0)


def _stem_pops():
    return (
        Population(0.75, loop_111(24.0, 0.5, 8.0, 90.0, ring_above_nm=10.0, stem=True)),
        Population(0.15, loop_100(20.0, 0.5, 8.0, 70.0, ring_above_nm=10.0, stem=True)),
        Population(0.10, black_dot(2.0, 5.0, stem=True)),
    )


KIND_SPECS = {
    s.name: s
    for s in (
        KindSpec("tem-loops", "Bright-field TEM: <111> and <100> loops and black dots",
                 "bf-tem", (Population(0.45, loop_111()), Population(0.25, loop_100()),
                            Population(0.30, black_dot())),
                 coverage=0.06, pixel_size_nm=0.5, background_level=0.55, sign=-1.0,
                 noise=_TEM_NOISE, nuisances=_TEM_NUIS),
        KindSpec("tem-dots", "Bright-field TEM: black dots (1-4 nm)", "bf-tem",
                 (Population(1.0, black_dot()),), coverage=0.015, pixel_size_nm=0.5,
                 background_level=0.55, sign=-1.0, noise=_TEM_NOISE, nuisances=_TEM_NUIS,
                 margin_nm=1.0),
        KindSpec("tem-voids", "Bright-field TEM, underfocus: voids", "bf-tem",
                 (Population(1.0, void()),), coverage=0.06, pixel_size_nm=0.5,
                 background_level=0.5, sign=-1.0, noise=_TEM_NOISE, nuisances=_TEM_NUIS,
                 margin_nm=2.5),
        KindSpec("tem-precipitates", "Bright-field TEM: precipitates", "bf-tem",
                 (Population(1.0, precipitate()),), coverage=0.08, pixel_size_nm=0.5,
                 background_level=0.55, sign=-1.0, noise=_TEM_NOISE, nuisances=_TEM_NUIS),
        KindSpec("tem-mixed", "Bright-field TEM: loops, dots, voids and precipitates", "bf-tem",
                 (Population(0.3, loop_111()), Population(0.15, loop_100()),
                  Population(0.25, black_dot()), Population(0.15, void()),
                  Population(0.15, precipitate())),
                 coverage=0.06, pixel_size_nm=0.5, background_level=0.55, sign=-1.0,
                 noise=_TEM_NOISE, nuisances=_TEM_NUIS, margin_nm=2.5),
        KindSpec("stem-loops", "BF-STEM (FeCrAl-like): large <111> loops as dark rings",
                 "bf-stem", _stem_pops(), coverage=0.05, pixel_size_nm=1.0,
                 background_level=0.6, sign=-1.0, noise=_STEM_NOISE, nuisances=_STEM_NUIS,
                 margin_nm=3.0),
        KindSpec("stem-haadf-loops", "HAADF/LAADF-STEM: loops as bright rings on dark",
                 "haadf-stem", _stem_pops(), coverage=0.05, pixel_size_nm=1.0,
                 background_level=0.3, sign=1.0, noise=Noise(dose=25.0, gaussian=0.04,
                                                             scan_lines=0.015),
                 nuisances=_STEM_NUIS, margin_nm=3.0),
        KindSpec("sem-pits", "SEM (secondary electrons): corrosion pits on a grainy surface",
                 "sem", (Population(1.0, pit()),), coverage=0.08, pixel_size_nm=20.0,
                 background_level=0.5, sign=-1.0, noise=_SEM_NOISE, nuisances=_SEM_NUIS,
                 margin_nm=60.0),
    )
}
