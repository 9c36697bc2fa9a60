"""``microseg evaluate``: score predicted labels against ground-truth labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.calibration import PixelSize
from ..core.errors import MicrosegError
from ..core.evaluate import evaluate_image, report_to_json
from ..core.labels_io import read_labels, warn_if_pixel_sizes_differ


def register(sub) -> None:
    """Add the ``evaluate`` subcommand."""
    p = sub.add_parser(
        "evaluate",
        help="precision/recall/F1, size and density errors, IoU metrics of PRED vs GT",
        description="Match predicted to true instances at an IoU threshold and report "
        "detection, per-class and pixel metrics.",
    )
    p.add_argument("pred", help="predicted labels .tif (+ sidecar with classes)")
    p.add_argument("gt", help="ground-truth labels .tif (+ sidecar with classes)")
    p.add_argument("--iou", type=float, default=0.3, help="IoU a match needs (default 0.3)")
    p.add_argument("--pixel-size", type=float, metavar="NM", help="pixel size in nm for sizes")
    p.add_argument("--probability", metavar="TIF", help="float probability map for AUPRC: 2-D foreground in [0, 1], or the "
                   "<stem>_prob.tif class planes of predict --probabilities")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument(
        "--source-report",
        metavar="JSON",
        help="a report (from --json) on the source domain: adds relative domain "
        "transferability RDT = (mIoU_target - mIoU_source) / mIoU_source",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    """Evaluate and print the report."""
    pred = read_labels(args.pred)
    gt = read_labels(args.gt)
    if pred.labels.shape != gt.labels.shape:
        raise MicrosegError(
            f"Prediction is {pred.labels.shape[1]} x {pred.labels.shape[0]} px but the ground "
            f"truth is {gt.labels.shape[1]} x {gt.labels.shape[0]} px."
        )
    if args.pixel_size is not None:
        ps = PixelSize.isotropic(args.pixel_size, "user", "--pixel-size")
    else:
        ps = gt.pixel_size if gt.pixel_size.calibrated else pred.pixel_size
        warn_if_pixel_sizes_differ(ps, pred.pixel_size, f"the ground truth {Path(args.gt).name}",
                                   f"the prediction {Path(args.pred).name}")
    prob = None
    if args.probability:
        from ..core.evaluate.probability import read_probability

        prob = read_probability(args.probability, gt.labels.shape)
    report = evaluate_image(
        pred.labels,
        gt.labels,
        pred_classes=pred.instance_classes,
        true_classes=gt.instance_classes,
        classes=gt.classes,
        iou_threshold=args.iou,
        probability=prob,
        pixel_size=ps,
    )
    if args.source_report:
        report["rdt"] = _rdt(args.source_report, report)
    if args.json:
        print(report_to_json(report, indent=2))
    else:
        print(format_report(report))
    return 0


def _rdt(path, report) -> dict:
    import json
    from pathlib import Path

    from ..core.evaluate import relative_domain_transferability

    try:
        source = json.loads(Path(path).read_text())
        miou_source = float(source["pixel"]["miou"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MicrosegError(f"Cannot read mIoU from the source report {path}: {e}") from e
    miou_target = report["pixel"]["miou"]
    return {
        "miou_source": miou_source,
        "miou_target": miou_target,
        "rdt": relative_domain_transferability(miou_target, miou_source),
    }


def _f(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def format_report(rep: dict) -> str:
    """A readable plain-text rendering of an evaluation report."""
    d = rep["detection"]
    u = rep["unit"]
    lines = [
        f"IoU threshold {rep['iou_threshold']:g}; sizes in {u}",
        f"detection: {d['n_true']} true, {d['n_pred']} predicted, TP {d['tp']}, FP {d['fp']}, "
        f"FN {d['fn']}",
        f"  precision {_f(d['precision'])}  recall {_f(d['recall'])}  F1 {_f(d['f1'])}",
        "",
        f"{'class':<16}{'true':>6}{'pred':>6}{'TP':>5}{'P':>7}{'R':>7}{'F1':>7}"
        f"{'size%':>9}{'heyw%':>9}{'dens%':>9}",
    ]
    rows = [*rep["per_class"].items(), ("all", {**d, **rep["overall"], "n_true": d["n_true"]})]
    for name, c in rows:
        lines.append(
            f"{name[:15]:<16}{c['n_true']:>6}{c['n_pred']:>6}{c['tp']:>5}"
            f"{_f(c['precision']):>7}{_f(c['recall']):>7}{_f(c['f1']):>7}"
            f"{_f(c['size_error_pct'], 1):>9}{_f(c['heywood_error_pct'], 1):>9}"
            f"{_f(c['density_error_pct'], 1):>9}"
        )
    px = rep["pixel"]
    lines += [
        "",
        "pixel: mIoU "
        + ("(foreground IoU: the ground truth has no classes) "
           if px.get("miou_basis", "classes") != "classes" else "")
        + _f(px["miou"])
        + "  Dice "
        + _f(px["dice"])
        + "  precision "
        + _f(px["pixel_precision"])
        + "  recall "
        + _f(px["pixel_recall"])
        + ("  AUPRC " + _f(px["auprc"]) if px.get("auprc") is not None else ""),
        "  IoU per class: " + ", ".join(f"{k} {_f(v)}" for k, v in px["per_class_iou"].items()),
        "  true instances matched at IoU >= "
        + ", ".join(f"0.{k}: {_f(v)}" for k, v in rep["iou_at"].items()),
    ]
    if "rdt" in rep:
        r = rep["rdt"]
        lines.append(f"domain transfer: mIoU source {_f(r['miou_source'])}, target "
                     f"{_f(r['miou_target'])}, RDT {_f(r['rdt'])}")
    return "\n".join(lines)
