"""Size distributions with their uncertainty: summary, log-normal fit, histogram band.

* :func:`distribution_summary` -- n, mean and median with bootstrap intervals,
  D10/D50/D90 number-weighted and area-weighted.
* :func:`lognormal_fit` -- ``ln d ~ N(μ, σ²)`` with exact intervals for μ
  (Student t) and σ (chi-square), and goodness of fit (Kolmogorov-Smirnov
  against the fitted law, Anderson-Darling for normality of ``ln d``).
* :func:`histogram_with_band` -- counts, density and cumulative fraction per
  bin with a confidence band (exact Poisson per bin, Wilson for the cumulative).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import MicrosegError
from .intervals import binomial_ci, bootstrap_ci, check_conf, poisson_ci, weighted_quantile

#: Quantiles reported as D10, D50, D90.
D_LEVELS = (0.10, 0.50, 0.90)


def _finite(values, weights=None):
    v = np.asarray(values, dtype=np.float64).ravel()
    if weights is None:
        return v[np.isfinite(v)], None
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != v.shape:
        raise MicrosegError("Give one weight per value.")
    ok = np.isfinite(v) & np.isfinite(w) & (w >= 0)
    return v[ok], w[ok]


def distribution_summary(
    values,
    *,
    weights=None,
    conf: float = 0.95,
    seed: int = 0,
    n_boot: int = 1000,
    groups=None,
) -> dict:
    """Summary of a size distribution with intervals.

    Parameters
    ----------
    values : array-like
        Sizes (e.g. equivalent diameters); NaNs are dropped.
    weights : array-like, optional
        Area of each object for the area-weighted D values; by default
        ``values²`` (the area of a disc is proportional to its diameter squared).
    conf, seed, n_boot
        Confidence level, bootstrap seed and resamples.
    groups : array-like, optional
        Field id of each object: the mean and median intervals then resample
        whole fields (cluster bootstrap).

    Returns
    -------
    dict
        ``n``, ``mean``, ``mean_ci_low``, ``mean_ci_high``, ``median``,
        ``median_ci_low``, ``median_ci_high``, ``std``, ``d10``, ``d50``,
        ``d90`` (number-weighted), ``d10_area``, ``d50_area``, ``d90_area``
        (area-weighted), ``mean_interval`` and ``median_interval`` (their
        methods) and ``quantile_method``.
    """
    check_conf(conf)
    if groups is not None:
        g = np.asarray(groups).ravel()
        vv = np.asarray(values, dtype=np.float64).ravel()
        if g.shape != vv.shape:
            raise MicrosegError("Give one group (field id) per value.")
        keep = np.isfinite(vv)
        if weights is not None:
            ww = np.asarray(weights, dtype=np.float64).ravel()
            keep &= np.isfinite(ww) & (ww >= 0)
        groups = g[keep]
    v, w = _finite(values, weights)
    aw = v * v if w is None else w
    n = int(v.size)
    mean = bootstrap_ci(v, "mean", n_boot=n_boot, seed=seed, conf=conf, groups=groups)
    med = bootstrap_ci(v, "median", n_boot=n_boot, seed=seed, conf=conf, groups=groups)
    dn = weighted_quantile(v, D_LEVELS) if n else [np.nan] * 3
    da = weighted_quantile(v, D_LEVELS, aw) if n else [np.nan] * 3
    return {
        "n": n,
        "mean": float(v.mean()) if n else np.nan,
        "mean_ci_low": mean.lo,
        "mean_ci_high": mean.hi,
        "median": float(np.median(v)) if n else np.nan,
        "median_ci_low": med.lo,
        "median_ci_high": med.hi,
        "std": float(v.std(ddof=1)) if n > 1 else np.nan,
        "d10": float(dn[0]),
        "d50": float(dn[1]),
        "d90": float(dn[2]),
        "d10_area": float(da[0]),
        "d50_area": float(da[1]),
        "d90_area": float(da[2]),
        "mean_interval": mean.method,
        "median_interval": med.method,
        "quantile_method": "D values: midpoint-interpolated empirical CDF; area-weighted "
        + ("by the given weights" if w is not None else "by size² (disc area)"),
    }


def lognormal_fit(values, conf: float = 0.95) -> dict:
    """Log-normal fit ``ln d ~ N(μ, σ²)`` with intervals and goodness of fit.

    ``μ`` is the mean of ``ln d`` with a Student-t interval; ``σ`` the sample
    standard deviation (ddof = 1) of ``ln d`` with the chi-square interval
    ``σ √((n-1)/χ²)``. Both are exact for log-normal data. Goodness of fit:
    the Kolmogorov-Smirnov distance to the fitted law with its p-value (which
    is optimistic: the parameters come from the same data) and the
    Anderson-Darling statistic of ``ln d`` for normality with its p-value
    (interpolated from Stephens' tables, which allow for the estimated
    parameters; limited to 0.01-0.15 by old SciPy versions).

    Returns
    -------
    dict
        ``n, mu, mu_ci_low, mu_ci_high, sigma, sigma_ci_low, sigma_ci_high,
        median (= e^μ), mean (= e^(μ + σ²/2)), ks_statistic, ks_pvalue,
        ad_statistic, ad_pvalue, ad_rejects_5pct, method``. NaN when
        fewer than three positive values.
    """
    c = check_conf(conf)
    v, _ = _finite(values)
    v = v[v > 0]
    n = int(v.size)
    out = dict.fromkeys(
        ("mu", "mu_ci_low", "mu_ci_high", "sigma", "sigma_ci_low", "sigma_ci_high", "median",
         "mean", "ks_statistic", "ks_pvalue", "ad_statistic", "ad_pvalue"), np.nan)
    out.update(n=n, ad_rejects_5pct=None,
               method="ln d ~ N(mu, sigma²): t interval for mu, chi-square interval for sigma; "
               "KS against the fitted law (p optimistic), Anderson-Darling of ln d for normality")
    if n < 3 or np.ptp(v) == 0:
        return out
    x = np.log(v)
    mu, s = float(x.mean()), float(x.std(ddof=1))
    a = 1 - c
    t = stats.t.ppf(1 - a / 2, n - 1)
    ks = stats.kstest(x, "norm", args=(mu, s))
    ad_stat, ad_p = anderson_normal(x)
    out.update(
        mu=mu,
        mu_ci_low=mu - t * s / np.sqrt(n),
        mu_ci_high=mu + t * s / np.sqrt(n),
        sigma=s,
        sigma_ci_low=s * np.sqrt((n - 1) / stats.chi2.ppf(1 - a / 2, n - 1)),
        sigma_ci_high=s * np.sqrt((n - 1) / stats.chi2.ppf(a / 2, n - 1)),
        median=float(np.exp(mu)),
        mean=float(np.exp(mu + s * s / 2)),
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        ad_statistic=ad_stat,
        ad_pvalue=ad_p,
        ad_rejects_5pct=bool(ad_p < 0.05),
    )
    return out


def anderson_normal(x) -> tuple[float, float]:
    """Anderson-Darling statistic for normality (estimated mean and SD) and its p-value."""
    try:
        r = stats.anderson(x, "norm", method="interpolate")  # SciPy >= 1.17
        return float(r.statistic), float(r.pvalue)
    except TypeError:
        r = stats.anderson(x, "norm")
        levels = np.asarray(r.significance_level, dtype=np.float64) / 100
        crit = np.asarray(r.critical_values, dtype=np.float64)  # increasing
        return float(r.statistic), float(np.interp(r.statistic, crit, levels))


def histogram_with_band(values, bins=20, seed: int = 0, *, conf: float = 0.95,
                        value_range=None) -> pd.DataFrame:
    """Histogram, density and cumulative fraction with a confidence band per bin.

    Parameters
    ----------
    values : array-like
        Sizes; NaNs are dropped.
    bins : int or sequence of float
        Number of equal bins or the edges (as :func:`numpy.histogram`).
    seed : int
        Accepted for a uniform signature; the bands are analytic (no resampling).
    conf : float
        Confidence level.
    value_range : tuple, optional
        Range of the equal bins.

    Returns
    -------
    pandas.DataFrame
        ``bin_left, bin_right, count, count_ci_low, count_ci_high`` (exact
        Poisson per bin), ``density, density_ci_low, density_ci_high`` (count /
        (n · width): integrates to 1), ``cumulative, cumulative_ci_low,
        cumulative_ci_high`` (fraction at or below ``bin_right``, Wilson
        pointwise) and ``interval``.
    """
    del seed
    v, _ = _finite(values)
    counts, edges = np.histogram(v, bins=bins, range=value_range)
    n = int(v.size)
    lo, hi = poisson_ci(counts, conf)
    width = np.diff(edges)
    scale = np.where((n > 0) & (width > 0), 1.0 / (max(n, 1) * np.where(width > 0, width, 1)), np.nan)
    cum = np.cumsum(counts)
    if n:
        clo, chi = binomial_ci(cum, n, conf)
        cfrac = cum / n
    else:
        clo = chi = cfrac = np.full(counts.shape, np.nan)
    return pd.DataFrame({
        "bin_left": edges[:-1],
        "bin_right": edges[1:],
        "count": counts.astype(np.int64),
        "count_ci_low": np.atleast_1d(lo),
        "count_ci_high": np.atleast_1d(hi),
        "density": counts * scale,
        "density_ci_low": np.atleast_1d(lo) * scale,
        "density_ci_high": np.atleast_1d(hi) * scale,
        "cumulative": cfrac,
        "cumulative_ci_low": np.atleast_1d(clo),
        "cumulative_ci_high": np.atleast_1d(chi),
        "interval": "count: exact Poisson per bin; cumulative: Wilson pointwise",
    })
