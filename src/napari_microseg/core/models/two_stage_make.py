"""Make and register a two-stage model (``microseg two-stage``).

Apart from :mod:`.two_stage` (the model and its card) because it needs the
registry, which itself loads two-stage models through :mod:`.two_stage`.
"""

from __future__ import annotations

from .registry import load_model, register_model
from .two_stage import AUTO, make_refiner, resolve_refiner, two_stage_card


def create_two_stage(name: str, detector: str, refiner: str = AUTO, *, min_score: float = 0.05,
                     box_margin: float = 0.0, refine_classes=None, overwrite: bool = False,
                     root=None,
                     description: str = ""):
    """Register a two-stage model; return ``(folder, card)``.

    The detector is loaded and the refiner built before anything is written,
    so a model that cannot run is never registered. ``refiner="auto"`` is
    resolved now (SAM2 when installed with weights, else ``microseg-promptable``)
    and the resolved name is what the card records.
    """
    dmodel, dcard = load_model(detector, device="cpu")
    del dmodel
    refiner = resolve_refiner(refiner)
    make_refiner(refiner)
    card = two_stage_card(name, dcard, refiner, min_score=min_score, box_margin=box_margin,
                          refine_classes=refine_classes,
                          description=description)
    folder = register_model(None, card, overwrite=overwrite, root=root)
    return folder, card
