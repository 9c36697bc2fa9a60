"""Compare two studies (conditions): differences of densities and sizes, and distribution tests.

:func:`compare_studies` returns, per class present in both studies,

* ``densities`` -- pooled densities of A and B, the difference ``B - A`` and
  the ratio ``B / A`` with intervals. With at least two fields in each study
  the between-field standard errors are combined (Welch t on the difference,
  delta method on the log ratio); otherwise counting noise alone is used
  (normal interval on the difference of Poisson rates, exact conditional
  binomial interval on the ratio of rates);
* ``sizes`` -- mean and median sizes of A and B, ``B - A`` and ``B / A``: with
  at least two fields in each study the means by Welch t on the studies'
  between-field intervals and the medians by a percentile bootstrap of fields;
  otherwise both by a percentile bootstrap of objects (fixed seed); and the
  two-sample Kolmogorov-Smirnov and Anderson-Darling tests of the size
  distributions (objects taken as independent; the Anderson-Darling p-value
  is bounded to 0.001-0.25 by SciPy's tables).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import MicrosegError
from .intervals import binomial_ci, bootstrap_replicates, check_conf
from .study import Study


def welch_difference(va, lo_a, hi_a, ka, vb, lo_b, hi_b, kb, conf) -> dict:
    """``vb - va`` and ``vb / va`` with intervals from two between-field t intervals.

    Each study's standard error is recovered from its interval (half-width /
    t(k-1)); the difference gets a Welch-Satterthwaite t interval, the ratio a
    delta-method interval on the log scale.
    """
    sa = (hi_a - lo_a) / (2 * stats.t.ppf(0.5 + conf / 2, ka - 1))
    sb = (hi_b - lo_b) / (2 * stats.t.ppf(0.5 + conf / 2, kb - 1))
    se = np.hypot(sa, sb)
    denom = sa**4 / (ka - 1) + sb**4 / (kb - 1)
    df = se**4 / denom if denom > 0 else ka + kb - 2
    t = stats.t.ppf(0.5 + conf / 2, df)
    diff, ratio = vb - va, (vb / va if va > 0 else np.nan)
    if va > 0 and vb > 0:
        sl = np.hypot(sa / va, sb / vb)
        rlo, rhi = ratio * np.exp(-t * sl), ratio * np.exp(t * sl)
    else:
        rlo = rhi = np.nan
    return {"difference": diff, "difference_ci_low": diff - t * se,
            "difference_ci_high": diff + t * se, "ratio": ratio, "ratio_ci_low": rlo,
            "ratio_ci_high": rhi,
            "interval": f"between-field: Welch t on the difference ({df:.1f} df), delta method "
            "on the log ratio"}


def _density_row(pa, pb, conf):
    z = stats.norm.ppf(0.5 + conf / 2)
    da, db = float(pa["density"]), float(pb["density"])
    row = {"density_a": da, "density_b": db}
    ka, kb = int(pa["n_fields"]), int(pb["n_fields"])
    if ka >= 2 and kb >= 2:
        return {**row, **welch_difference(da, float(pa["density_ci_low"]), float(pa["density_ci_high"]),
                                          ka, db, float(pb["density_ci_low"]),
                                          float(pb["density_ci_high"]), kb, conf)}
    diff, ratio = db - da, (db / da if da > 0 else np.nan)
    na, nb = int(pa["count"]), int(pb["count"])
    aa, ab = float(pa["analysed_area"]), float(pb["analysed_area"])
    se = np.sqrt(na / aa**2 + nb / ab**2)
    if na + nb > 0:
        plo, phi = binomial_ci(nb, na + nb, conf, method="clopper-pearson")
        with np.errstate(divide="ignore"):
            rlo = plo / (1 - plo) * aa / ab
            rhi = phi / (1 - phi) * aa / ab if phi < 1 else np.inf
    else:
        rlo = rhi = np.nan
    return {**row, "difference": diff, "difference_ci_low": diff - z * se,
            "difference_ci_high": diff + z * se, "ratio": ratio, "ratio_ci_low": rlo,
            "ratio_ci_high": rhi,
            "interval": "counting noise: normal interval on the difference of Poisson rates, "
            "exact conditional (Clopper-Pearson) interval on the ratio"}


def _size_rows(sa, sb, ga, gb, conf, n_boot, seed, pa=None, pb=None):
    a = 1 - conf
    rng = np.random.default_rng(seed)
    row = {"n_a": int(sa.size), "n_b": int(sb.size)}
    for statistic in ("mean", "median"):
        va = sa.mean() if statistic == "mean" else np.median(sa)
        vb = sb.mean() if statistic == "mean" else np.median(sb)
        ba = bootstrap_replicates(sa, statistic, groups=ga, n_boot=n_boot, rng=rng)
        bb = bootstrap_replicates(sb, statistic, groups=gb, n_boot=n_boot, rng=rng)
        diff, ratio = bb - ba, bb / ba
        row.update({
            f"{statistic}_a": float(va), f"{statistic}_b": float(vb),
            f"{statistic}_difference": float(vb - va),
            f"{statistic}_difference_ci_low": float(np.nanquantile(diff, a / 2)),
            f"{statistic}_difference_ci_high": float(np.nanquantile(diff, 1 - a / 2)),
            f"{statistic}_ratio": float(vb / va) if va else np.nan,
            f"{statistic}_ratio_ci_low": float(np.nanquantile(ratio, a / 2)),
            f"{statistic}_ratio_ci_high": float(np.nanquantile(ratio, 1 - a / 2)),
        })
    level = "fields" if ga is not None else "objects"
    row["interval"] = f"percentile bootstrap of {level} of each study, {n_boot} resamples, seed {seed}"
    if ga is not None and pa is not None and pb is not None:  # means: the studies' between-field t
        w = welch_difference(float(pa["mean_size"]), float(pa["mean_size_ci_low"]),
                             float(pa["mean_size_ci_high"]), int(pa["n_fields"]),
                             float(pb["mean_size"]), float(pb["mean_size_ci_low"]),
                             float(pb["mean_size_ci_high"]), int(pb["n_fields"]), conf)
        if np.isfinite(w["difference_ci_low"]):
            row.update({f"mean_{k}": v for k, v in w.items() if k != "interval"})
            row["interval"] = f"mean: {w['interval']}; median: {row['interval']}"
    ks = stats.ks_2samp(sa, sb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # p-value capped to SciPy's table range
        try:
            ad = stats.anderson_ksamp([sa, sb], variant="midrank")
        except TypeError:
            ad = stats.anderson_ksamp([sa, sb])
    row.update(ks_statistic=float(ks.statistic), ks_pvalue=float(ks.pvalue),
               ad_statistic=float(ad.statistic), ad_pvalue=float(ad.pvalue),
               test_note="KS and k-sample Anderson-Darling (midrank), objects independent; "
               "AD p-value bounded to 0.001-0.25")
    return row


def compare_studies(a: Study, b: Study, *, seed: int = 0, conf: float = 0.95,
                    n_boot: int = 1000, labels=("A", "B")) -> dict[str, pd.DataFrame]:
    """Differences between study ``b`` and study ``a`` (``b - a`` and ``b / a``), per class.

    Parameters
    ----------
    a, b : Study
        Two studies in the same length unit.
    seed, conf, n_boot
        Bootstrap seed, confidence level and resamples.
    labels : tuple of str
        Names of the two conditions, written into the tables' ``attrs``.

    Returns
    -------
    dict
        ``{"densities": DataFrame, "sizes": DataFrame}`` (see the module docstring).
    """
    conf = check_conf(conf)
    if a.unit != b.unit:
        raise MicrosegError(f"Cannot compare a study in {a.unit} with one in {b.unit}.")
    classes = [c for c in a.classes if c in set(b.classes)]
    dens_rows, size_rows = [], []
    for c in classes:
        pa = a.pooled[a.pooled["class_name"] == c].iloc[0]
        pb = b.pooled[b.pooled["class_name"] == c].iloc[0]
        dens_rows.append({"class_name": c, **_density_row(pa, pb, conf),
                          "density_unit": a.density_unit})
        oa = a.objects if c == "all" else a.objects[a.objects["class_name"] == c]
        ob = b.objects if c == "all" else b.objects[b.objects["class_name"] == c]
        sa, sb = oa["size"].to_numpy(np.float64), ob["size"].to_numpy(np.float64)
        fa, fb = np.isfinite(sa), np.isfinite(sb)
        if fa.sum() < 2 or fb.sum() < 2:
            continue
        both = len(a.fields) >= 2 and len(b.fields) >= 2
        ga = oa["field"].to_numpy()[fa] if both else None
        gb = ob["field"].to_numpy()[fb] if both else None
        size_rows.append({"class_name": c, **_size_rows(sa[fa], sb[fb], ga, gb, conf, n_boot, seed,
                                                        pa, pb),
                          "size": a.settings.get("size", "")})
    meta = {"a": labels[0], "b": labels[1], "conf": conf, "seed": int(seed), "n_boot": int(n_boot)}
    out = {"densities": pd.DataFrame(dens_rows), "sizes": pd.DataFrame(size_rows)}
    for t in out.values():
        t.attrs.update(meta)
    return out
