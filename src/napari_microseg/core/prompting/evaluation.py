"""Simulated-user evaluation of prompt backends (clicks-to-IoU curves, NoC).

The protocol is the usual one of interactive segmentation (RITM, SAM):

1. For every ground-truth object, a first prompt: in ``"point"`` mode a positive
   click at the object's interior point farthest from its border (the maximum of
   the distance transform, so it lies inside even a ring); in ``"box"`` mode the
   object's bounding box.
2. Then up to ``n_corrective`` corrective clicks (8 by default). Each goes to the
   interior point of the largest (by area) 8-connected error region of the
   current prediction: positive if the region is missed object, negative if it is
   spurious mask. The previous :attr:`Prediction.logits` are fed back in
   :attr:`Prompts.mask_logits`. When the prediction is exact there is nothing
   to correct and the IoU is carried forward.
3. IoU is recorded after every click; click 1 is the first prompt.

Per backend and dataset it reports the mean IoU after each click, NoC@85 and
NoC@90 (the mean number of clicks needed to reach IoU 0.85 / 0.90; an object
that never reaches it counts as the maximum, ``1 + n_corrective``, and is also
counted in ``failures``) and the number of objects.

For datasets with boxes but no masks, :func:`evaluate_boxes` prompts once per
true box (the box itself, or a click at its centre) and scores the IoU of the
predicted mask's bounding box with the true box; no corrective clicks.

Error regions and IoU are computed in the window spanned by the object and the
prediction, not over the whole image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from .base import PromptBackend, Prompts
from .eval_data import Sample, load_creme, load_dataset, load_fecral_boxes, to_unit_float

__all__ = [
    "Sample",
    "box_iou",
    "evaluate_boxes",
    "evaluate_clicks",
    "interior_point",
    "load_creme",
    "load_dataset",
    "load_fecral_boxes",
    "mask_bbox",
    "next_click",
    "noc",
    "plot_curves",
    "simulate_object",
]

_EIGHT = np.ones((3, 3), dtype=bool)
#: A backend, or a callable building one for a sample (the oracle needs its labels).
BackendLike = PromptBackend | Callable[[Sample], PromptBackend]


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its border (the edge of ``mask`` counts).

    Ties go to the first pixel in row-major order. Raises ``ValueError`` if empty.
    """
    if not mask.any():
        raise ValueError("empty mask has no interior point")
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return int(r), int(c)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(rmin, cmin, rmax, cmax)`` of ``mask``, pixel-inclusive; ``None`` if empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def box_iou(a, b) -> float:
    """IoU of two boxes ``(rmin, cmin, rmax, cmax)`` taken as pixel-inclusive (0 if ``None``)."""
    if a is None or b is None:
        return 0.0
    a, b = np.asarray(a, float), np.asarray(b, float)
    h = min(a[2], b[2]) - max(a[0], b[0]) + 1
    w = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(h, 0.0) * max(w, 0.0)
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return float(inter / (area - inter)) if area - inter > 0 else 0.0


def next_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[int, int], int] | None:
    """The simulated user's corrective click: ``((row, col), label)`` or ``None``.

    The click goes to the interior point of the largest 8-connected error region;
    ``label`` is 1 if that region is missed object (``gt & ~pred``), 0 if it is
    spurious (``pred & ~gt``). A tie in area goes to the missed region. ``None``
    when the prediction is exact.
    """
    best, best_area, best_label = None, 0, 1
    for label, err in ((1, gt & ~pred), (0, pred & ~gt)):
        lab, n = ndi.label(err, structure=_EIGHT)
        if n == 0:
            continue
        areas = np.bincount(lab.ravel())[1:]
        k = int(np.argmax(areas))
        if areas[k] > best_area:
            best, best_area, best_label = lab == k + 1, int(areas[k]), label
    if best is None:
        return None
    return interior_point(best), best_label


def noc(ious, threshold: float, max_clicks: int | None = None) -> int:
    """Clicks needed to reach ``threshold`` IoU; ``max_clicks`` (default ``len(ious)``) if never."""
    ious = np.asarray(ious, float)
    max_clicks = len(ious) if max_clicks is None else int(max_clicks)
    hit = np.flatnonzero(ious >= threshold)
    return int(hit[0] + 1) if len(hit) and hit[0] < max_clicks else max_clicks


def _window(shape, *slices_or_boxes) -> tuple[slice, slice]:
    """Smallest window covering the given ``(rmin, cmin, rmax, cmax)`` boxes (``None`` skipped)."""
    boxes = np.array([b for b in slices_or_boxes if b is not None])
    r0, c0 = boxes[:, :2].min(0)
    r1, c1 = boxes[:, 2:].max(0)
    return slice(max(0, r0), min(shape[0], r1 + 1)), slice(max(0, c0), min(shape[1], c1 + 1))


def simulate_object(
    backend: PromptBackend,
    gt: np.ndarray,
    mode: str = "point",
    n_corrective: int = 8,
    size_hint: float | None = None,
) -> list[float]:
    """IoU after each click for one object on the backend's current image.

    Parameters
    ----------
    backend : PromptBackend
        With :meth:`~PromptBackend.set_image` already called.
    gt : ndarray of bool
        Full-image mask of the object.
    mode : {"point", "box"}
        First prompt: a click at the interior point, or the bounding box.
    n_corrective : int
        Corrective clicks after the first prompt.
    size_hint : float, optional
        Typical committed object area given with every prompt
        (:attr:`~.base.Prompts.size_hint`).

    Returns
    -------
    list of float
        ``1 + n_corrective`` IoUs; entry ``i`` is the IoU after click ``i + 1``.
    """
    gbox = mask_bbox(gt)
    if gbox is None:
        raise ValueError("empty ground-truth object")
    if mode == "point":
        gwin = _window(gt.shape, gbox)
        r, c = interior_point(gt[gwin])
        prompts = Prompts([[r + gwin[0].start, c + gwin[1].start]], [1], size_hint=size_hint)
    elif mode == "box":
        prompts = Prompts(box=np.asarray(gbox, float), size_hint=size_hint)
    else:
        raise ValueError(f"unknown mode {mode!r}: use 'point' or 'box'")
    ious: list[float] = []
    while True:
        pred = backend.predict(prompts)
        mask = np.asarray(pred.mask, dtype=bool)
        win = _window(gt.shape, gbox, mask_bbox(mask))
        p, g = mask[win], gt[win]
        union = np.count_nonzero(p | g)
        ious.append(float(np.count_nonzero(p & g) / union) if union else 0.0)
        if len(ious) > n_corrective:
            return ious
        click = next_click(p, g)
        if click is None:
            return ious + [ious[-1]] * (n_corrective + 1 - len(ious))
        (r, c), label = click
        prompts = Prompts(
            np.vstack([prompts.points, [[r + win[0].start, c + win[1].start]]]),
            np.r_[prompts.labels, label],
            prompts.box,
            pred.logits,
            size_hint=size_hint,
        )


def _choose(ids: np.ndarray, max_objects: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_objects is not None and len(ids) > max_objects:
        ids = np.sort(rng.choice(ids, size=int(max_objects), replace=False))
    return ids


def _backend_for(backend: BackendLike, sample: Sample) -> PromptBackend:
    return backend if isinstance(backend, PromptBackend) else backend(sample)


def evaluate_clicks(
    backend: BackendLike,
    samples: list[Sample],
    mode: str = "point",
    n_corrective: int = 8,
    min_size: int = 0,
    max_objects: int | None = None,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    size_hint: Callable[[Sample], float | None] | None = None,
) -> dict:
    """Run the simulated user over every object of mask-style ``samples``.

    Parameters
    ----------
    backend : PromptBackend or callable
        The backend, or ``f(sample) -> backend`` (e.g. the oracle, which needs
        each image's labels).
    samples : list of Sample
        Targets are instance labels (see :func:`load_creme`).
    mode : {"point", "box"}
        First prompt.
    n_corrective : int
        Corrective clicks per object (0 scores the first prompt only).
    min_size : int
        Skip objects smaller than this many pixels.
    max_objects : int, optional
        At most this many objects per image, drawn at random (``seed``).
    seed : int
        Seed for the object draw.
    progress : callable, optional
        Called as ``progress(image_name, i, n)`` before each image.
    size_hint : callable, optional
        ``size_hint(sample)``: the committed objects' typical area on that
        image, given with every prompt (:mod:`.size_prior`).

    Returns
    -------
    dict
        JSON-ready: ``backend``, ``mode``, ``max_clicks``, ``n_images``,
        ``n_objects``, ``mean_iou`` (one value per click), ``noc85``, ``noc90``,
        ``failures85``, ``failures90``, ``per_image`` and ``objects`` (per-object
        IoU lists).
    """
    rng = np.random.default_rng(seed)
    objects, name = [], None
    for i, sample in enumerate(samples):
        if progress is not None:
            progress(sample.name, i, len(samples))
        labels = np.asarray(sample.target)
        found = ndi.find_objects(labels)
        areas = np.bincount(labels.ravel(), minlength=len(found) + 1)
        ids = np.array([k for k in range(1, len(found) + 1) if areas[k] and areas[k] >= min_size])
        ids = _choose(ids, max_objects, rng)
        if not len(ids):
            continue
        be = _backend_for(backend, sample)
        name = be.name
        be.set_image(to_unit_float(sample.image))
        hint = size_hint(sample) if size_hint is not None else None
        for k in ids:
            ious = simulate_object(be, labels == k, mode, n_corrective, hint)
            objects.append(
                {"image": sample.name, "label": int(k), "area": int(areas[k]), "ious": ious}
            )
    result = summarize(objects, n_corrective + 1)
    result.update(
        backend=name or getattr(backend, "name", "?"),
        mode=mode,
        n_images=len(samples),
        objects=objects,
    )
    return result


def summarize(objects: list[dict], max_clicks: int) -> dict:
    """Mean IoU per click, NoC@85/90 and failures over per-object records."""
    out: dict = {"max_clicks": int(max_clicks), "n_objects": len(objects)}
    if not objects:
        out.update(mean_iou=[], noc85=None, noc90=None, failures85=0, failures90=0, per_image={})
        return out
    curves = np.array([o["ious"] for o in objects], float)
    out["mean_iou"] = [round(float(v), 4) for v in curves.mean(0)]
    for t in (85, 90):
        nocs = np.array([noc(c, t / 100, max_clicks) for c in curves])
        out[f"noc{t}"] = round(float(nocs.mean()), 3)
        out[f"failures{t}"] = int(np.sum(curves.max(1) < t / 100))
    per_image: dict = {}
    for o, c in zip(objects, curves, strict=True):
        per_image.setdefault(o["image"], []).append(c)
    out["per_image"] = {
        k: {"n_objects": len(v), "mean_iou": [round(float(x), 4) for x in np.mean(v, 0)]}
        for k, v in per_image.items()
    }
    return out


def evaluate_boxes(
    backend: BackendLike,
    samples: list[Sample],
    prompt: str = "box",
    max_objects: int | None = None,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    size_hint: Callable[[Sample], float | None] | None = None,
) -> dict:
    """Box-only scoring: one prompt per true box, score the predicted mask's bbox.

    With ``prompt="box"`` the backend gets the true box itself, so any mask that
    spans the box scores high (filling the box scores 1): the number measures
    whether the backend keeps to the box, not how well it finds the object.
    ``prompt="point"`` (one click at the box centre, which need not lie on the
    object) is the more telling test.

    Parameters
    ----------
    backend : PromptBackend or callable
        As in :func:`evaluate_clicks`.
    samples : list of Sample
        Targets are ``(n, 4)`` boxes ``ymin xmin ymax xmax`` (see
        :func:`load_fecral_boxes`).
    prompt : {"box", "point"}
        The true box, or a positive click at its centre.
    max_objects, seed, progress, size_hint
        As in :func:`evaluate_clicks`.

    Returns
    -------
    dict
        JSON-ready: ``backend``, ``mode`` (``"box-bbox"`` or ``"point-bbox"``), ``n_images``,
        ``n_objects``, ``mean_box_iou``, ``box_iou_50`` and ``box_iou_75`` (the
        fractions of boxes recovered at IoU 0.5 / 0.75), ``empty`` (how many
        predictions were empty) and ``objects``.
    """
    if prompt not in ("box", "point"):
        raise ValueError(f"unknown prompt {prompt!r}: use 'box' or 'point'")
    rng = np.random.default_rng(seed)
    objects, name = [], None
    for i, sample in enumerate(samples):
        if progress is not None:
            progress(sample.name, i, len(samples))
        boxes = np.asarray(sample.target, float).reshape(-1, 4)
        idx = _choose(np.arange(len(boxes)), max_objects, rng)
        if not len(idx):
            continue
        be = _backend_for(backend, sample)
        name = be.name
        be.set_image(to_unit_float(sample.image))
        hint = size_hint(sample) if size_hint is not None else None
        for j in idx:
            if prompt == "box":
                prompts = Prompts(box=boxes[j], size_hint=hint)
            else:
                prompts = Prompts([(boxes[j, :2] + boxes[j, 2:]) / 2], [1], size_hint=hint)
            pred = be.predict(prompts)
            pbox = mask_bbox(np.asarray(pred.mask, bool))
            objects.append(
                {
                    "image": sample.name,
                    "index": int(j),
                    "box": [float(v) for v in boxes[j]],
                    "pred_box": None if pbox is None else list(pbox),
                    "box_iou": box_iou(pbox, boxes[j]),
                }
            )
    ious = np.array([o["box_iou"] for o in objects], float)
    return {
        "backend": name or getattr(backend, "name", "?"),
        "mode": f"{prompt}-bbox",
        "n_images": len(samples),
        "n_objects": len(objects),
        "mean_box_iou": round(float(ious.mean()), 4) if len(ious) else None,
        "box_iou_50": round(float((ious >= 0.5).mean()), 4) if len(ious) else None,
        "box_iou_75": round(float((ious >= 0.75).mean()), 4) if len(ious) else None,
        "empty": sum(o["pred_box"] is None for o in objects),
        "objects": objects,
    }


def plot_curves(results, path, title: str | None = None) -> None:
    """Write a PNG of mean IoU against clicks, one line per result.

    Parameters
    ----------
    results : dict or list of dict
        Outputs of :func:`evaluate_clicks` (box-bbox results are skipped).
    path : path-like
        Where to write the PNG.
    title : str, optional
        Figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(results, dict):
        results = [results]
    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)  # render with Agg without touching pyplot's global backend
    ax = fig.add_subplot()
    for r in results:
        curve = r.get("mean_iou") or []
        if not curve:
            continue
        label = f"{r.get('backend', '?')} ({r.get('mode', '')}, {r.get('dataset', '')})"
        label = label.replace(", )", ")")
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", label=label)
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
