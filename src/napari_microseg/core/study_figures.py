"""Matplotlib figures of a study: size distribution with its band, density per field.

Pure Matplotlib (no Qt, no pyplot state): the functions draw on a
:class:`matplotlib.figure.Figure` they are given, so the Study dock draws them
on its Qt canvas and the batch report on an Agg canvas, with the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Colours of the light (report) and dark (napari) themes: background, foreground, accent.
THEMES = {
    "light": {"bg": "white", "fg": "#222222", "bar": "#4363d8", "band": "#9fb3ee", "fit": "#e6194b"},
    "dark": {"bg": "#262930", "fg": "#d0d0d0", "bar": "#4fc3f7", "band": "#2f5f7a", "fit": "#f5a623"},
}


def _style(ax, theme: dict, fontsize: float) -> None:
    ax.set_facecolor(theme["bg"])
    ax.tick_params(colors=theme["fg"], labelsize=fontsize)
    for spine in ax.spines.values():
        spine.set_color(theme["fg"])
    for text in (ax.xaxis.label, ax.yaxis.label, ax.title):
        text.set_color(theme["fg"])
        text.set_fontsize(fontsize + 1)


def _legend(ax, theme: dict, fontsize: float) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fontsize, facecolor=theme["bg"], labelcolor=theme["fg"], edgecolor=theme["fg"])


def draw_size_distribution(
    fig,
    hist: pd.DataFrame,
    *,
    fit: dict | None = None,
    quantity: str = "equivalent diameter",
    unit: str = "nm",
    conf: float = 0.95,
    theme: str = "light",
    fontsize: float = 7.0,
) -> None:
    """Histogram (probability density) and cumulative fraction, each with its band.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Cleared, then given two axes side by side.
    hist : DataFrame
        :func:`napari_microseg.core.stats.distributions.histogram_with_band`
        output: bin edges, density and cumulative fraction with their bands.
    fit : dict, optional
        :func:`~napari_microseg.core.stats.distributions.lognormal_fit` output
        (``mu``, ``sigma`` of ``ln x``); its density and cumulative curve are
        drawn over the histogram.
    quantity, unit : str
        Axis label.
    conf : float
        Confidence level of the band, for the legend.
    theme : {"light", "dark"}
    """
    from scipy import stats

    t = THEMES[theme]
    fig.clear()
    fig.set_facecolor(t["bg"])
    ax_h, ax_c = fig.subplots(1, 2)
    lo, hi = hist["bin_left"].to_numpy(float), hist["bin_right"].to_numpy(float)
    pct = f"{100 * conf:g} %"
    if len(hist):
        ax_h.bar(lo, hist["density"], width=hi - lo, align="edge", color=t["bar"], alpha=0.85,
                 edgecolor=t["bg"], linewidth=0.4, label="histogram")
        mid = 0.5 * (lo + hi)
        ax_h.errorbar(mid, hist["density"], yerr=[hist["density"] - hist["density_ci_low"],
                                                  hist["density_ci_high"] - hist["density"]],
                      fmt="none", ecolor=t["fg"], elinewidth=0.7, capsize=1.5, label=f"{pct} band")
        x = np.r_[lo[0], hi]
        ax_c.fill_between(x, np.r_[0.0, hist["cumulative_ci_low"]], np.r_[0.0, hist["cumulative_ci_high"]],
                          color=t["band"], alpha=0.7, linewidth=0,
                          label=f"{pct} band")
        ax_c.plot(x, np.r_[0.0, hist["cumulative"]], color=t["bar"], lw=1.2, label="cumulative")
        if fit and np.isfinite(fit.get("mu", np.nan)) and np.isfinite(fit.get("sigma", np.nan)):
            dist = stats.lognorm(s=fit["sigma"], scale=np.exp(fit["mu"]))
            xs = np.linspace(max(lo[0], 1e-9), hi[-1], 200)
            label = f"log-normal μ={fit['mu']:.3g}, σ={fit['sigma']:.3g}"
            ax_h.plot(xs, dist.pdf(xs), color=t["fit"], lw=1.2, label=label)
            ax_c.plot(xs, dist.cdf(xs), color=t["fit"], lw=1.0, ls="--", label="log-normal")
    ax_h.set_xlabel(f"{quantity} ({unit})")
    ax_h.set_ylabel(f"probability density (1/{unit})")
    ax_h.set_title("size distribution")
    ax_c.set_xlabel(f"{quantity} ({unit})")
    ax_c.set_ylabel("cumulative fraction")
    ax_c.set_ylim(0, 1.02)
    ax_c.set_title("cumulative")
    for ax in (ax_h, ax_c):
        _style(ax, t, fontsize)
        _legend(ax, t, fontsize - 1)


def draw_field_values(
    fig,
    per_field: pd.DataFrame,
    column: str,
    *,
    low: str | None = None,
    high: str | None = None,
    pooled: tuple[float, float, float] | None = None,
    outliers=None,
    ylabel: str = "",
    title: str = "per field (own interval) and pooled (between-field interval)",
    theme: str = "light",
    fontsize: float = 7.0,
) -> None:
    """One point per field with its interval, the pooled value and its band; outliers ringed.

    Parameters
    ----------
    per_field : DataFrame
        One row per field with a ``field`` column and ``column`` (plus
        ``low``/``high`` interval columns when given).
    pooled : (value, low, high), optional
        The pooled estimate and its interval, drawn as a line and a band.
    outliers : iterable of str, optional
        Field names to ring in the fit colour.
    """
    t = THEMES[theme]
    fig.clear()
    fig.set_facecolor(t["bg"])
    ax = fig.add_subplot(111)
    x = np.arange(len(per_field))
    y = per_field[column].to_numpy(float)
    if low and high and low in per_field and high in per_field:
        ax.errorbar(x, y, yerr=[y - per_field[low].to_numpy(float), per_field[high].to_numpy(float) - y],
                    fmt="o", ms=3, color=t["bar"], ecolor=t["bar"], elinewidth=0.8, capsize=2, label="field")
    else:
        ax.plot(x, y, "o", ms=3, color=t["bar"], label="field")
    if pooled is not None and np.isfinite(pooled[0]):
        ax.axhline(pooled[0], color=t["fit"], lw=1.0, label="pooled")
        if np.isfinite(pooled[1]) and np.isfinite(pooled[2]):
            ax.axhspan(pooled[1], pooled[2], color=t["fit"], alpha=0.18, linewidth=0, label="pooled interval")
    flagged = set(outliers or ())
    sel = np.array([str(f) in flagged for f in per_field["field"]], bool) if len(per_field) else np.zeros(0, bool)
    if sel.any():
        ax.plot(x[sel], y[sel], "o", ms=9, mfc="none", mec=t["fit"], mew=1.3, label="outlier")
    ax.set_xticks(x, [str(f) for f in per_field["field"]], rotation=30, ha="right", fontsize=fontsize - 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _style(ax, t, fontsize)
    _legend(ax, t, fontsize - 1)


def size_quantity(study) -> str:
    """Axis name of a study's size measure (``"equivalent diameter"``)."""
    return study.settings["size"].rsplit("_", 1)[0].replace("_", " ")


def draw_class_distribution(fig, study, class_name: str = "all", *, theme: str = "light",
                            fontsize: float = 7.0) -> bool:
    """:func:`draw_size_distribution` of one class of a :class:`~napari_microseg.core.stats.study.Study`.

    Returns False (and draws nothing) when the class has no object.
    """
    hist = study.histograms[study.histograms["class_name"] == class_name]
    if not len(hist) or not hist["count"].sum():
        return False
    fit = study.lognormal[study.lognormal["class_name"] == class_name]
    draw_size_distribution(fig, hist, fit=fit.iloc[0].to_dict() if len(fit) else None,
                           quantity=size_quantity(study), unit=study.unit, conf=study.settings["conf"],
                           theme=theme, fontsize=fontsize)
    return True


def draw_class_fields(fig, study, class_name: str = "all", *, theme: str = "light", fontsize: float = 7.0) -> None:
    """:func:`draw_field_values` of the density of one class of a study, its outlier fields ringed."""
    pf = study.per_field[study.per_field["class_name"] == class_name]
    row = study.pooled[study.pooled["class_name"] == class_name].iloc[0]
    out = study.outliers
    flagged = out.loc[(out["class_name"] == class_name) & (out["quantity"] == "density"), "field"]
    draw_field_values(fig, pf, "density", low="density_ci_low", high="density_ci_high",
                      pooled=(row["density"], row["density_ci_low"], row["density_ci_high"]),
                      outliers=list(flagged), ylabel=f"density ({study.density_unit})", theme=theme,
                      fontsize=fontsize)


def render_rgba(draw, size_px: tuple[int, int], dpi: float = 100.0) -> np.ndarray:
    """``draw(fig)`` on an Agg canvas of ``size_px`` (width, height); the RGBA image (H, W, 4) uint8.

    Safe in a worker thread (no pyplot, no GUI canvas), so a GUI only shows the image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    draw(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()
