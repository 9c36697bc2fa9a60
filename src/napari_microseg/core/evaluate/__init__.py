"""Evaluation of predicted labels against ground truth: matching, pixel metrics, reports.

Typical use::

    report = evaluate_image(pred, true, pred_classes=pc, true_classes=tc,
                            pixel_size=ps, iou_threshold=0.3)
    print(report["detection"]["f1"], report["pixel"]["miou"])
"""

from .matching import Matching, Overlaps, match_instances, match_overlaps, overlaps, prf
from .pixel_metrics import (
    average_precision,
    confusion,
    pixel_scores,
    relative_domain_transferability,
    semantic_map,
)
from .report import IOU_AT, evaluate_image, evaluate_images, report_to_json

__all__ = [
    "IOU_AT",
    "Matching",
    "Overlaps",
    "average_precision",
    "confusion",
    "evaluate_image",
    "evaluate_images",
    "match_instances",
    "match_overlaps",
    "overlaps",
    "pixel_scores",
    "prf",
    "relative_domain_transferability",
    "report_to_json",
    "semantic_map",
]
