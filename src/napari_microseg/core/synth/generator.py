"""Synthetic micrographs with exact ground truth.

:func:`generate` draws a micrograph of one of :data:`KINDS` together with its
instance labels, the class of every instance and a per-instance truth record
computed analytically from the drawn geometry. :func:`write_sample` saves the
image (ImageJ TIFF calibrated in nm), the labels (through
:func:`~napari_microseg.core.labels_io.write_labels`) and ``<stem>_truth.json``.

Truth conventions
-----------------
* Coordinates: ``centre_y_nm = row * pixel size``, ``centre_x_nm = column *
  pixel size`` with pixel centres at integer row/column (scikit-image's
  ``centroid`` times the pixel size; napari world coordinates with
  ``scale = pixel size``). The centre is the area centroid of the whole
  (unclipped) shape.
* ``semi_major_nm``/``semi_minor_nm``: the drawn ellipse's semi-axes; for pits,
  those of the moment-equivalent ellipse (half of scikit-image's
  ``axis_major_length``/``axis_minor_length`` for an unclipped pit).
* ``orientation_deg``: direction of the major axis from the +x (column) axis,
  counter-clockwise as displayed (towards the top of the image), in
  ``(-90, 90]``. In terms of scikit-image's ``orientation`` (radians, from the
  row axis) it is ``degrees(orientation) - 90`` folded to ``(-90, 90]``.
* ``area_nm2``: analytic area of the shape inside the image frame (clipped
  objects report the clipped area; ``full_area_nm2`` is the whole shape);
  ``equivalent_diameter_nm = 2 sqrt(area_nm2 / pi)``.
* ``area_px``: exact number of label pixels (pixel-centre-inside rule).
* ``touches_edge``: the label reaches the first/last row or column;
  ``clipped``: the analytic shape extends beyond the image frame.

Random streams
--------------
``numpy.random.SeedSequence(seed)`` spawns independent streams for the objects
(geometry, classes, looks), the detector noise and each nuisance. Objects and
labels therefore do not change when noise or nuisances are switched or tuned.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..calibration import PixelSize
from ..classes import ClassTable
from .corrosion import CORROSION_SPEC
from .geometry import Ellipse, StarShape, clipped_area, fold_angle_deg, rasterize
from .nuisances import STREAMS, Noise, Nuisances, apply_nuisances
from .recipes import KIND_SPECS as _RECIPES
from .recipes import Context, Draft
from .render import Look, draw

#: Every synthetic kind: the recipes' and the SEM corrosion kind (:mod:`.corrosion`).
KIND_SPECS = {**_RECIPES, CORROSION_SPEC.name: CORROSION_SPEC}
#: Names of the synthetic kinds :func:`generate` knows.
KINDS = tuple(KIND_SPECS)

#: Smallest label an instance may have, in pixels.
MIN_AREA_PX = 3

_DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
_EIGHT = np.ones((3, 3), bool)


@dataclass
class SyntheticSample:
    """A synthetic micrograph with its exact ground truth.

    Attributes
    ----------
    image : ndarray
        2-D ``uint8`` or ``uint16`` micrograph.
    labels : ndarray of int32
        Instance labels, 0 background, ids ``1..n``.
    instance_classes : dict
        ``{instance id: class id}`` in :data:`~..classes.DEFAULT_CLASSES`.
    classes : ClassTable
    pixel_size : PixelSize
    kind : str
    seed : int
    truth : list of dict
        One record per instance, ordered by id (see module docstring).
    metadata : dict
        Generation parameters (modality, crystal rotation, noise, nuisances).
    """

    image: np.ndarray
    labels: np.ndarray
    instance_classes: dict
    classes: ClassTable
    pixel_size: PixelSize
    kind: str
    seed: int
    truth: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def truth_dict(self) -> dict:
        """JSON-ready ground truth: pixel size, kind, seed, classes, instances."""
        return {
            "format": "napari-microseg synthetic truth",
            "version": 1,
            "kind": self.kind,
            "seed": self.seed,
            "shape": list(self.image.shape),
            "dtype": str(self.image.dtype),
            "pixel_size": self.pixel_size.to_dict(),
            "classes": self.classes.to_list(),
            "instance_classes": {str(k): v for k, v in self.instance_classes.items()},
            "metadata": self.metadata,
            "truth": self.truth,
        }

    def truth_json(self) -> str:
        """:meth:`truth_dict` as an indented JSON string."""
        return json.dumps(self.truth_dict(), indent=1)


def _option(value, default, cls):
    if value is True:
        return default
    if value is False or value is None:
        return None
    if isinstance(value, cls):
        return value
    raise TypeError(f"Expected bool or {cls.__name__}, got {type(value).__name__}.")


def _draw_drafts(rng, spec, ctx, n_objects, field_nm2) -> list[Draft]:
    weights = np.array([p.weight for p in spec.populations], float)
    weights /= weights.sum()
    drafts, covered = [], 0.0
    limit = n_objects if n_objects is not None else 20000
    while len(drafts) < limit:
        if n_objects is None and covered >= spec.coverage * field_nm2:
            break
        pop = spec.populations[int(rng.choice(len(weights), p=weights))]
        d = pop.sampler(rng, ctx)
        drafts.append(d)
        g = d.geometry
        covered += math.pi * (g[1] * g[2] if g[0] == "ellipse" else g[1] ** 2)
    return drafts


def _shape_px(draft: Draft, cy: float, cx: float, ps: float):
    g = draft.geometry
    if g[0] == "star":
        return StarShape(cy, cx, max(g[1] / ps, 1.5), g[2])
    a = max(g[1] / ps, 1.0)
    b = min(max(g[2] / ps, draft.min_semi_minor_px), a)
    return Ellipse(cy, cx, a, b, g[3])


def _place(rng, drafts, shape, ps, margin_px):
    """Rejection-sample non-overlapping positions; return accepted objects."""
    h, w = shape
    order = sorted(range(len(drafts)), key=lambda i: -_shape_px(drafts[i], 0, 0, ps).extent)
    centres = np.empty((len(drafts), 2))
    radii = np.empty(len(drafts))
    placed = []
    for i in order:
        draft = drafts[i]
        proto = _shape_px(draft, 0.0, 0.0, ps)
        for _try in range(60):
            cy, cx = rng.uniform(-0.5, h - 0.5), rng.uniform(-0.5, w - 0.5)
            n = len(placed)
            if n:
                dist = np.hypot(centres[:n, 0] - cy, centres[:n, 1] - cx)
                if np.any(dist <= radii[:n] + proto.extent + margin_px):
                    continue
            shp = _shape_px(draft, cy, cx, ps)
            window, _, _, mask = rasterize(shp, h, w)
            if mask is None or mask.sum() < MIN_AREA_PX:
                continue
            if ndimage.label(mask, _EIGHT)[1] != 1:
                continue
            centres[n] = (cy, cx)
            radii[n] = shp.extent
            placed.append((draft, shp, window, mask))
            break
    return placed


def generate(
    kind: str = "tem-loops",
    shape: tuple[int, int] = (512, 512),
    pixel_size_nm: float | None = None,
    seed: int = 0,
    n_objects: int | None = None,
    noise: bool | Noise = True,
    nuisances: bool | Nuisances = True,
    dtype: str = "uint8",
) -> SyntheticSample:
    """Draw a synthetic micrograph of ``kind`` with exact ground truth.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    shape : (int, int)
        Image size ``(rows, columns)``, at least 16 x 16.
    pixel_size_nm : float or None
        Pixel size in nm; ``None`` uses the kind's default (0.5 nm for TEM
        kinds, 1 nm for STEM, 20 nm for SEM).
    seed : int
        Non-negative seed; the same arguments always give the same sample.
    n_objects : int or None
        Number of objects to draw; ``None`` draws until the kind's default area
        coverage is reached. Fewer are kept when they cannot be placed without
        overlap (``metadata["n_requested"]`` keeps the number drawn).
    noise : bool or Noise
        Detector noise: ``True`` for the kind's default, ``False`` for none.
    nuisances : bool or Nuisances
        Unlabelled content (background, texture, grains, bend contours, line
        dislocations, blur): ``True`` for the kind's default, ``False`` for none.
    dtype : {"uint8", "uint16"}
        Image data type.

    Returns
    -------
    SyntheticSample
    """
    if kind not in KIND_SPECS:
        raise ValueError(f"Unknown synthetic kind {kind!r}; expected one of {', '.join(KINDS)}.")
    spec = KIND_SPECS[kind]
    dtype = str(np.dtype(dtype))
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'uint8' or 'uint16', got {dtype!r}.")
    h, w = (int(shape[0]), int(shape[1]))
    if h < 16 or w < 16:
        raise ValueError(f"shape must be at least 16 x 16, got {shape!r}.")
    ps = float(spec.pixel_size_nm if pixel_size_nm is None else pixel_size_nm)
    if not (math.isfinite(ps) and ps > 0):
        raise ValueError(f"pixel_size_nm must be positive, got {pixel_size_nm!r}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed!r}.")
    noise_opt = _option(noise, spec.noise, Noise)
    nuis_opt = _option(nuisances, spec.nuisances, Nuisances)

    root = np.random.SeedSequence(int(seed))
    obj_ss, noise_ss, nuis_ss = root.spawn(3)
    rng = np.random.default_rng(obj_ss)
    ctx = Context(ps, rng.uniform(0, math.pi / 2), spec.sign, 0.3 * min(h, w) * ps,
                  rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi))
    contrast = np.zeros((h, w), np.float32)
    if spec.layout is not None:
        placed, background, n_requested = spec.layout(rng, ctx, (h, w), n_objects, spec)
        contrast += background
    else:
        drafts = _draw_drafts(rng, spec, ctx, n_objects, h * w * ps * ps)
        placed, n_requested = _place(rng, drafts, (h, w), ps, max(2.0, spec.margin_nm / ps)), len(drafts)
    placed.sort(key=lambda p: (p[1].cy, p[1].cx))

    classes = ClassTable(spec.classes)
    labels = np.zeros((h, w), np.int32)
    truth, instance_classes = [], {}
    clear_c, clear_r = [], []
    for iid, (draft, shp, window, mask) in enumerate(placed, start=1):
        labels[window][mask] = iid
        class_id = classes.id_of(draft.class_name)
        instance_classes[iid] = class_id
        lk = dict(draft.look)
        width_px = max(lk.pop("width_nm") / ps, 0.3)
        look = Look(width=width_px, **lk)
        draw(contrast, shp, look)
        clear_c.append((shp.cy, shp.cx))
        clear_r.append(shp.extent + 2.0 * look.width + 1.0)
        truth.append(_record(iid, class_id, draft, shp, window, mask, look, ps, (h, w), classes))

    if nuis_opt is not None:
        rngs = dict(zip(STREAMS, (np.random.default_rng(s) for s in nuis_ss.spawn(len(STREAMS))),
                        strict=True))
        clear = (np.array(clear_c).reshape(-1, 2), np.array(clear_r))
        img = apply_nuisances(contrast, nuis_opt, rngs, ps, spec.sign, clear)
    else:
        img = 1.0 + contrast
    if noise_opt is not None:
        img = noise_opt.apply(img, np.random.default_rng(noise_ss))
    top = float(np.iinfo(_DTYPES[dtype]).max)
    image = np.clip(np.rint(img * (spec.background_level * top)), 0, top).astype(_DTYPES[dtype])

    metadata = {
        "description": spec.description,
        "modality": spec.modality,
        "n_requested": n_requested,
        "n_placed": len(placed),
        "crystal_rotation_deg": round(math.degrees(ctx.theta0), 4),
        "g_direction_deg": round(math.degrees(ctx.g_angle), 4),
        "zone_axis": "[001]" if spec.modality != "sem" else None,
        "noise": None if noise_opt is None else asdict(noise_opt),
        "nuisances": None if nuis_opt is None else asdict(nuis_opt),
    }
    return SyntheticSample(
        image=image,
        labels=labels,
        instance_classes=instance_classes,
        classes=classes,
        pixel_size=PixelSize.isotropic(ps, "synthetic", f"napari-microseg synth {kind}"),
        kind=kind,
        seed=int(seed),
        truth=truth,
        metadata=metadata,
    )


def _record(iid, class_id, draft, shp, window, mask, look, ps, shape, classes) -> dict:
    h, w = shape
    cy, cx, a, b, angle = shp.moments()
    area_px2, clipped = clipped_area(shp, h, w)
    area_nm2 = area_px2 * ps * ps
    rows, cols = window
    ys, xs = np.nonzero(mask)
    touches = bool(
        (rows.start + ys.min() == 0) or (rows.start + ys.max() == h - 1)
        or (cols.start + xs.min() == 0) or (cols.start + xs.max() == w - 1)
    )
    return {
        "id": iid,
        "class_id": class_id,
        "class_name": classes[class_id].name,
        "appearance": draft.appearance,
        "centre_y_nm": cy * ps,
        "centre_x_nm": cx * ps,
        "semi_major_nm": a * ps,
        "semi_minor_nm": b * ps,
        "orientation_deg": 0.0 if math.isclose(a, b, rel_tol=1e-9) else fold_angle_deg(angle),
        "area_nm2": area_nm2,
        "full_area_nm2": shp.area * ps * ps,
        "equivalent_diameter_nm": 2.0 * math.sqrt(area_nm2 / math.pi),
        "area_px": int(mask.sum()),
        "touches_edge": touches,
        "clipped": bool(clipped),
        "contrast": round(float(look.amp), 4),
    }


def write_sample(sample: SyntheticSample, outdir, stem: str = "sample") -> dict:
    """Write ``sample`` to ``outdir``.

    Writes ``<stem>.tif`` (ImageJ TIFF, resolution in pixels per nm, unit
    ``"nm"``), the labels through
    :func:`~napari_microseg.core.labels_io.write_labels` (``<stem>_labels.tif``
    and its sidecar) and ``<stem>_truth.json``.

    Returns
    -------
    dict
        ``{"image": Path, "truth": Path}`` plus the paths ``write_labels``
        returned.
    """
    import tifffile

    from ..atomic import atomic_path
    from ..labels_io import write_labels

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    nm = sample.pixel_size.x_nm
    image_path = outdir / f"{stem}.tif"
    with atomic_path(image_path) as tmp:
        tifffile.imwrite(tmp, sample.image, imagej=True, resolution=(1.0 / nm, 1.0 / nm),
                         metadata={"unit": "nm"})
    written = write_labels(
        outdir / f"{stem}_labels.tif",
        sample.labels,
        instance_classes=sample.instance_classes,
        classes=sample.classes,
        pixel_size=sample.pixel_size,
        metadata={"source": "napari-microseg synth", "kind": sample.kind, "seed": sample.seed},
    )
    truth_path = outdir / f"{stem}_truth.json"
    with atomic_path(truth_path) as tmp:
        tmp.write_text(sample.truth_json(), encoding="utf-8")
    paths = {"image": image_path}
    paths.update({k: Path(v) for k, v in dict(written).items()})
    paths["truth"] = truth_path
    return paths
