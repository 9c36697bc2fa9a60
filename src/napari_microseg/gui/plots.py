"""Matplotlib panels embedded in Qt: size histograms, class densities, legends."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

DARK = "#262930"  # napari's dark theme background
FG = "#d0d0d0"


def _style(ax):
    ax.set_facecolor(DARK)
    ax.tick_params(colors=FG, labelsize=7)
    for spine in ax.spines.values():
        spine.set_color(FG)
    ax.xaxis.label.set_color(FG)
    ax.yaxis.label.set_color(FG)
    ax.title.set_color(FG)


class StatsPlot(FigureCanvasQTAgg):
    """Size histogram per class (left) and areal number density per class (right)."""

    def __init__(self, parent=None):
        self.figure = Figure(figsize=(4.2, 2.2), dpi=90, facecolor=DARK, layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.setMinimumHeight(190)

    def show_result(self, result, colors: dict[str, str]) -> None:
        """Draw a :class:`~napari_microseg.core.measure.MeasureResult`."""
        self.figure.clear()
        ax_h, ax_d = self.figure.subplots(1, 2, width_ratios=[3, 2])
        unit = result.pixel_size.unit
        for name, dist in result.distributions.items():
            if name == "all" or dist.n == 0:
                continue
            centres = 0.5 * (dist.edges[1:] + dist.edges[:-1])
            ax_h.step(centres, dist.counts, where="mid", color=colors.get(name, FG), label=f"{name} ({dist.n})")
        ax_h.set_xlabel(f"equivalent diameter ({unit})", fontsize=7)
        ax_h.set_ylabel("count", fontsize=7)
        ax_h.set_title("size distribution", fontsize=8)
        if ax_h.get_legend_handles_labels()[0]:
            ax_h.legend(fontsize=6, facecolor=DARK, labelcolor=FG, edgecolor=FG)
        s = result.summary[result.summary["class_id"] >= 0]
        s = s[s["count"] > 0]
        col = "density_per_um2" if unit == "nm" else "density_per_px2"
        ax_d.bar(np.arange(len(s)), s[col], color=[colors.get(n, FG) for n in s["class_name"]])
        ax_d.set_xticks(np.arange(len(s)), s["class_name"], rotation=30, ha="right", fontsize=6)
        ax_d.set_ylabel("per µm²" if unit == "nm" else "per px²", fontsize=7)
        ax_d.set_title("areal density", fontsize=8)
        for ax in (ax_h, ax_d):
            _style(ax)
        self.draw_idle()


class ColorLegend(FigureCanvasQTAgg):
    """A horizontal colour bar naming the property shown on the canvas."""

    def __init__(self, parent=None):
        self.figure = Figure(figsize=(4.2, 0.55), dpi=90, facecolor=DARK, layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.setFixedHeight(55)

    def show_scale(self, label: str, vmin: float, vmax: float, cmap: str) -> None:
        """Draw the colour bar for ``label`` from ``vmin`` to ``vmax``."""
        import matplotlib as mpl

        self.figure.clear()
        ax = self.figure.add_subplot(111)
        norm = mpl.colors.Normalize(vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1)
        self.figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), cax=ax, orientation="horizontal")
        ax.set_xlabel(label, fontsize=7)
        _style(ax)
        self.draw_idle()
