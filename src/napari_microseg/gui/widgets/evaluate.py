"""Evaluate dock: compare a predicted Labels layer with a ground-truth one.

Shows detection precision/recall/F1, per-class errors of size, circularity and
density, pixel IoU, and draws matched, false and missed objects in three
colours. Numbers come from :func:`napari_microseg.core.evaluate.evaluate_image`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from magicgui.widgets import Container, FloatSpinBox, PushButton
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ...core.errors import MicrosegError
from ...core.evaluate import evaluate_image, match_instances
from ..layer_data import helper_metadata, layer_classes, layer_pixel_size
from ..layer_follow import LayerFollower, layer_picker
from ..table_view import DataFrameView
from ..workers import start_worker

if TYPE_CHECKING:
    import napari

#: Values and colours of the comparison layer.
OUTCOMES = {1: ("matched", "#3cb44b"), 2: ("false positive", "#e6194b"), 3: ("missed", "#4363d8")}


def outcome_map(pred: np.ndarray, true: np.ndarray, iou_threshold: float = 0.3) -> tuple[np.ndarray, object]:
    """Label image: 1 matched prediction, 2 false positive, 3 missed true object.

    Missed objects are drawn where no prediction covers them, so a false
    positive on top of a missed object stays visible as false.
    """
    m = match_instances(pred, true, iou_threshold)
    out = np.zeros(pred.shape, dtype=np.uint8)
    out[np.isin(true, m.unmatched_true) & (pred == 0)] = 3
    out[np.isin(pred, m.unmatched_pred)] = 2
    out[np.isin(pred, m.matched_pred)] = 1
    return out, m


def per_class_table(report: dict) -> pd.DataFrame:
    """The report's per-class block as a table."""
    rows = [{"class": name, **vals} for name, vals in report["per_class"].items()]
    return pd.DataFrame(rows)


def evaluate_layers(pred_layer, true_layer, iou_threshold: float = 0.3) -> tuple[dict, np.ndarray]:
    """Report and outcome map for two Labels layers of the same shape."""
    if pred_layer is None or true_layer is None:
        raise MicrosegError("Choose a prediction and a ground-truth Labels layer.")
    pred, true = np.asarray(pred_layer.data), np.asarray(true_layer.data)
    if pred.shape != true.shape:
        raise MicrosegError(f"{pred_layer.name} is {pred.shape} but {true_layer.name} is {true.shape}.")
    if pred_layer is true_layer:
        raise MicrosegError("Prediction and ground truth are the same layer.")
    pred_cls, classes = layer_classes(pred_layer)
    true_cls, _ = layer_classes(true_layer)
    ps = layer_pixel_size(true_layer)
    if not ps.calibrated:
        ps = layer_pixel_size(pred_layer)
    report = evaluate_image(pred, true, pred_classes=pred_cls, true_classes=true_cls, classes=classes,
                            iou_threshold=iou_threshold, pixel_size=ps)
    outcomes, _ = outcome_map(pred, true, iou_threshold)
    return report, outcomes


def show_outcomes(viewer, outcomes: np.ndarray, like_layer, name: str = "evaluation"):
    """Add (or replace) the three-colour comparison layer."""
    from napari.utils.colormaps import DirectLabelColormap

    colors = {k: c for k, (_, c) in OUTCOMES.items()}
    colors[0] = "transparent"
    colors[None] = "transparent"
    if name in viewer.layers:
        viewer.layers.remove(name)
    return viewer.add_labels(outcomes, name=name, scale=like_layer.scale, translate=like_layer.translate,
                             units=like_layer.units, colormap=DirectLabelColormap(color_dict=colors),
                             opacity=0.8, metadata=helper_metadata(like_layer.name, "evaluation"))


def report_text(report: dict) -> str:
    """Short HTML summary of a report."""
    d = report["detection"]
    px = report.get("pixel", {})
    lines = [
        f"<b>Detection</b> at IoU {report['iou_threshold']:g}: precision {d['precision']:.3f}, "
        f"recall {d['recall']:.3f}, F1 {d['f1']:.3f} ({d['tp']} matched, {d['fp']} false, {d['fn']} missed)",
        "IoU@50/75/90/95 recall: " + ", ".join(f"{report['iou_at'][k]:.2f}" for k in ("50", "75", "90", "95")),
    ]
    if px:
        lines.append(f"Pixels: foreground IoU {px['foreground_iou']:.3f}, Dice {px['dice']:.3f}, "
                     f"class mIoU {px['miou']:.3f}")
    o = report.get("overall", {})
    if o:
        lines.append(f"All objects: size error {o.get('size_error_pct', float('nan')):+.1f} %, "
                     f"density error {o.get('density_error_pct', float('nan')):+.1f} %")
    legend = " ".join(f"<span style='color:{c}'>■</span> {n}" for n, c in OUTCOMES.values())
    lines.append(legend)
    return "<br>".join(lines)


class EvaluateWidget(QWidget):
    """Dock widget: prediction vs ground truth, metrics and a three-colour overlay."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.report = None
        self.pred = layer_picker(viewer, "Labels", "prediction", nullable=True)
        self.true = layer_picker(viewer, "Labels", "ground truth")
        self.iou = FloatSpinBox(label="match IoU ≥", min=0.05, max=0.95, step=0.05, value=0.3)
        self.button = PushButton(text="Evaluate")
        self.params = Container(widgets=[self.pred, self.true, self.iou, self.button])
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.table = DataFrameView(self)
        layout = QVBoxLayout(self)
        for w in (self.params.native, self.text, self.table):
            layout.addWidget(w)
        self.button.changed.connect(self.run)
        # the prediction follows the active Labels layer; the truth prefers ground-truth layers
        self._follow = LayerFollower(viewer, labels=self.pred, truth=self.true)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)

    def reset_choices(self, *_):
        """Refresh the layer pickers (they follow the active layer unless the user chose one)."""
        self._follow.reset_choices()

    def run(self, *_):
        """Evaluate in a worker thread."""
        from napari.utils.notifications import show_error

        pred, true = self.pred.value, self.true.value
        if pred is None or true is None or pred is true:
            show_error("Choose two different Labels layers: a prediction and a ground truth.")
            return None
        self.button.enabled = False
        return start_worker(
            evaluate_layers, pred, true, self.iou.value,
            on_returned=self._show, on_finished=lambda: setattr(self.button, "enabled", True), owner=self,
        )

    def _show(self, out):
        report, outcomes = out
        self.report = report
        self.text.setText(report_text(report))
        self.table.set_dataframe(per_class_table(report))
        show_outcomes(self._viewer, outcomes, self.true.value)
