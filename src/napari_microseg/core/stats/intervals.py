"""Confidence intervals, each returned with the name of its method.

Every function returns an :class:`Interval`: a ``(lo, hi)`` pair (so
``lo, hi = poisson_ci(12)`` works) that also carries ``.method``, a short
sentence naming how it was computed, written into every exported table. The
analytic intervals accept arrays and are vectorised.

Methods
-------
:func:`poisson_ci`
    Exact (Garwood 1936) interval of a Poisson mean from a count ``k``: the
    chi-square quantiles ``χ²(α/2; 2k)/2`` and ``χ²(1-α/2; 2k+2)/2``. Coverage
    is at least the nominal level (conservative for small counts).
:func:`rate_ci`
    :func:`poisson_ci` divided by the observed area (a density per unit area).
:func:`binomial_ci`
    Wilson score interval (default) or the exact Clopper-Pearson interval of
    a proportion ``k / n`` (e.g. grid points hitting a phase).
:func:`area_fraction_ci`
    Area fraction of objects scattered as a Poisson process with random
    areas: the sum of object areas has variance ``Σ aᵢ²`` (compound Poisson),
    normal interval ``AF ± z √(Σ aᵢ²) / A``.
:func:`between_field_ci`
    Weighted (e.g. area-weighted) mean over fields -- for densities the ratio
    estimator ``Σ nᵢ / Σ Aᵢ`` -- with the cluster-sampling standard error
    ``√(k/(k-1) Σ wᵢ² (vᵢ - m)²) / Σ wᵢ`` and a Student t interval on k-1
    degrees of freedom: the spread between fields of view, not counting noise.
:func:`mean_t_ci`
    Student t interval of a mean of independent values ``x̄ ± t s/√n``.
:func:`median_order_ci`
    Distribution-free interval of a median between two order statistics
    chosen from the Binomial(n, ½) law; coverage at least the nominal level.
:func:`bootstrap_ci`
    Percentile bootstrap with a fixed seed, of objects or -- with ``groups`` --
    of whole fields (cluster bootstrap: fields are resampled with replacement
    and keep all their objects).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from ..errors import MicrosegError

__all__ = [
    "Interval",
    "area_fraction_ci",
    "between_field_ci",
    "binomial_ci",
    "bootstrap_ci",
    "bootstrap_replicates",
    "check_conf",
    "mean_t_ci",
    "median_order_ci",
    "poisson_ci",
    "rate_ci",
    "weighted_quantile",
]


class Interval(tuple):
    """A ``(lo, hi)`` pair with the name of its method (``.method``).

    ``lo`` and ``hi`` are floats, or arrays for the vectorised functions.
    Extra results (e.g. the point estimate of :func:`between_field_ci`) are
    in ``.extra``.
    """

    def __new__(cls, lo, hi, method: str, **extra):
        obj = super().__new__(cls, (lo, hi))
        obj.method = method
        obj.extra = extra
        return obj

    @property
    def lo(self):
        """Lower bound."""
        return self[0]

    @property
    def hi(self):
        """Upper bound."""
        return self[1]


def _scalar_or_array(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def check_conf(conf: float) -> float:
    """Return ``conf`` when it is a confidence level in (0, 1), else raise."""
    try:
        c = float(conf)
    except (TypeError, ValueError):
        raise MicrosegError(f"The confidence level must be a number in (0, 1), got {conf!r}.") from None
    if not 0.0 < c < 1.0:
        raise MicrosegError(f"The confidence level must be in (0, 1), got {conf!r}.")
    return c


def poisson_ci(count, conf: float = 0.95) -> Interval:
    """Exact (Garwood) confidence interval of a Poisson mean from an observed count.

    Parameters
    ----------
    count : int or array of int
        Observed counts (>= 0).
    conf : float
        Confidence level.

    Returns
    -------
    Interval
        ``lo = χ²(α/2; 2k)/2`` (0 for k = 0) and ``hi = χ²(1-α/2; 2k+2)/2``.
    """
    a = 1.0 - check_conf(conf)
    k = np.asarray(count, dtype=np.float64)
    if np.any(k < 0) or np.any(~np.isfinite(k)):
        raise MicrosegError("Counts must be finite and non-negative.")
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, stats.chi2.ppf(a / 2, 2 * k) / 2, 0.0)
    hi = stats.chi2.ppf(1 - a / 2, 2 * k + 2) / 2
    return Interval(_scalar_or_array(lo), _scalar_or_array(hi), "exact Poisson (Garwood) on the count")


def rate_ci(count, area, conf: float = 0.95) -> Interval:
    """Exact Poisson interval of a density ``count / area`` (per unit of ``area``)."""
    area = np.asarray(area, dtype=np.float64)
    if np.any(~(area > 0)):
        raise MicrosegError("The analysed area must be positive to give a density interval.")
    lo, hi = poisson_ci(count, conf)
    return Interval(_scalar_or_array(lo / area), _scalar_or_array(hi / area),
                    "exact Poisson (Garwood) on the count, divided by the analysed area")


def binomial_ci(k, n, conf: float = 0.95, method: str = "wilson") -> Interval:
    """Interval of a proportion ``k / n``: ``"wilson"`` score or exact ``"clopper-pearson"``."""
    a = 1.0 - check_conf(conf)
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise MicrosegError("A proportion needs 0 <= k <= n and n > 0.")
    if method == "wilson":
        z = stats.norm.ppf(1 - a / 2)
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        lo = np.where(k > 0, np.clip(centre - half, 0, 1), 0.0)
        hi = np.where(k < n, np.clip(centre + half, 0, 1), 1.0)
        name = "Wilson score interval of a proportion"
    elif method == "clopper-pearson":
        with np.errstate(invalid="ignore"):
            lo = np.where(k > 0, stats.beta.ppf(a / 2, k, n - k + 1), 0.0)
            hi = np.where(k < n, stats.beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
        name = "exact Clopper-Pearson interval of a proportion"
    else:
        raise MicrosegError(f"Unknown binomial interval {method!r}; use 'wilson' or 'clopper-pearson'.")
    return Interval(_scalar_or_array(lo), _scalar_or_array(hi), name)


def area_fraction_ci(object_areas, field_area: float, conf: float = 0.95) -> Interval:
    """Interval of the area fraction ``Σ aᵢ / A`` of objects in one field.

    The objects are taken as a Poisson process with independent random areas,
    so ``Var(Σ aᵢ) = E[Σ aᵢ²]``, estimated by the observed ``Σ aᵢ²``; the
    interval is ``AF ± z √(Σ aᵢ²) / A`` clipped to [0, 1]. ``.extra["value"]``
    holds the fraction.
    """
    a = np.asarray(object_areas, dtype=np.float64)
    a = a[np.isfinite(a)]
    if not field_area > 0:
        raise MicrosegError("The analysed area must be positive to give an area fraction.")
    z = stats.norm.ppf(0.5 + check_conf(conf) / 2)
    af = float(a.sum() / field_area)
    half = float(z * np.sqrt((a * a).sum()) / field_area)
    return Interval(max(af - half, 0.0), min(af + half, 1.0),
                    "normal, compound-Poisson variance Σ area² of the objects", value=af)


def between_field_ci(values, weights=None, conf: float = 0.95) -> Interval:
    """Weighted mean over fields with a t interval from the spread between fields.

    Parameters
    ----------
    values : array-like
        One value per field (e.g. its density ``nᵢ / Aᵢ``).
    weights : array-like, optional
        One weight per field (e.g. its analysed area); equal weights by default.
        With areas as weights and densities as values the mean is the pooled
        density ``Σ nᵢ / Σ Aᵢ``.
    conf : float
        Confidence level.

    Returns
    -------
    Interval
        ``m ± t(k-1) · SE`` with ``SE² = k/(k-1) Σ wᵢ² (vᵢ - m)² / (Σ wᵢ)²``
        (cluster-sampling / ratio-estimator variance). NaN bounds for fewer
        than two fields. ``.extra`` holds ``value`` (m), ``se``, ``sd`` (the
        weighted standard deviation between fields), ``n_fields``.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    if v.shape != w.shape or v.ndim != 1:
        raise MicrosegError("between_field_ci needs one value and one weight per field.")
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    v, w = v[ok], w[ok]
    k = v.size
    method = f"between-field t interval ({max(k - 1, 0)} df), weighted mean over fields"
    if k == 0:
        return Interval(np.nan, np.nan, method, value=np.nan, se=np.nan, sd=np.nan, n_fields=0)
    m = float((w * v).sum() / w.sum())
    if k < 2:
        return Interval(np.nan, np.nan, method, value=m, se=np.nan, sd=np.nan, n_fields=k)
    se = float(np.sqrt(k / (k - 1) * (w * w * (v - m) ** 2).sum()) / w.sum())
    sd = float(np.sqrt((w * (v - m) ** 2).sum() / w.sum() * k / (k - 1)))
    t = stats.t.ppf(0.5 + check_conf(conf) / 2, k - 1)
    return Interval(m - t * se, m + t * se, method, value=m, se=se, sd=sd, n_fields=k)


def mean_t_ci(values, conf: float = 0.95) -> Interval:
    """Student t interval ``x̄ ± t(n-1) s/√n`` of the mean of independent values (NaN for n < 2)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = v.size
    method = "Student t interval of the mean of the objects"
    if n < 2:
        return Interval(np.nan, np.nan, method, value=float(v.mean()) if n else np.nan)
    m, s = float(v.mean()), float(v.std(ddof=1))
    h = stats.t.ppf(0.5 + check_conf(conf) / 2, n - 1) * s / np.sqrt(n)
    return Interval(m - h, m + h, method, value=m)


def median_order_ci(values, conf: float = 0.95) -> Interval:
    """Distribution-free interval of the median: order statistics ``x(r)`` and ``x(n-r+1)``.

    ``r`` is the Binomial(n, ½) quantile at ``α/2``, so the coverage is at
    least ``conf`` for any continuous distribution (exactly
    ``1 - 2 P(B <= r - 1)``). NaN when n is too small for the level.
    """
    a = 1.0 - check_conf(conf)
    v = np.sort(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    n = v.size
    method = "distribution-free order-statistic (binomial) interval of the median"
    med = float(np.median(v)) if n else np.nan
    r = int(stats.binom.ppf(a / 2, n, 0.5)) if n else 0
    if r < 1:
        return Interval(np.nan, np.nan, method, value=med)
    return Interval(float(v[r - 1]), float(v[n - r]), method, value=med)


def weighted_quantile(values, q, weights=None) -> np.ndarray | float:
    """Quantiles ``q`` (0-1) of ``values`` with ``weights`` (midpoint-interpolated CDF).

    Without weights this equals ``numpy.quantile(..., method="hazen")``.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    v, w = v[ok], w[ok]
    qa = np.asarray(q, dtype=np.float64)
    if v.size == 0:
        return _scalar_or_array(np.full(qa.shape, np.nan))
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return _scalar_or_array(np.interp(qa, cdf, v))


_FAST = {"mean", "median"}


def _stat_fn(statistic):
    if callable(statistic):
        return statistic
    if statistic == "mean":
        return lambda v, w=None: np.average(v, weights=w) if v.size else np.nan
    if statistic == "median":
        return lambda v, w=None: weighted_quantile(v, 0.5, w) if w is not None else np.median(v)
    raise MicrosegError(f"Unknown statistic {statistic!r}; give 'mean', 'median' or a function.")


def bootstrap_ci(
    values,
    statistic: str | Callable = "mean",
    *,
    weights=None,
    n_boot: int = 2000,
    seed: int = 0,
    conf: float = 0.95,
    groups=None,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(values[, weights])``.

    Parameters
    ----------
    values : array-like
        One value per object.
    statistic : {"mean", "median"} or callable
        ``f(values)`` or, when ``weights`` are given, ``f(values, weights)``.
        The named statistics are vectorised (weighted mean / weighted median).
    weights : array-like, optional
        One weight per object (e.g. its area, for area-weighted statistics).
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of :func:`numpy.random.default_rng`: the same inputs give the same interval.
    conf : float
        Confidence level.
    groups : array-like, optional
        One field id per object: whole fields are resampled with replacement
        (cluster bootstrap), which carries the spread between fields.

    Returns
    -------
    Interval
        Percentiles ``α/2`` and ``1-α/2`` of the resampled statistic;
        ``.extra["value"]`` is the statistic of the data. NaN for no value.
    """
    a = 1.0 - check_conf(conf)
    v = np.asarray(values, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(v) if w is None else np.isfinite(v) & np.isfinite(w)
    g = None if groups is None else np.asarray(groups)[ok]
    v = v[ok]
    w = None if w is None else w[ok]
    n_boot = int(n_boot)
    if n_boot < 1:
        raise MicrosegError(f"n_boot must be at least 1, got {n_boot}.")
    level = "fields (cluster bootstrap)" if g is not None else "objects"
    method = f"percentile bootstrap of {level}, {n_boot} resamples, seed {seed}"
    f = _stat_fn(statistic)
    if v.size == 0:
        return Interval(np.nan, np.nan, method, value=np.nan)
    value = float(f(v) if w is None else f(v, w))
    boot = bootstrap_replicates(v, statistic, weights=w, groups=g, n_boot=n_boot,
                                rng=np.random.default_rng(seed))
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return Interval(np.nan, np.nan, method, value=value)
    lo, hi = np.quantile(boot, [a / 2, 1 - a / 2])
    return Interval(float(lo), float(hi), method, value=value)


def bootstrap_replicates(values, statistic="mean", *, weights=None, groups=None,
                         n_boot: int = 1000, rng=None) -> np.ndarray:
    """``n_boot`` bootstrap replicates of ``statistic`` (objects, or fields with ``groups``).

    ``values``, ``weights`` and ``groups`` must be finite and of equal length
    (as :func:`bootstrap_ci` passes them); ``rng`` is a numpy Generator.
    """
    v = np.asarray(values, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    rng = rng if rng is not None else np.random.default_rng(0)
    f = _stat_fn(statistic)
    if v.size == 0:
        return np.full(int(n_boot), np.nan)
    if groups is None:
        return _boot_objects(v, w, statistic, f, int(n_boot), rng)
    return _boot_groups(v, w, np.asarray(groups), statistic, f, int(n_boot), rng)


#: Largest resample matrix (elements) built at once by the vectorised bootstrap.
_CHUNK = 4_000_000


def _boot_objects(v, w, statistic, f, n_boot, rng):
    n = v.size
    if statistic in _FAST and (w is None or statistic == "mean"):
        out = np.empty(n_boot)
        step = max(1, _CHUNK // n)
        for s in range(0, n_boot, step):
            idx = rng.integers(0, n, size=(min(step, n_boot - s), n))
            if statistic == "mean":
                out[s : s + len(idx)] = (
                    v[idx].mean(axis=1) if w is None else (v[idx] * w[idx]).sum(1) / w[idx].sum(1)
                )
            else:
                out[s : s + len(idx)] = np.median(v[idx], axis=1)
        return out
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        out[b] = f(v[idx]) if w is None else f(v[idx], w[idx])
    return out


def _boot_groups(v, w, g, statistic, f, n_boot, rng):
    uniq, inv = np.unique(g, return_inverse=True)
    k = uniq.size
    if statistic == "mean":  # resampled fields enter through their sums: vectorised
        ww = np.ones_like(v) if w is None else w
        sw = np.bincount(inv, ww, minlength=k)
        swv = np.bincount(inv, ww * v, minlength=k)
        mult = _multiplicities(rng, n_boot, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (mult @ swv) / (mult @ sw)
    if statistic == "median":
        return _boot_groups_median(v, w, inv, k, n_boot, rng)
    members = [np.flatnonzero(inv == i) for i in range(k)]
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([members[i] for i in rng.integers(0, k, size=k)])
        out[b] = (f(v[idx]) if w is None else f(v[idx], w[idx])) if idx.size else np.nan
    return out


def _multiplicities(rng, n_boot: int, k: int) -> np.ndarray:
    """``(n_boot, k)`` times each of ``k`` fields is drawn in each resample of ``k`` fields."""
    picks = rng.integers(0, k, size=(n_boot, k)) + (np.arange(n_boot) * k)[:, None]
    return np.bincount(picks.ravel(), minlength=n_boot * k).reshape(n_boot, k).astype(np.float64)


def _boot_groups_median(v, w, inv, k, n_boot, rng):
    """Cluster-bootstrap medians: resampled fields become multiplicity weights on one order.

    The median of each resample is the first value (in sorted order) at which
    the weighted count reaches half the total. Only a window of ranks around
    the pooled median is scanned, vectorised over resamples; a resample whose
    median falls outside the window is done in full.
    """
    order = np.argsort(v, kind="stable")
    vs, gs = v[order], inv[order]
    ws = np.ones_like(vs) if w is None else w[order]
    n = vs.size
    mult = _multiplicities(rng, n_boot, k)
    per_field = np.bincount(gs, ws, minlength=k)
    total = mult @ per_field
    mid = int(np.searchsorted(np.cumsum(ws), 0.5 * ws.sum()))
    half = min(n, max(500, int(20 * np.sqrt(n))))
    lo, hi = max(0, mid - half), min(n, mid + half + 1)
    below = mult @ np.bincount(gs[:lo], ws[:lo], minlength=k)
    out = np.full(n_boot, np.nan)
    step = max(1, _CHUNK // max(hi - lo, 1))
    gw, ww = gs[lo:hi], ws[lo:hi]
    for s in range(0, n_boot, step):
        rows = slice(s, min(s + step, n_boot))
        cum = np.cumsum(mult[rows][:, gw] * ww, axis=1) + below[rows, None]
        target = 0.5 * total[rows]
        reach = cum >= target[:, None]
        inside = reach[:, -1] & (below[rows] < target)
        first = np.argmax(reach, axis=1)
        out[rows] = np.where(inside, vs[lo:hi][first], np.nan)
    for b in np.flatnonzero(~np.isfinite(out) & (total > 0)):  # outside the window: in full
        cum = np.cumsum(mult[b][gs] * ws)
        out[b] = vs[min(int(np.searchsorted(cum, 0.5 * cum[-1])), n - 1)]
    return out
