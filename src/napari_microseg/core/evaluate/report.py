"""Evaluation report of predicted against true labels, for one image or a set.

JSON keys of the report (all plain JSON types; NaN becomes ``null`` in
:func:`report_to_json`)
--------------------------------------------------------------------------

``iou_threshold``
    IoU a match needs (default 0.3).
``n_images``, ``unit``
    Number of images pooled; length unit of sizes (``"nm"`` or ``"px"``).
``detection``
    Class-agnostic: ``n_true``, ``n_pred``, ``tp``, ``fp``, ``fn``,
    ``precision``, ``recall``, ``f1``.
``per_class``
    ``{class_name: {...}}`` for each class in either image (``"unclassified"``
    for instances without a class): ``class_id``, ``n_true``, ``n_pred``,
    ``tp`` (matched pairs where both are of this class; "type" matching),
    ``precision``, ``recall``, ``f1``, ``mean_size_true``, ``mean_size_pred``,
    ``size_error_pct``, ``mean_heywood_true``, ``mean_heywood_pred``,
    ``heywood_error_pct``, ``density_true``, ``density_pred``,
    ``density_error_pct``. Sizes are mean equivalent diameters of *all* objects
    of the class (matched or not), densities are counts per analysed area in
    ``unit``⁻² (per nm² or per px²); errors are ``100 (pred - true) / true``.
``overall``
    The same size/Heywood/density entries for all objects regardless of class.
``iou_at``
    ``{"50", "75", "90", "95"}``: fraction of true instances matched one-to-one
    (greedy, see :mod:`.matching`) to a prediction with IoU >= 0.50 ... 0.95,
    i.e. recall at that IoU threshold.
``pixel``
    :func:`.pixel_metrics.pixel_scores` with classes keyed by name, plus
    ``auprc`` (average precision of the probability map, ``null`` without one),
    ``miou_basis`` (``"classes"``, or ``"foreground (ground truth without
    classes)"`` when the ground truth has no classes but the prediction has:
    ``miou`` is then the foreground IoU, with a warning) and ``miou_per_class``.
``images``
    For a set: the per-image reports (without their own ``images``).

Pooling over a set: detection and type counts, true/predicted objects,
analysed areas and pixel confusion matrices are summed before the ratios are
taken (micro-averaging); AUPRC pools all pixels.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..calibration import PixelSize
from ..classes import ClassTable
from ..errors import MicrosegError
from ..measure.objects import UNCLASSIFIED, measure_objects
from .matching import Overlaps, match_overlaps, overlaps, prf
from .pixel_metrics import (
    add_confusions,
    average_precision,
    confusion,
    pixel_scores,
    semantic_map,
)

#: IoU thresholds of ``iou_at``.
IOU_AT = (0.50, 0.75, 0.90, 0.95)


@dataclass
class _Partial:
    """Summable pieces of one image's evaluation."""

    tp: int = 0
    n_true: int = 0
    n_pred: int = 0
    type_tp: dict = field(default_factory=dict)
    true_objs: list = field(default_factory=list)  # arrays (class_id, size, heywood)
    pred_objs: list = field(default_factory=list)
    area: float = 0.0
    cm: dict = field(default_factory=dict)
    iou_at_tp: dict = field(default_factory=dict)
    truth_px: list = field(default_factory=list)
    scores_px: list = field(default_factory=list)
    unit: str = "px"


def _objects(labels, inst_classes, ps, classes):
    t = measure_objects(labels, ps, instance_classes=inst_classes, classes=classes)
    u = ps.unit
    return np.c_[
        t["class_id"].to_numpy(np.float64),
        t[f"equivalent_diameter_{u}"].to_numpy(),
        t["heywood_circularity"].to_numpy(),
    ]


def _partial(
    pred,
    true,
    pred_classes,
    true_classes,
    classes,
    threshold,
    probability,
    pixel_size,
    analysis_mask,
) -> _Partial:
    ps = pixel_size if pixel_size is not None else PixelSize.uncalibrated()
    ov: Overlaps = overlaps(pred, true)
    m = match_overlaps(ov, threshold)
    pc = {int(k): int(v) for k, v in (pred_classes or {}).items()}
    tc = {int(k): int(v) for k, v in (true_classes or {}).items()}
    part = _Partial(tp=m.tp, n_true=int(m.true_ids.size), n_pred=int(m.pred_ids.size), unit=ps.unit)
    for a, b in zip(m.matched_true.tolist(), m.matched_pred.tolist(), strict=True):
        ca, cb = tc.get(a, 0), pc.get(b, 0)
        if ca == cb:
            part.type_tp[ca] = part.type_tp.get(ca, 0) + 1
    part.true_objs.append(_objects(true, tc, ps, classes))
    part.pred_objs.append(_objects(pred, pc, ps, classes))
    shape = np.shape(true)
    n_px = (
        int(np.count_nonzero(analysis_mask)) if analysis_mask is not None else shape[0] * shape[1]
    )
    part.area = n_px * (ps.area_nm2 if ps.calibrated else 1.0)
    part.cm = confusion(semantic_map(true, tc), semantic_map(pred, pc), analysis_mask)
    for t in IOU_AT:
        part.iou_at_tp[t] = match_overlaps(ov, t).tp
    if probability is not None:
        prob = np.asarray(probability, np.float64)
        if prob.shape != shape:
            raise MicrosegError(f"Probability map shape {prob.shape} differs from {shape}.")
        sel = np.asarray(analysis_mask, bool) if analysis_mask is not None else slice(None)
        part.truth_px.append((np.asarray(true) != 0)[sel].ravel())
        part.scores_px.append(prob[sel].ravel())
    return part


def _pct(pred, true):
    if true is None or pred is None or not np.isfinite(true) or true == 0:
        return float("nan")
    return 100.0 * (pred - true) / true


def _size_entries(tobj, pobj, area):
    def mean(a, col):
        return float(a[:, col].mean()) if a.shape[0] else float("nan")

    st, sp = mean(tobj, 1), mean(pobj, 1)
    ht, hp = mean(tobj, 2), mean(pobj, 2)
    dt = tobj.shape[0] / area if area else float("nan")
    dp = pobj.shape[0] / area if area else float("nan")
    return {
        "mean_size_true": st,
        "mean_size_pred": sp,
        "size_error_pct": _pct(sp, st),
        "mean_heywood_true": ht,
        "mean_heywood_pred": hp,
        "heywood_error_pct": _pct(hp, ht),
        "density_true": dt,
        "density_pred": dp,
        "density_error_pct": _pct(dp, dt),
    }


def _finalize(parts: Sequence[_Partial], threshold, names: Mapping[int, str]) -> dict:
    units = {p.unit for p in parts}
    if len(units) > 1:
        raise MicrosegError("Cannot pool calibrated and uncalibrated images; give all pixel sizes.")
    tp = sum(p.tp for p in parts)
    nt = sum(p.n_true for p in parts)
    npred = sum(p.n_pred for p in parts)
    prec, rec, f1 = prf(tp, npred, nt)
    tobj = np.concatenate([o for p in parts for o in p.true_objs]) if parts else np.zeros((0, 3))
    pobj = np.concatenate([o for p in parts for o in p.pred_objs]) if parts else np.zeros((0, 3))
    area = sum(p.area for p in parts)
    per_class = {}
    for c in sorted(set(tobj[:, 0].astype(int)) | set(pobj[:, 0].astype(int))):
        ct, cp = tobj[tobj[:, 0] == c], pobj[pobj[:, 0] == c]
        ttp = sum(p.type_tp.get(c, 0) for p in parts)
        cpr, crc, cf1 = prf(ttp, cp.shape[0], ct.shape[0])
        name = UNCLASSIFIED if c == 0 else names.get(c, f"class {c}")
        per_class[name] = {
            "class_id": int(c),
            "n_true": int(ct.shape[0]),
            "n_pred": int(cp.shape[0]),
            "tp": int(ttp),
            "precision": cpr,
            "recall": crc,
            "f1": cf1,
            **_size_entries(ct, cp, area),
        }
    cm = add_confusions(*(p.cm for p in parts))
    pix = pixel_scores(cm)
    pix["per_class_iou"] = {_name(c, names): v for c, v in pix["per_class_iou"].items()}
    pix["per_class_dice"] = {_name(c, names): v for c, v in pix["per_class_dice"].items()}
    truth = [t for p in parts for t in p.truth_px]
    pix["auprc"] = (
        average_precision(
            np.concatenate(truth), np.concatenate([s for p in parts for s in p.scores_px])
        )
        if truth
        else None
    )
    return {
        "iou_threshold": float(threshold),
        "n_images": len(parts),
        "unit": parts[0].unit if parts else "px",
        "detection": {
            "n_true": nt,
            "n_pred": npred,
            "tp": tp,
            "fp": npred - tp,
            "fn": nt - tp,
            "precision": prec,
            "recall": rec,
            "f1": f1,
        },
        "per_class": per_class,
        "overall": _size_entries(tobj, pobj, area),
        "iou_at": {
            f"{round(t * 100):d}": (sum(p.iou_at_tp[t] for p in parts) / nt if nt else float("nan"))
            for t in IOU_AT
        },
        "pixel": pix,
    }


def _name(c: int, names: Mapping[int, str]) -> str:
    return UNCLASSIFIED if c == 0 else names.get(c, f"class {c}")


def evaluate_image(
    pred,
    true,
    *,
    pred_classes: Mapping[int, int] | None = None,
    true_classes: Mapping[int, int] | None = None,
    classes: ClassTable | None = None,
    iou_threshold: float = 0.3,
    probability=None,
    pixel_size: PixelSize | None = None,
    analysis_mask=None,
) -> dict:
    """Evaluate one predicted labels image against the ground truth.

    Parameters
    ----------
    pred, true : array-like
        2-D labels images of the same shape.
    pred_classes, true_classes : mapping, optional
        ``{instance_id: class_id}`` of each.
    classes : ClassTable, optional
        Class names (default :data:`~napari_microseg.core.classes.DEFAULT_CLASSES`).
    iou_threshold : float
        IoU a match needs.
    probability : array-like, optional
        Foreground probability map, for ``pixel.auprc``.
    pixel_size : PixelSize, optional
        For sizes and densities in nm (px otherwise).
    analysis_mask : array-like of bool, optional
        Analysed pixels (density area and pixel metrics).

    Returns
    -------
    dict
        See the module docstring for the keys.
    """
    return evaluate_images(
        [
            dict(
                pred=pred,
                true=true,
                pred_classes=pred_classes,
                true_classes=true_classes,
                probability=probability,
                pixel_size=pixel_size,
                analysis_mask=analysis_mask,
            )
        ],
        classes=classes,
        iou_threshold=iou_threshold,
        per_image=False,
    )


def evaluate_images(
    items: Sequence[Mapping],
    *,
    classes: ClassTable | None = None,
    iou_threshold: float = 0.3,
    per_image: bool = True,
) -> dict:
    """Evaluate a set of images and pool the results.

    Parameters
    ----------
    items : sequence of mapping
        Each with keys ``pred``, ``true`` and optionally ``pred_classes``,
        ``true_classes``, ``probability``, ``pixel_size``, ``analysis_mask``,
        ``name`` (as for :func:`evaluate_image`).
    classes : ClassTable, optional
        Class names.
    iou_threshold : float
        IoU a match needs.
    per_image : bool
        Include the per-image reports under ``images``.
    """
    table = classes if classes is not None else ClassTable()
    names = table.names()
    parts, singles = [], []
    for i, it in enumerate(items):
        part = _partial(
            it["pred"],
            it["true"],
            it.get("pred_classes"),
            it.get("true_classes"),
            table,
            iou_threshold,
            it.get("probability"),
            it.get("pixel_size"),
            it.get("analysis_mask"),
        )
        parts.append(part)
        if per_image:
            rep = _finalize([part], iou_threshold, names)
            rep["name"] = str(it.get("name", i))
            singles.append(rep)
    out = _finalize(parts, iou_threshold, names)
    if per_image:
        out["images"] = singles
    fallback = not any(it.get("true_classes") for it in items) and any(
        it.get("pred_classes") for it in items
    )
    for rep in [out, *singles]:
        _miou_basis(rep, fallback)
    if fallback:
        warnings.warn(
            "the ground truth has no classes (no class sidecar) but the prediction has: pixel "
            f"mIoU is the class-agnostic foreground IoU ({out['pixel']['miou']:.3f}), not per class.",
            stacklevel=2,
        )
    return out


def _miou_basis(rep: dict, foreground: bool) -> None:
    """Set ``pixel.miou_basis``; with ``foreground`` make ``miou`` the foreground IoU.

    The per-class value is kept as ``pixel.miou_per_class``.
    """
    pix = rep["pixel"]
    pix["miou_per_class"] = pix["miou"]
    if foreground:
        pix["miou"] = pix["foreground_iou"]
        pix["miou_basis"] = "foreground (ground truth without classes)"
    else:
        pix["miou_basis"] = "classes"


def _clean(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def report_to_json(report: Mapping, **kwargs) -> str:
    """The report as strict JSON (NaN and infinities written as ``null``)."""
    return json.dumps(_clean(report), allow_nan=False, **kwargs)
