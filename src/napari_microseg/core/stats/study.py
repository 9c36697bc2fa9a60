"""A study: many fields of view measured as one sample, with uncertainty.

:func:`study_from_tables` takes per-image object tables (as
:func:`~napari_microseg.core.measure.measure_objects` makes them) and one row
per field (name, analysed area, unit, optional foil thickness) and returns a
:class:`Study`:

* ``per_field`` -- per field and class (and ``"all"``): count, density with
  its exact Poisson interval, mean size (Student t), median size
  (order-statistic interval), area fraction (compound-Poisson interval) and,
  with a thickness, the volumetric density;
* ``pooled`` -- per class: the area-weighted pooled density ``Σ n / Σ A`` with
  the between-field t interval, never narrower than the pooled Poisson
  interval (which is also given beside it),
  the between-field SD and CV, a chi-square test of whether fields differ
  more than counting noise, the mean size (ratio estimator over fields with
  the between-field t interval), the median size (field-level cluster
  bootstrap), and the pooled area fraction;
* ``outliers`` -- fields whose density or mean size is far from the others:
  ``|x - median| / scale`` above 3.5 (raised to the Bonferroni 5 % level when
  there are many fields), where the scale is 1.4826 MAD of the fields but never
  less than the field's own noise (Poisson SD of its density at the pooled
  value, typical object SD / √n for its mean size), so noise alone flags nothing;
* ``distributions``, ``lognormal``, ``histograms`` -- the pooled size
  distribution per class (:mod:`.distributions`).

Each table says in its ``*_interval`` columns which interval it holds.
Densities are per µm² (sizes in nm) for calibrated tables, else per px².
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import MicrosegError
from .distributions import distribution_summary, histogram_with_band, lognormal_fit
from .intervals import between_field_ci, check_conf, poisson_ci, rate_ci

#: nm² per µm².
NM2_PER_UM2 = 1e6
#: Modified z-score above which a field is flagged (Iglewicz and Hoaglin).
OUTLIER_Z = 3.5
#: Fewest fields for flagging outliers.
OUTLIER_MIN_FIELDS = 5
#: Length units a field's area may be given in, with their size in nm (px: none).
AREA_UNITS = {"nm": 1.0, "µm": 1e3, "um": 1e3, "px": None}

FIELD_COLUMNS = ("name", "area", "unit", "thickness_nm")
POISSON_DENSITY = "exact Poisson (Garwood) on the count, divided by the analysed area"


@dataclass
class Study:
    """Statistics of many fields of view measured as one sample (see the module docstring)."""

    per_field: pd.DataFrame
    pooled: pd.DataFrame
    outliers: pd.DataFrame
    distributions: pd.DataFrame
    lognormal: pd.DataFrame
    histograms: pd.DataFrame
    objects: pd.DataFrame
    fields: pd.DataFrame
    unit: str
    settings: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """``"all"`` then every class name, in the order of the tables."""
        return list(dict.fromkeys(self.pooled["class_name"]))

    @property
    def density_unit(self) -> str:
        """``"1/µm²"`` or ``"1/px²"``."""
        return "1/µm²" if self.unit == "nm" else "1/px²"

    def to_tables(self) -> dict[str, pd.DataFrame]:
        """The tables to export, by name (``fields`` lists the inputs)."""
        return {
            "pooled": self.pooled,
            "per_field": self.per_field,
            "outliers": self.outliers,
            "distributions": self.distributions,
            "lognormal": self.lognormal,
            "histograms": self.histograms,
            "fields": self.fields,
        }


def _table_unit(t: pd.DataFrame) -> str:
    return t.attrs.get("unit") or ("nm" if "area_nm2" in t.columns else "px")


def _fields_from_attrs(tables) -> pd.DataFrame:
    rows = []
    for name, t in tables.items():
        n_px = t.attrs.get("analysed_area_px")
        if n_px is None:
            raise MicrosegError(
                f"Field {name!r}: no analysed area in the table; give a fields table (name, area, unit)."
            )
        ps = t.attrs.get("pixel_size") or {}
        u = _table_unit(t)
        px_area = float(ps.get("y_nm", 1.0)) * float(ps.get("x_nm", 1.0)) if u == "nm" else 1.0
        rows.append({"name": str(name), "area": float(n_px) * px_area, "unit": u, "thickness_nm": np.nan})
    return pd.DataFrame(rows, columns=list(FIELD_COLUMNS))


def _normalise_fields(tables, fields, thickness_nm) -> tuple[pd.DataFrame, str]:
    f = _fields_from_attrs(tables) if fields is None else pd.DataFrame(fields).copy()
    if "area" not in f and "analysed_area" in f:
        f = f.rename(columns={"analysed_area": "area"})
    missing = [c for c in ("name", "area", "unit") if c not in f]
    if missing:
        raise MicrosegError(f"The fields table needs columns name, area, unit; {missing} missing.")
    if "thickness_nm" not in f:
        f["thickness_nm"] = np.nan
    f = f[list(FIELD_COLUMNS)].reset_index(drop=True)
    f["name"] = f["name"].astype(str)
    names = list(f["name"])
    if len(set(names)) != len(names):
        raise MicrosegError("Field names must be unique.")
    keys = [str(k) for k in tables]
    if sorted(keys) != sorted(names):
        extra = sorted(set(keys) ^ set(names))[:5]
        raise MicrosegError(f"The tables and the fields table name different fields: {extra}.")
    units = {_table_unit(tables[k]) for k in tables}
    if len(units) > 1:
        raise MicrosegError(
            "The fields mix calibrated (nm) and uncalibrated (px) tables; study them separately."
        )
    unit = units.pop() if units else "px"
    area = []
    for _, r in f.iterrows():
        u = str(r["unit"]).strip()
        if u not in AREA_UNITS:
            raise MicrosegError(f"Field {r['name']!r}: unknown area unit {u!r} (nm, µm or px).")
        if (AREA_UNITS[u] is None) != (unit == "px"):
            raise MicrosegError(f"Field {r['name']!r}: area in {u}² but the objects are in {unit}.")
        a = float(r["area"]) * (AREA_UNITS[u] ** 2 if AREA_UNITS[u] else 1.0)
        if not (np.isfinite(a) and a > 0):
            raise MicrosegError(f"Field {r['name']!r}: the analysed area must be positive, got {r['area']}.")
        area.append(a)
    f["area"] = area
    f["unit"] = unit
    if thickness_nm is not None:
        f["thickness_nm"] = float(thickness_nm)
    return f, unit


def _objects(tables, fields, unit, size_column) -> pd.DataFrame:
    size_col = f"{size_column}_{unit}"
    area_col = f"area_{unit}2"
    parts = []
    for i, name in enumerate(fields["name"]):
        t = tables[name]
        if len(t) and (size_col not in t or area_col not in t or "class_name" not in t):
            raise MicrosegError(f"Field {name!r}: the table has no {size_col!r}, {area_col!r} or class_name.")
        if "counted" in t:
            keep = t["counted"].to_numpy(bool)
        elif "centroid_in_analysed" in t:
            keep = t["centroid_in_analysed"].to_numpy(bool)
        else:
            keep = np.ones(len(t), bool)
        n = int(keep.sum())
        parts.append(pd.DataFrame({
            "field_index": np.full(n, i, np.int64),
            "class_name": t["class_name"].astype(str).to_numpy()[keep] if n else np.array([], str),
            "size": t[size_col].to_numpy(np.float64)[keep] if n else np.zeros(0),
            "area": t[area_col].to_numpy(np.float64)[keep] if n else np.zeros(0),
        }))
    obj = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"field_index": [], "class_name": [], "size": [], "area": []})
    obj.insert(0, "field", fields["name"].to_numpy()[obj["field_index"].to_numpy(np.int64)])
    return obj


def _median_blocks(values, keys, n_keys, conf):
    """Median and order-statistic interval of ``values`` per key (vectorised)."""
    order = np.lexsort((values, keys))
    v, k = values[order], keys[order]
    n = np.bincount(k, minlength=n_keys)
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    med = np.full(n_keys, np.nan)
    lo = np.full(n_keys, np.nan)
    hi = np.full(n_keys, np.nan)
    has = n > 0
    med[has] = 0.5 * (v[start[has] + (n[has] - 1) // 2] + v[start[has] + n[has] // 2])
    r = np.zeros(n_keys, np.int64)
    r[has] = stats.binom.ppf((1 - conf) / 2, n[has], 0.5).astype(np.int64)
    ok = has & (r >= 1)
    lo[ok] = v[start[ok] + r[ok] - 1]
    hi[ok] = v[start[ok] + n[ok] - r[ok]]
    return med, lo, hi


def _per_field(obj, fields, classes, unit, conf):
    F, C = len(fields), len(classes)
    cls_index = {c: j for j, c in enumerate(classes)}
    fi = obj["field_index"].to_numpy(np.int64)
    cj = obj["class_name"].map(cls_index).to_numpy(np.int64)
    size, area = obj["size"].to_numpy(np.float64), obj["area"].to_numpy(np.float64)
    ok_size = np.isfinite(size)
    frames = []
    A = fields["area"].to_numpy(np.float64)
    scale = NM2_PER_UM2 if unit == "nm" else 1.0  # density per µm² or per px²
    z = stats.norm.ppf(0.5 + conf / 2)
    for j, cname in enumerate(["all", *classes]):
        sel = np.ones(len(obj), bool) if j == 0 else cj == j - 1
        n = np.bincount(fi[sel], minlength=F)
        s_sel = sel & ok_size
        ns = np.bincount(fi[s_sel], minlength=F)
        s1 = np.bincount(fi[s_sel], size[s_sel], minlength=F)
        s2 = np.bincount(fi[s_sel], size[s_sel] ** 2, minlength=F)
        a1 = np.bincount(fi[sel], np.nan_to_num(area[sel]), minlength=F)
        a2 = np.bincount(fi[sel], np.nan_to_num(area[sel]) ** 2, minlength=F)
        clo, chi = poisson_ci(n, conf)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(ns > 0, s1 / ns, np.nan)
            sd = np.sqrt(np.clip(s2 - ns * mean**2, 0, None) / (ns - 1))
            tq = stats.t.ppf(0.5 + conf / 2, np.maximum(ns - 1, 1))
            half = np.where(ns >= 2, tq * sd / np.sqrt(ns), np.nan)
        med, mlo, mhi = _median_blocks(size[s_sel], fi[s_sel], F, conf)
        af = a1 / A
        afh = z * np.sqrt(a2) / A
        d = {
            "field": fields["name"].to_numpy(),
            "class_name": cname,
            "analysed_area": A / scale,
            "count": n,
            "count_ci_low": clo,
            "count_ci_high": chi,
            "density": n / A * scale,
            "density_ci_low": clo / A * scale,
            "density_ci_high": chi / A * scale,
            "density_interval": POISSON_DENSITY,
            "mean_size": mean,
            "mean_size_ci_low": mean - half,
            "mean_size_ci_high": mean + half,
            "mean_size_interval": "Student t interval of the mean of the objects",
            "median_size": med,
            "median_size_ci_low": mlo,
            "median_size_ci_high": mhi,
            "median_size_interval": "distribution-free order-statistic (binomial) interval",
            "area_fraction": af,
            "area_fraction_ci_low": np.clip(af - afh, 0, 1),
            "area_fraction_ci_high": np.clip(af + afh, 0, 1),
            "area_fraction_interval": "normal, compound-Poisson variance Σ area² of the objects",
        }
        t_nm = fields["thickness_nm"].to_numpy(np.float64)
        if unit == "nm" and np.isfinite(t_nm).any():
            vol = 1.0 / (A * t_nm) * 1e27  # per m³ for one object
            d.update(thickness_nm=t_nm, volume_density_per_m3=n * vol,
                     volume_density_ci_low=clo * vol, volume_density_ci_high=chi * vol)
        frames.append(pd.DataFrame(d))
    out = pd.concat(frames, ignore_index=True)
    order = np.argsort(np.tile(np.arange(F), C + 1), kind="stable")
    return out.iloc[order].reset_index(drop=True)


def _pooled(per_field, obj, fields, classes, unit, conf, seed, n_boot):
    rows, dist_rows, logn_rows = [], [], []
    A = fields["area"].to_numpy(np.float64)
    scale = NM2_PER_UM2 if unit == "nm" else 1.0
    F = len(fields)
    for cname in ["all", *classes]:
        pf = per_field[per_field["class_name"] == cname]
        n = pf["count"].to_numpy(np.float64)
        dens = n / A * scale
        bf = between_field_ci(dens, A, conf)
        total, area = float(n.sum()), float(A.sum())
        plo, phi = rate_ci(total, area / scale, conf)
        pooled = total / area * scale
        expected = total * A / area
        with np.errstate(invalid="ignore", divide="ignore"):
            chi2 = float(np.sum(np.where(expected > 0, (n - expected) ** 2 / expected, 0.0)))
        pval = float(stats.chi2.sf(chi2, F - 1)) if F > 1 and total > 0 else np.nan
        sub = obj if cname == "all" else obj[obj["class_name"] == cname]
        groups = sub["field_index"].to_numpy() if F > 1 else None
        ds = distribution_summary(sub["size"].to_numpy(), weights=sub["area"].to_numpy(),
                                  conf=conf, seed=seed, n_boot=n_boot, groups=groups)
        if F >= 2:  # mean size: ratio estimator Σ sizes / Σ counts with the between-field t
            ns = np.bincount(sub["field_index"].to_numpy(np.int64)[np.isfinite(sub["size"])],
                             minlength=F)
            bm = between_field_ci(pf["mean_size"].to_numpy(np.float64), ns, conf)
            if np.isfinite(bm.lo):
                ds.update(mean_ci_low=bm.lo, mean_ci_high=bm.hi,
                          mean_interval=bm.method + " (fields weighted by their object count)")
        af = pf["area_fraction"].to_numpy(np.float64)
        af_bf = between_field_ci(af, A, conf)
        two = F >= 2
        row = {
            "class_name": cname,
            "n_fields": F,
            "count": int(total),
            "analysed_area": area / scale,
            "density": pooled,
            # never narrower than counting noise alone (few fields can agree by chance)
            # a density is never negative: the t interval's lower end is clipped at 0
            "density_ci_low": max(min(bf.lo, plo), 0.0) if two else plo,
            "density_ci_high": max(bf.hi, phi) if two else phi,
            "density_interval": (bf.method + ", widened to the pooled Poisson interval where "
                                 "that is wider, clipped at 0") if two else POISSON_DENSITY,
            "density_poisson_ci_low": plo,
            "density_poisson_ci_high": phi,
            "density_poisson_interval": "exact Poisson (Garwood) on the total count over the total area",
            "density_between_field_sd": bf.extra["sd"],
            "density_cv": bf.extra["sd"] / pooled if pooled > 0 else np.nan,
            "dispersion_chi2": chi2,
            "dispersion_pvalue": pval,
            "mean_size": ds["mean"],
            "mean_size_ci_low": ds["mean_ci_low"],
            "mean_size_ci_high": ds["mean_ci_high"],
            "median_size": ds["median"],
            "median_size_ci_low": ds["median_ci_low"],
            "median_size_ci_high": ds["median_ci_high"],
            "mean_size_interval": ds["mean_interval"],
            "median_size_interval": ds["median_interval"],
            "area_fraction": float(pf["area_fraction"].to_numpy() @ A / area),
            "area_fraction_ci_low": af_bf.lo if two else pf["area_fraction_ci_low"].iloc[0],
            "area_fraction_ci_high": af_bf.hi if two else pf["area_fraction_ci_high"].iloc[0],
            "area_fraction_interval": af_bf.method if two else pf["area_fraction_interval"].iloc[0],
        }
        if "volume_density_per_m3" in pf:
            t_nm = fields["thickness_nm"].to_numpy(np.float64)
            ok = np.isfinite(t_nm)
            vd = pf["volume_density_per_m3"].to_numpy(np.float64)
            vb = between_field_ci(vd[ok], (A * t_nm)[ok], conf)
            row.update(volume_density_per_m3=vb.extra["value"],
                       volume_density_ci_low=vb.lo, volume_density_ci_high=vb.hi,
                       volume_density_interval=vb.method)
        rows.append(row)
        dist_rows.append({"class_name": cname, **ds})
        logn_rows.append({"class_name": cname, **lognormal_fit(sub["size"].to_numpy(), conf)})
    return pd.DataFrame(rows), pd.DataFrame(dist_rows), pd.DataFrame(logn_rows)


def _robust_z(x, noise):
    """``(x - median) / scale``: scale the MAD-based SD, but never below the field's own noise SD.

    Densities are judged on the square-root scale and mean sizes on the log scale
    (nearly symmetric noise there); the reported values are on the original scale.
    """
    med = np.nanmedian(x)
    spread = 1.4826 * np.nanmedian(np.abs(x - med))
    scale = np.maximum(spread, np.nan_to_num(noise, nan=0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(scale > 0, (x - med) / scale, 0.0)
    return z, med


def outlier_threshold(n_tests: int) -> float:
    """|z| above which a field is flagged: 3.5, raised for many checks (Bonferroni at 5 %).

    ``n_tests`` is the number of checks in the study (fields × classes × quantities).
    """
    return max(OUTLIER_Z, float(stats.norm.isf(0.025 / max(n_tests, 1))))


def _flag(rows, pf, cname, quantity, values, z, thr, label, unit) -> None:
    """Append a row for every field whose ``|z|`` exceeds ``thr``."""
    med = float(np.nanmedian(values))
    for i in np.flatnonzero(np.abs(z) > thr):
        side = "above" if z[i] > 0 else "below"
        rows.append([pf["field"].iloc[i], cname, quantity, values[i], med, float(z[i]),
                     f"{label} {values[i]:.4g} {unit} is {abs(z[i]):.1f} robust SD {side} the "
                     f"median {med:.4g} {unit} (flagged above {thr:.2f})"])


def _outliers(per_field, unit, conf) -> pd.DataFrame:
    cols = ["field", "class_name", "quantity", "value", "median", "robust_z", "reason"]
    rows = []
    du = "/µm²" if unit == "nm" else "/px²"
    area = per_field["analysed_area"].to_numpy(np.float64)
    thr = outlier_threshold(len(per_field) * 2)
    for cname, pf in per_field.groupby("class_name", sort=False):
        if len(pf) < OUTLIER_MIN_FIELDS:
            continue
        dens = pf["density"].to_numpy(np.float64)
        # on the square-root scale, where a Poisson count's SD is 1/2 whatever its mean
        z, _ = _robust_z(np.sqrt(dens), 0.5 / np.sqrt(area[pf.index.to_numpy()]))
        _flag(rows, pf, cname, "density", dens, z, thr, "density", du)
        ms = pf["mean_size"].to_numpy(np.float64)
        if np.isfinite(ms).sum() >= OUTLIER_MIN_FIELDS:
            n = pf["count"].to_numpy(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                t = stats.t.ppf(0.5 + conf / 2, np.maximum(n - 1, 1))
                sd = (pf["mean_size_ci_high"].to_numpy() - pf["mean_size_ci_low"].to_numpy()) / (2 * t)
                sd_ref = np.nanmedian(sd * np.sqrt(n))  # typical SD of the objects' sizes
                # on the log scale, where a mean size is nearly symmetric
                z, _ = _robust_z(np.log(ms), sd_ref / np.sqrt(n) / np.nanmedian(ms))
            _flag(rows, pf, cname, "mean_size", ms, z, thr, "mean size", unit)
    return pd.DataFrame(rows, columns=cols)


def study_from_tables(
    tables,
    fields: pd.DataFrame | None = None,
    *,
    size_column: str = "equivalent_diameter",
    conf: float = 0.95,
    seed: int = 0,
    n_boot: int = 1000,
    bins: int = 20,
    thickness_nm: float | None = None,
) -> Study:
    """Measure a set of fields of view as one study.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Per-field object tables (:func:`~napari_microseg.core.measure.measure_objects`
        columns: ``class_name``, ``area_{u}2``, ``{size_column}_{u}``). Objects
        counted are those with ``counted`` true when the column exists, else
        those with ``centroid_in_analysed`` (the ``"include"`` rule).
    fields : DataFrame, optional
        One row per field: ``name`` (the key in ``tables``), ``area`` (analysed
        or reference area) in ``unit``² where ``unit`` is ``"nm"``, ``"µm"`` or
        ``"px"``, and optionally ``thickness_nm``. Default: from each table's
        ``attrs`` (analysed area and pixel size).
    size_column : str
        Size measure without its unit (``"equivalent_diameter"``, ``"feret_max"``, ...).
    conf, seed, n_boot
        Confidence level, bootstrap seed and resamples.
    bins : int
        Histogram bins (shared by the classes).
    thickness_nm : float, optional
        Foil thickness of every field (overrides ``fields.thickness_nm``).

    Returns
    -------
    Study
    """
    conf = check_conf(conf)
    if not tables:
        raise MicrosegError("A study needs at least one field of view.")
    tables = {str(k): v for k, v in tables.items()}
    fields, unit = _normalise_fields(tables, fields, thickness_nm)
    obj = _objects(tables, fields, unit, size_column)
    classes = list(dict.fromkeys(obj["class_name"]))
    per_field = _per_field(obj, fields, classes, unit, conf)
    pooled, dists, logn = _pooled(per_field, obj, fields, classes, unit, conf, seed, n_boot)
    finite = obj["size"].to_numpy(np.float64)
    finite = finite[np.isfinite(finite)]
    edges = np.histogram_bin_edges(finite if finite.size else [0.0, 1.0], bins=int(bins))
    hists = pd.concat(
        [histogram_with_band(obj["size"] if c == "all" else obj.loc[obj["class_name"] == c, "size"],
                             edges, seed, conf=conf).assign(class_name=c)
         for c in ["all", *classes]], ignore_index=True)
    hists = hists[["class_name", *[c for c in hists if c != "class_name"]]]
    size_name = f"{size_column}_{unit}"
    settings = {
        "conf": conf, "seed": int(seed), "n_boot": int(n_boot), "size": size_name,
        "length_unit": unit, "area_unit": "µm²" if unit == "nm" else "px²",
        "density_unit": "1/µm²" if unit == "nm" else "1/px²", "n_fields": len(fields),
    }
    for t in (per_field, pooled, dists, logn, hists):
        t.attrs.update(settings)
    fields_out = fields.copy()
    fields_out["area"] = fields_out["area"] / (NM2_PER_UM2 if unit == "nm" else 1.0)
    fields_out["unit"] = "µm" if unit == "nm" else "px"
    return Study(per_field, pooled, _outliers(per_field, unit, conf), dists, logn, hists,
                 obj.drop(columns="field_index"), fields_out, unit, settings)


def study_from_folder(path, **kwargs) -> Study:
    """:func:`study_from_tables` of a batch output folder or a folder of measure outputs.

    See :mod:`.sources` for the layouts read. Keyword arguments go to
    :func:`study_from_tables`. Calibrated fields are kept when a folder mixes
    them with uncalibrated ones (a warning names those left out).
    """
    return study_from_inputs([Path(path)], **kwargs)


def study_from_inputs(inputs, *, pairs=(), pixel_size_nm: float | None = None, **kwargs) -> Study:
    """:func:`study_from_tables` of folders, measure files and ``(image, labels)`` pairs.

    See :mod:`.sources`; ``pixel_size_nm`` overrides the pixel size of the pairs' images.
    """
    import warnings

    from .sources import read_inputs

    tables, fields = read_inputs(inputs, pairs, pixel_size_nm)
    units = dict(zip(fields["name"], fields["unit"], strict=True))  # the tables' length units
    if len(set(units.values())) > 1:
        px = [k for k, u in units.items() if u == "px"]
        warnings.warn(f"{len(px)} field(s) measured in px left out of the study (no pixel size): "
                      + ", ".join(px[:10]) + (" …" if len(px) > 10 else ""), stacklevel=2)
        keep = [k for k, u in units.items() if u != "px"]
        tables = {k: tables[k] for k in keep}
        fields = fields[fields["name"].isin(keep)].reset_index(drop=True)
    return study_from_tables(tables, fields, **kwargs)
