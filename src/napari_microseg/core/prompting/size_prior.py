"""The committed objects' size as a hint for the next first click, and its measurement.

A first click has no extent: the offline model looks through a fixed 64 px window, too
large for small defects and too small for large loops. Once a user has committed a few
objects on an image, their median area is a good guess of the next one's
(:func:`size_hint`); :class:`~.session.PromptSession` hands it to the backend as
:attr:`~.base.Prompts.size_hint`, and the offline model sizes the first window by it
(:func:`~..promptable.crops.hinted_side`). :func:`evaluate_size_prior` is the simulated
user of ``microseg prompt-eval --size-prior K``: K objects committed per image, the rest
clicked once with and without the hint.
"""

from __future__ import annotations

import numpy as np

from .eval_data import _is_boxes, divide_objects

#: Committed objects of the current kind needed before their size hints a first click.
MIN_HINT_OBJECTS = 5
#: Objects under this many pixels are also scored apart ("small objects", issue 16).
SMALL_AREA = 100


def size_hint(areas) -> float | None:
    """Median of ``areas`` (pixels), or None with fewer than :data:`MIN_HINT_OBJECTS`."""
    areas = [float(a) for a in areas if a > 0]
    if len(areas) < MIN_HINT_OBJECTS:
        return None
    return float(np.median(areas))


def object_areas(target) -> np.ndarray:
    """Pixel areas of a sample's objects: instance label counts, or the ellipse in each box."""
    target = np.asarray(target)
    if _is_boxes(target):
        h = target[:, 2] - target[:, 0] + 1
        w = target[:, 3] - target[:, 1] + 1
        return np.pi / 4 * h * w
    from ..correct import id_areas  # not at import: the session imports this module

    return id_areas(target)[1].astype(float)


def committed_hints(committed) -> dict:
    """``{image name: size hint}`` of the committed objects of each sample (:func:`size_hint`)."""
    return {c.name: size_hint(object_areas(c.target)) for c in committed}


def evaluate_size_prior(backend, samples, k: int, *, mode: str = "point", n_corrective: int = 0,
                        max_objects=None, seed: int = 0) -> dict:
    """Score the objects left after ``k`` per image are committed, without and with the hint.

    Parameters
    ----------
    backend : PromptBackend
    samples : list of Sample
        Instance labels (scored by mask IoU after each click) or boxes
        (``mode`` ``"point"``: a click at each box centre, scored by box IoU).
    k : int
        Objects committed per image (seeded draw); their median area is the
        hint (:func:`size_hint`), so ``k`` below :data:`MIN_HINT_OBJECTS`
        gives no hint.
    mode, n_corrective, max_objects, seed
        As in :func:`~.evaluation.evaluate_clicks` (boxes: ``mode`` is the
        prompt of :func:`~.evaluation.evaluate_boxes`).

    Returns
    -------
    dict
        JSON-ready: ``without`` and ``with`` results (per-object lists
        dropped; masks: ``small_objects``, the first click on objects under
        :data:`SMALL_AREA` px), the hint per image, ``k``.
    """
    from .evaluation import evaluate_boxes, evaluate_clicks

    committed, remaining = divide_objects(samples, lambda n: min(k, n), seed)
    hints = committed_hints(committed)
    boxes = bool(samples) and _is_boxes(np.asarray(samples[0].target))

    def run(hint):
        if boxes:
            r = evaluate_boxes(backend, remaining, mode, max_objects, seed, size_hint=hint)
        else:
            r = evaluate_clicks(backend, remaining, mode, n_corrective, 0, max_objects, seed,
                                size_hint=hint)
        objects = r.pop("objects", [])
        if not boxes:
            small = [o["ious"][0] for o in objects if o["area"] < SMALL_AREA]
            r["small_objects"] = {"n": len(small),
                                  "mean_iou_click1": round(float(np.mean(small)), 4) if small else None}
        return r

    return {"k": int(k), "hints": hints, "without": run(None),
            "with": run(lambda sample: hints.get(sample.name))}
