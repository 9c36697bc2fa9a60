"""In-session adaptation of the offline promptable model to the user's own objects.

While a user labels, the objects they committed are exact examples of what
they want on the very images they work on. :func:`adapt_to_objects`
fine-tunes the promptable network on them for a fixed wall-time budget and
decides, on the user's own objects, whether the adapted network is better:

1. the committed objects are split in two halves (seeded, per image);
2. a first fine-tune learns from half A only, and both the starting model and
   the adapted one are scored on half B with the simulated user of
   :mod:`..prompting.evaluation` (first click plus two corrective clicks): B is
   held out from that fine-tune, so the comparison is honest;
3. only when the adapted model is *clearly* better on B (see
   :func:`clearly_better`: a paired comparison object by object, the gain at
   least ``margin`` and at least 1.645 standard errors, on at least
   :data:`MIN_CHECK_OBJECTS` held-out objects) is a second fine-tune run on all
   objects, and its weights are returned as accepted; otherwise the starting
   model stays.

Why the earlier 10-minute fine-tune did not help (0.642 against the shipped
0.654 on creme 10-12): it re-trained on the shipped model's own training images
(creme 1-9) with the from-scratch learning rate (2e-3), i.e. no new
information and a step size large enough to move the network away from its
synthetic-data optimum (forgetting). Adaptation here learns from *new* objects
of the images being labelled, with a small learning rate, a replay share of
synthetic micrographs so the network keeps what it knew, and the held-out
check above; ``microseg prompt-eval --adapt K`` measures it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..prompting.eval_data import Sample, divide_objects
from ..prompting.evaluation import evaluate_clicks

#: Defaults chosen on Ti frames 433 and 743 (never on the validation frames).
DEFAULT_LR = 3e-4
DEFAULT_REPLAY = 0.3


@dataclass
class AdaptationResult:
    """What :func:`adapt_to_objects` did.

    Attributes
    ----------
    accepted : bool
        Whether the adapted weights beat the starting model on held-out objects.
    weights : Path or None
        The adapted weights (only when accepted).
    before, after : float
        Mean of the 1- and 3-click IoU on the held-out half, starting model and
        half-adapted model (NaN when there were too few objects to check).
    reason : str
        One line for the user.
    seconds : float
        Wall time used.
    steps : int
        Gradient steps taken in all.
    details : dict
        Per-click curves of both models on the held-out half.
    """

    accepted: bool
    weights: Path | None
    before: float
    after: float
    reason: str
    seconds: float
    steps: int = 0
    details: dict = field(default_factory=dict)


def split_objects(samples, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Two samples lists holding complementary halves of every image's objects.

    Images with a single object give it to the first half.
    """
    first, second = divide_objects(samples, lambda n: (n + 1) // 2, seed)
    return first, [s for s in second if s.target.any()]


#: Fewest held-out objects on which a switch can be judged (fewer: the live model stays).
MIN_CHECK_OBJECTS = 8
#: One-sided z of the paired check (about 95 % that the adapted model is not worse).
CHECK_Z = 1.645


def _score(backend, samples) -> tuple[float, list[float], np.ndarray]:
    """``(mean, IoU curve, per-object scores)``: mean of the 1- and 3-click IoU of each object."""
    r = evaluate_clicks(backend, samples, "point", 2)
    curve = [float(v) for v in r["mean_iou"]]
    per = np.array([(o["ious"][0] + o["ious"][-1]) / 2 for o in r["objects"]], float)
    return (curve[0] + curve[-1]) / 2, curve, per


def clearly_better(new: np.ndarray, old: np.ndarray, margin: float = 0.005,
                   z: float = CHECK_Z) -> tuple[bool, str]:
    """Whether per-object scores ``new`` beat ``old`` (the same objects) beyond noise.

    The gain must be at least ``margin`` and at least ``z`` standard errors of
    the paired differences, on at least :data:`MIN_CHECK_OBJECTS` objects. A
    gain of 0.016 on 6 objects (creme 10-12, four committed loops per image)
    came with a model that was worse on the other loops; this check refuses it.

    Returns
    -------
    (bool, str)
        The decision and its one-line grounds (gain, standard error, objects).
    """
    d = np.asarray(new, float) - np.asarray(old, float)
    n = len(d)
    if n < MIN_CHECK_OBJECTS:
        return False, f"{n} held-out objects are too few to tell (at least {MIN_CHECK_OBJECTS})"
    gain = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(n))
    grounds = f"gain {gain:+.3f} ± {se:.3f} (s.e.) on {n} held-out objects"
    return bool(gain >= margin and gain >= z * se), grounds


#: First-click logit thresholds tried by :func:`calibrate_threshold`.
THRESHOLDS = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0)


def calibrate_threshold(backend, samples) -> tuple[float, float]:
    """``(threshold, IoU)``: the first-click logit threshold best on ``samples``' objects.

    Costs one network pass per object and threshold (no gradient): the cheap
    first stage of adaptation, which fixes a model that systematically draws
    objects too large or too small on the user's images.
    """
    keep = backend.first_threshold
    best = (keep, -1.0)
    try:
        for t in THRESHOLDS:
            backend.first_threshold = t
            iou = float(evaluate_clicks(backend, samples, "point", 0)["mean_iou"][0])
            if iou > best[1] + 1e-9:
                best = (t, iou)
    finally:
        backend.first_threshold = keep
    return best


def _finetune(samples, init, out_dir: Path, seconds: float, lr: float, replay, seed: int,
              should_stop) -> tuple[Path, int]:
    from .training import train_promptable

    steps = {"n": 0}

    def progress(ev):
        if ev.get("kind") == "step":
            steps["n"] = int(ev["step"])

    real = [(s.image, s.target) for s in samples]
    extra = list(replay or [])
    weights = None
    if extra:
        weights = ([(1 - DEFAULT_REPLAY) / len(real)] * len(real)
                   + [DEFAULT_REPLAY / len(extra)] * len(extra))
    path = train_promptable(
        real + extra, epochs=1000, steps_per_epoch=1000, batch_size=16, lr=lr,
        minutes=seconds / 60.0, out_dir=out_dir, init=init, weights=weights,
        invert=[False] * len(real) + [True] * len(extra), seed=seed, threads=None,
        log=None, progress=progress, should_stop=should_stop,
    )
    return path, steps["n"]


def adapt_to_objects(
    samples,
    *,
    init="default",
    seconds: float = 120.0,
    lr: float = DEFAULT_LR,
    replay: int = 12,
    margin: float = 0.005,
    min_objects: int | None = None,
    out_dir=None,
    seed: int = 0,
    should_stop=None,
) -> AdaptationResult:
    """Fine-tune on committed objects; keep the result only if it is better on held-out ones.

    Parameters
    ----------
    samples : list of Sample
        The user's images with instance labels of the committed objects only.
    init : "default" or path-like
        Starting weights (the live model).
    seconds : float
        Wall-time budget for both fine-tunes and the check together.
    lr : float
        Learning rate of the fine-tunes (AdamW with warm-up and cosine decay).
    replay : int
        Synthetic micrographs mixed in (30 % of the draws) against forgetting; 0 for none.
    margin : float
        The adapted model must beat the starting one by this much on held-out
        objects, and beyond noise (:func:`clearly_better`).
    min_objects : int
        Fewer committed objects than this: nothing is done (default twice
        :data:`MIN_CHECK_OBJECTS`: half of them must be enough to judge the
        result, see :func:`clearly_better`).
    out_dir : path-like, optional
        Where the weights go (a temporary folder by default).
    seed : int
        Seed of the split and of the example streams.
    should_stop : callable, optional
        Polled after every gradient step (a stop leaves the starting model live).

    Returns
    -------
    AdaptationResult
    """
    from ..training.config import TrainingStopped
    from .backend import PromptableBackend

    t0 = time.monotonic()
    n = sum(int(len(np.unique(np.asarray(s.target))) - 1) for s in samples)
    if min_objects is None:
        min_objects = 2 * MIN_CHECK_OBJECTS
    if n < min_objects:
        return AdaptationResult(False, None, float("nan"), float("nan"),
                                f"{n} committed objects: adaptation needs {min_objects} or more",
                                time.monotonic() - t0)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="microseg-adapt-"))
    syn = []
    if replay:
        from .data import synthetic_samples

        syn = [(im, lab) for im, lab, _ in synthetic_samples(replay, seed=seed + 7919, size=256)]
    half_a, half_b = split_objects(samples, seed)
    base = (PromptableBackend.load_default() if init == "default"
            else PromptableBackend.from_checkpoint(init))
    before, curve_before, per_before = _score(base, half_b)
    # Stage 1 (seconds): the first-click threshold, chosen on A, checked on B.
    t_half, _ = calibrate_threshold(base, half_a)
    keep_t = base.first_threshold
    base.first_threshold = t_half
    thr_score, curve_thr, per_thr = _score(base, half_b)
    base.first_threshold = keep_t
    details = {"held_out_curve_before": curve_before, "held_out_curve_threshold": curve_thr,
               "threshold_half": t_half, "n_objects": n}
    # Stage 2: a fine-tune on A, checked on B.
    try:
        share = max((seconds - (time.monotonic() - t0)) * 0.45, 5.0)
        w_half, steps_a = _finetune(half_a, init, out / "half", share, lr, syn, seed, should_stop)
        ft_score, curve_ft, per_ft = _score(PromptableBackend.from_checkpoint(w_half), half_b)
        details.update(held_out_curve_finetune=curve_ft, steps_half=steps_a)
        best, per_best = (ft_score, per_ft) if ft_score >= thr_score else (thr_score, per_thr)
        wins, grounds = clearly_better(per_best, per_before, margin)
        details.update(check=grounds)
        if not wins:
            return AdaptationResult(
                False, None, before, best,
                f"kept the live model: adapted {best:.3f} vs {before:.3f}, not clearly better "
                f"({grounds})", time.monotonic() - t0, steps_a, details)
        if ft_score >= thr_score:
            rest = max(seconds - (time.monotonic() - t0), 5.0)
            w_all, steps_all = _finetune(samples, init, out / "all", rest, lr, syn, seed + 1,
                                         should_stop)
            details.update(stage="fine-tune", steps_all=steps_all)
            return AdaptationResult(
                True, w_all, before, ft_score,
                f"adapted (fine-tune): {ft_score:.3f} vs {before:.3f} ({grounds})",
                time.monotonic() - t0, steps_a + steps_all, details)
    except TrainingStopped:
        return AdaptationResult(False, None, before, float("nan"), "stopped by the user",
                                time.monotonic() - t0)
    t_all, _ = calibrate_threshold(base, samples)
    w_thr = _with_threshold(base, t_all, out / "threshold")
    details.update(stage="threshold", threshold=t_all)
    return AdaptationResult(
        True, w_thr, before, thr_score,
        f"adapted (first-click threshold {t_all:+.1f}): {thr_score:.3f} vs {before:.3f} "
        f"({grounds})", time.monotonic() - t0, steps_a, details)


def _with_threshold(backend, threshold: float, folder: Path) -> Path:
    """The live weights saved again with a new first-click threshold in their metadata."""
    from .backend import save_weights

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "weights.pt"
    meta = {k: v for k, v in backend.meta.items()
            if k in ("threshold", "steps", "elapsed_s") and isinstance(v, (int, float))}
    save_weights(path, backend.model, backend.crop, **{**meta, "first_threshold": threshold})
    return path


def evaluate_adaptation(samples, k: int, *, seconds: float = 120.0, max_objects=None,
                        n_corrective: int = 2, seed: int = 0, size_hint: bool = True, **adapt_kw) -> dict:
    """The simulated user of ``microseg prompt-eval --adapt K``.

    On every image the user commits ``k`` true objects (seeded draw; they are
    taken as exact, as after enough corrective clicks); the model adapts to all
    committed objects within ``seconds``; then the *remaining* objects (at most
    ``max_objects`` per image) are scored with the starting model and with the
    live model after adaptation (the same one when adaptation was refused).

    With ``size_hint`` (the Label dock's default) the live model's first
    clicks are also sized by the committed objects, as the dock does
    (:mod:`~..prompting.size_prior`; from five objects on): ``hinted`` is the
    starting model with the hint alone, ``after`` the live model with it.

    Returns
    -------
    dict
        JSON-ready: ``before``, ``hinted`` and ``after`` evaluation results
        (see :func:`~..prompting.evaluation.evaluate_clicks`, per-object lists
        dropped), the adaptation's decision, reason, seconds and steps, and
        the size hint per image.
    """
    from ..prompting.size_prior import committed_hints
    from .backend import PromptableBackend

    committed, remaining = divide_objects(samples, lambda n: k, seed)
    res = adapt_to_objects(committed, seconds=seconds, seed=seed, **adapt_kw)
    init = adapt_kw.get("init", "default")
    base = (PromptableBackend.load_default() if init == "default"
            else PromptableBackend.from_checkpoint(init))
    live = PromptableBackend.from_checkpoint(res.weights) if res.accepted else base
    hints = committed_hints(committed) if size_hint else {}

    def run(backend, hinted: bool):
        hint = (lambda sample: hints.get(sample.name)) if hinted else None
        r = evaluate_clicks(backend, remaining, "point", n_corrective, 0, max_objects, seed, size_hint=hint)
        r.pop("objects", None)
        return r

    before = run(base, False)
    hinted = run(base, True) if size_hint else dict(before)
    after = run(live, size_hint) if res.accepted else dict(hinted)
    return {"k": k, "budget_s": seconds, "accepted": res.accepted, "reason": res.reason,
            "adapt_seconds": round(res.seconds, 1), "steps": res.steps,
            "held_out_check": {"before": res.before, "after": res.after, **res.details},
            "size_hint": bool(size_hint), "hints": hints,
            "before": before, "hinted": hinted, "after": after}
