"""Plots embedded in Qt: size histograms, class densities, legends (matplotlib), training curves."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QWidget

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



class TrainCurves(QWidget):
    """Training loss against step (left) and validation mIoU and F1 against epoch (right).

    Drawn with QPainter rather than matplotlib: a redraw while a model trains
    costs a few milliseconds of the GUI thread instead of 100-300 ms.
    """

    LINES = {  # series: (panel, colour, label)
        "loss": (0, "#7f8fa6", "step"),
        "epoch_loss": (0, "#f5a623", "epoch"),
        "miou": (1, "#4fc3f7", "mIoU"),
        "f1": (1, "#81c784", "F1 @0.3"),
    }

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(150)
        self._data = {k: ([], []) for k in self.LINES}

    def show_history(self, steps, losses, epochs, epoch_steps, epoch_losses, miou, f1) -> None:
        """Set whole series (lists of numbers; ``nan`` where a value is missing) and repaint."""
        self._data = {
            "loss": (steps, losses),
            "epoch_loss": (epoch_steps, epoch_losses),
            "miou": (epochs, miou),
            "f1": (epochs, f1),
        }
        self.update()

    def _ranges(self, panel: int):
        xs = [x for k, (px, _) in self._data.items() if self.LINES[k][0] == panel for x in px]
        x0, x1 = (0.0, 1.0) if not xs else (min(xs), max(xs))
        if panel == 1:
            return (min(x0, 1) - 0.5, max(x1, 1) + 0.5), (0.0, 1.0)
        ys = [
            y
            for k, (_, py) in self._data.items()
            if self.LINES[k][0] == 0
            for y in py
            if y is not None and np.isfinite(y)
        ]
        y0, y1 = (0.0, 1.0) if not ys else (min(ys), max(ys))
        if y1 <= y0:
            y1 = y0 + 1.0
        return (x0, x1 if x1 > x0 else x0 + 1), (y0, y1)

    def paintEvent(self, event):
        from qtpy.QtCore import QPointF, QRectF, Qt
        from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF

        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(DARK))
        font = QFont(p.font())
        font.setPointSize(7)
        p.setFont(font)
        fg = QColor(FG)
        w, h = self.width(), self.height()
        titles = ("training loss", "validation")
        xlabels = ("step", "epoch")
        for panel in (0, 1):
            left = 8 + panel * w / 2 + 30
            box = QRectF(left, 16, w / 2 - 46, h - 36)
            (x0, x1), (y0, y1) = self._ranges(panel)
            p.setPen(QPen(fg, 1))
            p.drawRect(box)
            p.drawText(QRectF(box.left(), 0, box.width(), 14), Qt.AlignmentFlag.AlignCenter, titles[panel])
            p.drawText(
                QRectF(box.left(), box.bottom() + 2, box.width(), 14),
                Qt.AlignmentFlag.AlignCenter,
                f"{x0:g} … {x1:g} {xlabels[panel]}" if panel == 0 else xlabels[panel],
            )
            for y, align in ((y1, box.top()), (y0, box.bottom() - 10)):
                p.drawText(QRectF(box.left() - 36, align - 2, 34, 14), Qt.AlignmentFlag.AlignRight, f"{y:.3g}")

            def to_px(x, y, box=box, x0=x0, x1=x1, y0=y0, y1=y1):
                return QPointF(
                    box.left() + (x - x0) / (x1 - x0) * box.width(),
                    box.bottom() - (y - y0) / (y1 - y0) * box.height(),
                )

            legend_y = box.top() + 3
            for key, (pan, colour, label) in self.LINES.items():
                if pan != panel:
                    continue
                xs, ys = self._data[key]
                pts = [
                    to_px(x, y)
                    for x, y in zip(xs, ys, strict=False)
                    if y is not None and np.isfinite(y)
                ]
                pen = QPen(QColor(colour), 1.0 if key == "loss" else 1.6)
                p.setPen(pen)
                if len(pts) > 1:
                    p.drawPolyline(QPolygonF(pts))
                if key != "loss":
                    for q in pts:
                        p.drawEllipse(q, 2.0, 2.0)
                p.drawLine(
                    QPointF(box.right() - 60, legend_y + 5), QPointF(box.right() - 50, legend_y + 5)
                )
                p.setPen(fg)
                p.drawText(QRectF(box.right() - 48, legend_y, 47, 12), Qt.AlignmentFlag.AlignLeft, label)
                legend_y += 11
        p.end()
