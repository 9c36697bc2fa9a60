"""Validation of a model during training, through the same code path as inference.

Each validation image is predicted whole with the overlap-tile inference of
:mod:`..models.inference` (or :mod:`..models.instances`), post-processed with
default settings, and scored: pixel mIoU over the defect classes, instance F1
at IoU 0.3, and the relative errors of the number density (objects per area)
and of the areal fraction against the labels.
"""

from __future__ import annotations

import numpy as np
import torch

from ..evaluate.matching import match_instances, prf
from ..evaluate.pixel_metrics import add_confusions, confusion, pixel_scores, semantic_map
from ..models.card import ModelCard
from ..models.postprocess import PostprocessSettings, postprocess

#: IoU at which predicted and true instances match (the creme/Mask R-CNN convention).
MATCH_IOU = 0.3


def predict_labels(model, card: ModelCard, image, settings: PostprocessSettings | None = None):
    """``(instance labels, instance classes)`` of ``image`` by ``model`` as inference makes them."""
    from ..models.inference import predict_probabilities
    from ..models.instances import predict_instances

    if card.task == "instance":
        pred = predict_instances(model, card, image)
        return pred.labels, pred.instance_classes
    prob = predict_probabilities(model, card, image)
    res = postprocess(prob, card.class_ids, settings or PostprocessSettings(thresholds=0.5))
    return res.labels, res.instance_classes


def score_images(model, card: ModelCard, images, settings=None) -> dict:
    """Validation scores of ``model`` over labelled ``images`` (list of TrainImage).

    Returns
    -------
    dict
        ``miou`` (pixel, defect classes), ``foreground_iou``, ``f1``,
        ``precision``, ``recall`` (instances at IoU 0.3, pooled), ``n_true``,
        ``n_pred``, ``density_error`` (relative error of the object count per
        area) and ``area_fraction_error``.
    """
    was_training = model.training
    model.eval()
    cms, tp, n_pred, n_true, a_pred, a_true = [], 0, 0, 0, 0, 0
    try:
        with torch.no_grad():
            for im in images:
                labels, classes = predict_labels(model, card, im.image, settings)
                true = np.asarray(im.labels)
                true_classes = {
                    int(i): int(im.instance_classes.get(int(i), 1)) for i in np.unique(true) if i
                }
                cms.append(
                    confusion(semantic_map(true, true_classes), semantic_map(labels, classes))
                )
                m = match_instances(labels, np.asarray(im.labels), MATCH_IOU)
                tp += m.tp
                n_pred += m.pred_ids.size
                n_true += m.true_ids.size
                a_pred += int((labels > 0).sum())
                a_true += int((np.asarray(im.labels) > 0).sum())
    finally:
        model.train(was_training)
    scores = pixel_scores(add_confusions(*cms))
    p, r, f1 = prf(tp, n_pred, n_true)
    return {
        "miou": scores["miou"],
        "foreground_iou": scores["foreground_iou"],
        "f1": f1,
        "precision": p,
        "recall": r,
        "n_true": n_true,
        "n_pred": n_pred,
        "density_error": (n_pred - n_true) / n_true if n_true else float("nan"),
        "area_fraction_error": (a_pred - a_true) / a_true if a_true else float("nan"),
    }
