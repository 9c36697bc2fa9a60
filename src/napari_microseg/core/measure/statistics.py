"""Per-image and per-class statistics from a per-object table.

Counting rules (``edges``)
--------------------------
``"include"``
    Count every object whose centroid pixel is analysed; densities over the
    analysed area. Objects cut by the frame are counted whole (slight excess).
``"exclude"``
    Also drop objects that touch the image border or an excluded region
    (``touches_edge``); densities over the analysed area. Biased low for large
    objects; offered because it is common practice.
``"guard"``
    Count objects whose centroid pixel lies in the *inner frame*: analysed
    pixels more than ``guard`` (nm, or px when uncalibrated) from the image
    border and from every excluded pixel (square neighbourhood, per axis);
    densities over the inner frame's area. Unbiased when the guard is at
    least the largest object radius.

The rule and the guard width are written into every summary row
(``edge_mode``, ``guard_{unit}``) and into ``attrs["settings"]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from ..calibration import PixelSize
from ..classes import ClassTable
from ..errors import MicrosegError
from .objects import centroid_pixel, spacing_of

#: Accepted values of ``edges``.
EDGE_MODES = ("include", "exclude", "guard")

#: nm² per µm².
NM2_PER_UM2 = 1e6


@dataclass
class Counting:
    """Which objects are counted and over which area.

    Attributes
    ----------
    counted : ndarray of bool
        One entry per table row.
    reference_area_px : int
        Pixels of the reference area (analysed area, or inner frame for ``guard``).
    edges : str
        The counting rule, one of :data:`EDGE_MODES`.
    guard : float
        Guard width in the table's length unit (0 unless ``edges="guard"``).
    unit : str
        ``"nm"`` or ``"px"``.
    pixel_area : float
        Area of one pixel in the unit squared.
    """

    counted: np.ndarray
    reference_area_px: int
    edges: str = "include"
    guard: float = 0.0
    unit: str = "px"
    pixel_area: float = 1.0

    @property
    def reference_area(self) -> float:
        """Reference area in ``unit``²."""
        return self.reference_area_px * self.pixel_area

    def settings(self) -> dict:
        """JSON-ready description of the rule."""
        return {"edge_mode": self.edges, f"guard_{self.unit}": float(self.guard)}


def _table_geometry(table, image_shape, pixel_size):
    if image_shape is None:
        image_shape = table.attrs.get("image_shape")
    if image_shape is None:
        raise MicrosegError("The image shape is needed to compute densities; pass image_shape.")
    if pixel_size is None:
        d = table.attrs.get("pixel_size")
        pixel_size = PixelSize.from_dict(d) if d else PixelSize.uncalibrated()
    return tuple(int(n) for n in image_shape[:2]), pixel_size


def inner_frame(shape, analysis_mask=None, guard_px=(0, 0)) -> np.ndarray:
    """Analysed pixels farther than ``guard_px`` (y, x) from the border and excluded pixels."""
    gy, gx = (int(g) for g in guard_px)
    if analysis_mask is None:
        out = np.zeros(shape, bool)
        out[gy : shape[0] - gy, gx : shape[1] - gx] = True
        return out
    mask = np.asarray(analysis_mask, bool)
    if gy == 0 and gx == 0:
        return mask.copy()
    eroded = ndimage.minimum_filter(
        mask.view(np.uint8), size=(2 * gy + 1, 2 * gx + 1), mode="constant", cval=0
    )
    return eroded.astype(bool)


def count_objects(
    table: pd.DataFrame,
    *,
    edges: str = "include",
    guard: float = 0.0,
    analysis_mask=None,
    image_shape=None,
    pixel_size: PixelSize | None = None,
) -> Counting:
    """Apply a counting rule to a table from :func:`.measure_objects`.

    Parameters
    ----------
    table : pandas.DataFrame
        Per-object table.
    edges : {"include", "exclude", "guard"}
        Counting rule (see the module docstring).
    guard : float
        Guard-frame width in nm (px when uncalibrated); only for ``"guard"``.
    analysis_mask : array-like of bool, optional
        ``True`` where analysed; the same mask the table was measured with.
    image_shape, pixel_size : optional
        Default to ``table.attrs``.

    Returns
    -------
    Counting
    """
    if edges not in EDGE_MODES:
        raise MicrosegError(f"Unknown edge handling {edges!r}; choose one of {EDGE_MODES}.")
    shape, ps = _table_geometry(table, image_shape, pixel_size)
    sy, sx = spacing_of(ps)
    unit = ps.unit
    if analysis_mask is not None and np.shape(analysis_mask) != shape:
        raise MicrosegError(
            f"The analysis mask's shape {np.shape(analysis_mask)} differs from the image's {shape}."
        )
    inside = table["centroid_in_analysed"].to_numpy(bool)
    n_analysed = (
        int(np.count_nonzero(analysis_mask)) if analysis_mask is not None else (shape[0] * shape[1])
    )
    if edges == "include":
        return Counting(inside, n_analysed, edges, 0.0, unit, sy * sx)
    if edges == "exclude":
        counted = inside & ~table["touches_edge"].to_numpy(bool)
        return Counting(counted, n_analysed, edges, 0.0, unit, sy * sx)
    guard = float(guard)
    if not np.isfinite(guard) or guard < 0:
        raise MicrosegError(f"The guard width must be a non-negative number, got {guard}.")
    gy, gx = int(round(guard / sy)), int(round(guard / sx))
    if 2 * gy >= shape[0] or 2 * gx >= shape[1]:
        raise MicrosegError(
            f"A guard frame of {guard:g} {unit} leaves nothing of a "
            f"{shape[1]} x {shape[0]} px image."
        )
    ry = np.clip(centroid_pixel(table["centroid_y_px"].to_numpy()), 0, shape[0] - 1)
    rx = np.clip(centroid_pixel(table["centroid_x_px"].to_numpy()), 0, shape[1] - 1)
    if analysis_mask is None:  # the inner frame is a rectangle: no image-sized array
        counted = (ry >= gy) & (ry < shape[0] - gy) & (rx >= gx) & (rx < shape[1] - gx)
        area = (shape[0] - 2 * gy) * (shape[1] - 2 * gx)
        return Counting(counted.astype(bool), int(area), edges, guard, unit, sy * sx)
    frame = inner_frame(shape, analysis_mask, (gy, gx))
    counted = frame[ry, rx] if len(table) else np.zeros(0, bool)
    return Counting(counted, int(np.count_nonzero(frame)), edges, guard, unit, sy * sx)


@dataclass
class SizeDistribution:
    """Histogram and summary of a size (by default the equivalent diameter).

    Attributes
    ----------
    edges, counts : ndarray
        Bin edges (n + 1) and counts (n).
    n, mean, median, std : float
        Number of values, mean, median and sample standard deviation (ddof = 1).
    lognorm_shape, lognorm_scale : float or None
        ``scipy.stats.lognorm`` fit with ``floc=0`` (``s`` and ``scale``; the
        median of the fit is ``scale``, its mean ``scale * exp(s² / 2)``).
    """

    edges: np.ndarray
    counts: np.ndarray
    n: int
    mean: float
    median: float
    std: float
    lognorm_shape: float | None = None
    lognorm_scale: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["edges"] = [float(e) for e in self.edges]
        d["counts"] = [int(c) for c in self.counts]
        return d


def size_distribution(values, bins=10, *, value_range=None, lognormal: bool = False):
    """Histogram, mean, median, std and optional log-normal fit of ``values``.

    Parameters
    ----------
    values : array-like
        Sizes (NaNs are dropped).
    bins : int or sequence of float
        Number of equal bins, or the bin edges.
    value_range : tuple of float, optional
        Range of the equal bins (default: min to max).
    lognormal : bool
        Fit ``scipy.stats.lognorm`` with the location fixed at 0 (needs >= 2
        positive values).

    Returns
    -------
    SizeDistribution
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    counts, edges = np.histogram(v, bins=bins, range=value_range)
    n = int(v.size)
    dist = SizeDistribution(
        edges=edges,
        counts=counts,
        n=n,
        mean=float(v.mean()) if n else float("nan"),
        median=float(np.median(v)) if n else float("nan"),
        std=float(v.std(ddof=1)) if n > 1 else float("nan"),
    )
    if lognormal:
        pos = v[v > 0]
        if pos.size >= 2 and np.ptp(pos) > 0:
            s, _, scale = stats.lognorm.fit(pos, floc=0)
            dist.lognorm_shape, dist.lognorm_scale = float(s), float(scale)
    return dist


def _class_groups(table, classes):
    ids = table["class_id"].to_numpy()
    names = dict(zip(table["class_id"], table["class_name"], strict=False))
    if classes is not None:
        for c in classes:
            names.setdefault(c.id, c.name)
    return [(int(c), names[c], ids == c) for c in sorted(names)]


def summarize(
    table: pd.DataFrame,
    *,
    edges: str = "include",
    guard: float = 0.0,
    analysis_mask=None,
    thickness_nm: float | None = None,
    classes: ClassTable | None = None,
    image_shape=None,
    pixel_size: PixelSize | None = None,
    counting: Counting | None = None,
) -> pd.DataFrame:
    """Count, densities, area fraction and size summary, overall and per class.

    Parameters
    ----------
    table : pandas.DataFrame
        Per-object table from :func:`.measure_objects`.
    edges, guard, analysis_mask, image_shape, pixel_size
        Counting rule, see :func:`count_objects`.
    thickness_nm : float, optional
        Foil thickness for the volumetric density (needs a calibrated table).
    classes : ClassTable, optional
        Also list these classes when they have no object.
    counting : Counting, optional
        A precomputed rule (overrides ``edges``/``guard``/``analysis_mask``).

    Returns
    -------
    pandas.DataFrame
        First row ``class_id = -1``, ``class_name = "all"``; then one row per
        class. Columns: ``count``, ``edge_mode``, ``guard_{u}``,
        ``reference_area_{u}2``, ``density_per_um2`` and ``density_per_nm2``
        (``density_per_px2`` when uncalibrated), ``area_fraction``,
        ``thickness_nm`` and ``density_per_m3`` (when a thickness is given),
        ``mean_/median_/std_equivalent_diameter_{u}``, ``mean_heywood_circularity``.
        ``attrs["settings"]`` repeats the rule.
    """
    shape, ps = _table_geometry(table, image_shape, pixel_size)
    if counting is None:
        counting = count_objects(
            table,
            edges=edges,
            guard=guard,
            analysis_mask=analysis_mask,
            image_shape=shape,
            pixel_size=ps,
        )
    u = counting.unit
    if thickness_nm is not None:
        if u != "nm":
            raise MicrosegError("A volumetric density needs a calibrated pixel size (nm).")
        if not (np.isfinite(thickness_nm) and thickness_nm > 0):
            raise MicrosegError(f"The foil thickness must be positive, got {thickness_nm}.")
    area_col, d_col = f"area_{u}2", f"equivalent_diameter_{u}"
    ref = counting.reference_area
    rows = []
    groups = [(-1, "all", np.ones(len(table), bool)), *_class_groups(table, classes)]
    for cid, name, sel in groups:
        pick = sel & counting.counted
        n = int(np.count_nonzero(pick))
        d = table[d_col].to_numpy()[pick]
        row = {
            "class_id": cid,
            "class_name": name,
            "count": n,
            "edge_mode": counting.edges,
            f"guard_{u}": float(counting.guard),
            f"reference_area_{u}2": float(ref),
        }
        dens = n / ref if ref > 0 else float("nan")
        if u == "nm":
            row["density_per_um2"] = dens * NM2_PER_UM2
            row["density_per_nm2"] = dens
        else:
            row["density_per_px2"] = dens
        row["area_fraction"] = float(table[area_col].to_numpy()[pick].sum() / ref) if ref else 0.0
        if thickness_nm is not None:
            row["thickness_nm"] = float(thickness_nm)
            row["density_per_m3"] = dens / float(thickness_nm) * 1e27
        row[f"mean_{d_col}"] = float(d.mean()) if n else float("nan")
        row[f"median_{d_col}"] = float(np.median(d)) if n else float("nan")
        row[f"std_{d_col}"] = float(d.std(ddof=1)) if n > 1 else float("nan")
        hw = table["heywood_circularity"].to_numpy()[pick]
        row["mean_heywood_circularity"] = float(hw.mean()) if n else float("nan")
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["unit"] = u
    out.attrs["settings"] = {
        **counting.settings(),
        "thickness_nm": None if thickness_nm is None else float(thickness_nm),
    }
    return out


def size_distributions(
    table: pd.DataFrame,
    bins=10,
    *,
    column: str | None = None,
    counting: Counting | None = None,
    lognormal: bool = False,
) -> dict[str, SizeDistribution]:
    """:func:`size_distribution` of all counted objects and of each class.

    Equal-width bins are shared by all classes (computed over all counted
    objects) so the histograms can be compared. Keys are ``"all"`` and the
    class names.
    """
    u = table.attrs.get("unit") or ("nm" if "area_nm2" in table else "px")
    col = column or f"equivalent_diameter_{u}"
    sel = counting.counted if counting is not None else np.ones(len(table), bool)
    v_all = table[col].to_numpy()[sel]
    if np.isscalar(bins):
        finite = v_all[np.isfinite(v_all)]
        edges = np.histogram_bin_edges(finite if finite.size else [0.0, 1.0], bins=int(bins))
    else:
        edges = np.asarray(bins, dtype=np.float64)
    out = {"all": size_distribution(v_all, edges, lognormal=lognormal)}
    for _cid, name, g in _class_groups(table, None):
        out[name] = size_distribution(table[col].to_numpy()[sel & g], edges, lognormal=lognormal)
    return out
