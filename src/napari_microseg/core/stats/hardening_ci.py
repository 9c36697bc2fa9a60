"""Barrier hardening with an interval: Monte Carlo propagation of every uncertainty.

The dispersed-barrier model of :mod:`napari_microseg.core.measure.hardening`
(``Δσ = M α μ b √(N d)``, :func:`~napari_microseg.core.measure.dbh_mpa`) is
evaluated on ``n_mc`` draws (fixed seed) of its uncertain inputs:

* the areal density of each class -- normal with the standard error implied
  by its interval (between-field or Poisson, as the study gives it);
* the mean diameter of each class -- normal with the standard error implied
  by its interval;
* the foil thickness -- normal with the user's standard deviation, one draw
  shared by all classes (one foil);
* α of each class -- normal with the user's standard deviation.

Draws are kept positive (negative draws are clipped to a tiny positive
value). The interval is the ``α/2`` and ``1-α/2`` percentiles of the draws of
each class's Δσ and of the linear and root-sum-square totals.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import MicrosegError
from ..measure.hardening import HardeningParameters, dbh_mpa
from .intervals import check_conf

#: m⁻² per µm⁻².
PER_M2_PER_UM2 = 1e12


def _sd(lo, hi, conf):
    z = stats.norm.ppf(0.5 + conf / 2)
    lo, hi = float(lo), float(hi)
    return (hi - lo) / (2 * z) if np.isfinite(lo) and np.isfinite(hi) else 0.0


def _per_class(value, default=0.0):
    if isinstance(value, Mapping):
        return lambda name: float(value.get(name, default))
    return lambda name: float(value if value is not None else default)


def hardening_interval(
    inputs: pd.DataFrame,
    thickness_nm: float,
    *,
    thickness_sd_nm: float = 0.0,
    alpha: Mapping[str, float] | None = None,
    alpha_sd: float | Mapping[str, float] = 0.0,
    params: HardeningParameters | None = None,
    conf: float = 0.95,
    n_mc: int = 20000,
    seed: int = 0,
) -> pd.DataFrame:
    """Δσ per class and in total, with Monte Carlo intervals.

    Parameters
    ----------
    inputs : DataFrame
        One row per class: ``class_name``, ``density`` (areal, per µm²),
        ``density_ci_low``, ``density_ci_high``, ``mean_size`` (mean
        equivalent diameter, nm), ``mean_size_ci_low``, ``mean_size_ci_high``
        -- e.g. ``Study.pooled`` of a calibrated study (its ``"all"`` row is skipped).
    thickness_nm, thickness_sd_nm : float
        Foil thickness and its standard deviation (nm).
    alpha : mapping, optional
        α by class name (default: ``params.alpha``); classes without one are left out.
    alpha_sd : float or mapping
        Standard deviation of α (one for all classes, or by class name).
    params : HardeningParameters, optional
        M, μ, b (and the default α).
    conf, n_mc, seed
        Confidence level, Monte Carlo draws and seed.

    Returns
    -------
    pandas.DataFrame
        Rows per class then ``"total (linear sum)"`` and ``"total (root-sum-square)"``;
        columns ``class_name, alpha, alpha_sd, density_per_um2, mean_diameter_nm,
        thickness_nm, thickness_sd_nm, delta_sigma_mpa, ci_low, ci_high, interval``.
    """
    conf = check_conf(conf)
    p = params or HardeningParameters()
    alphas = dict(p.alpha if alpha is None else alpha)
    if not (thickness_nm and np.isfinite(thickness_nm) and thickness_nm > 0):
        raise MicrosegError(f"The foil thickness must be positive, got {thickness_nm}.")
    if not (np.isfinite(thickness_sd_nm) and thickness_sd_nm >= 0):
        raise MicrosegError(f"The thickness SD must be >= 0, got {thickness_sd_nm}.")
    n_mc = int(n_mc)
    if n_mc < 100:
        raise MicrosegError(f"Use at least 100 Monte Carlo draws, got {n_mc}.")
    need = {"class_name", "density", "density_ci_low", "density_ci_high", "mean_size",
            "mean_size_ci_low", "mean_size_ci_high"}
    if not need <= set(inputs.columns):
        raise MicrosegError(f"Hardening inputs need columns {sorted(need - set(inputs.columns))}.")
    sd_alpha = _per_class(alpha_sd)
    rng = np.random.default_rng(seed)
    tiny = np.finfo(np.float64).tiny
    t_draw = np.maximum(rng.normal(thickness_nm, thickness_sd_nm, n_mc), tiny)
    a = 1 - conf
    interval = (f"Monte Carlo ({n_mc} draws, seed {seed}): density, mean size, thickness and "
                "alpha drawn normal from their intervals / SDs; percentile interval")
    rows, draws = [], []
    for _, r in inputs.iterrows():
        name = str(r["class_name"])
        if name == "all" or name not in alphas:
            continue
        al, als = float(alphas[name]), sd_alpha(name)
        rho, d = float(r["density"]), float(r["mean_size"])
        if not (np.isfinite(rho) and np.isfinite(d)):
            continue
        rho_d = np.maximum(rng.normal(rho, _sd(r["density_ci_low"], r["density_ci_high"], conf), n_mc), tiny)
        d_d = np.maximum(rng.normal(d, _sd(r["mean_size_ci_low"], r["mean_size_ci_high"], conf), n_mc), tiny)
        a_d = np.maximum(rng.normal(al, als, n_mc), 0.0)
        point = float(dbh_mpa(al, rho * PER_M2_PER_UM2 / (thickness_nm * 1e-9) * d * 1e-9, p))
        mc = dbh_mpa(a_d, rho_d * PER_M2_PER_UM2 / (t_draw * 1e-9) * d_d * 1e-9, p)
        draws.append(mc)
        lo, hi = np.quantile(mc, [a / 2, 1 - a / 2])
        rows.append({"class_name": name, "alpha": al, "alpha_sd": als, "density_per_um2": rho,
                     "mean_diameter_nm": d, "thickness_nm": float(thickness_nm),
                     "thickness_sd_nm": float(thickness_sd_nm), "delta_sigma_mpa": point,
                     "ci_low": float(lo), "ci_high": float(hi), "interval": interval})
    if draws:
        m = np.vstack(draws)
        pts = np.array([r["delta_sigma_mpa"] for r in rows])
        for label, point, mc in (("total (linear sum)", pts.sum(), m.sum(0)),
                                 ("total (root-sum-square)", np.sqrt((pts**2).sum()),
                                  np.sqrt((m**2).sum(0)))):
            lo, hi = np.quantile(mc, [a / 2, 1 - a / 2])
            rows.append({"class_name": label, "alpha": np.nan, "alpha_sd": np.nan,
                         "density_per_um2": np.nan, "mean_diameter_nm": np.nan,
                         "thickness_nm": float(thickness_nm), "thickness_sd_nm": float(thickness_sd_nm),
                         "delta_sigma_mpa": float(point), "ci_low": float(lo), "ci_high": float(hi),
                         "interval": interval})
    out = pd.DataFrame(rows, columns=["class_name", "alpha", "alpha_sd", "density_per_um2",
                                      "mean_diameter_nm", "thickness_nm", "thickness_sd_nm",
                                      "delta_sigma_mpa", "ci_low", "ci_high", "interval"])
    out.attrs["parameters"] = {**p.to_dict(), "alpha": alphas, "conf": conf, "n_mc": n_mc,
                               "seed": int(seed)}
    return out


def study_hardening(study, thickness_nm: float, **kwargs) -> pd.DataFrame:
    """:func:`hardening_interval` of a calibrated :class:`~.study.Study`'s pooled table."""
    if study.unit != "nm":
        raise MicrosegError("Barrier hardening needs a calibrated study (sizes in nm).")
    return hardening_interval(study.pooled, thickness_nm, **kwargs)
