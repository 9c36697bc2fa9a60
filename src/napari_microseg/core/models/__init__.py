"""Trained segmentation models: cards, registry, architectures, tiled inference, post-processing.

Typical use::

    model, card = load_model("tem-loops-unet")
    prob = predict_probabilities(model, card, image, pixel_size=mg.pixel_size)
    result = postprocess(prob, card.class_ids,
                         PostprocessSettings(thresholds=0.5, min_size=20, min_size_unit="nm2"),
                         pixel_size=mg.pixel_size)
    # result.labels, result.instance_classes, card.class_table()

Instance models (Mask R-CNN) use :func:`predict_instances` instead.
"""

from .architectures import ARCHITECTURES, build_model, to_probabilities
from .card import CARD_FILE, FORMAT_VERSION, WEIGHTS_FILE, ModelCard, ModelError, read_card
from .ensemble import Ensemble, ensemble_card
from .inference import InferenceCancelled, predict_probabilities
from .instances import InstancePrediction, predict_instances
from .postprocess import (
    PostprocessResult,
    PostprocessSettings,
    clean_mask,
    instance_classes_from_semantic,
    instance_labels,
    min_area_px,
    postprocess,
    remove_small,
    semantic_labels,
    watershed_split,
)
from .registry import (
    ENV_MODELS_DIR,
    ModelEntry,
    export_model,
    import_model,
    list_models,
    load_model,
    models_dir,
    register_model,
    remove_model,
)

__all__ = [
    "ARCHITECTURES",
    "CARD_FILE",
    "ENV_MODELS_DIR",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "Ensemble",
    "InferenceCancelled",
    "InstancePrediction",
    "ModelCard",
    "ModelEntry",
    "ModelError",
    "PostprocessResult",
    "PostprocessSettings",
    "build_model",
    "clean_mask",
    "ensemble_card",
    "export_model",
    "import_model",
    "instance_classes_from_semantic",
    "instance_labels",
    "list_models",
    "load_model",
    "min_area_px",
    "models_dir",
    "postprocess",
    "predict_instances",
    "predict_probabilities",
    "read_card",
    "register_model",
    "remove_model",
    "remove_small",
    "semantic_labels",
    "to_probabilities",
    "watershed_split",
]
