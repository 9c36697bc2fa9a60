"""Training (and fine-tuning) of the promptable network.

:func:`train_promptable` takes ``(image, instance labels)`` pairs and trains
the U-Net the way it is used (RITM-style iterative training):

1. draw a batch of augmented object patches (:mod:`.data`) and a first prompt
   for each (a click at the interior point, or the bounding box);
2. for a random number of rounds (0 to 3, drawn per example), predict with the
   current model (no gradient), put a corrective click at the largest error region exactly as
   the evaluation's simulated user does
   (:func:`~..prompting.evaluation.next_click`) and feed the logits back;
3. one gradient step on BCE + soft Dice between the predicted window logits
   and the object's mask in that window.

Windows follow the inference rules (:func:`.crops.prompt_window`); the
doubling a click-only window gets when the mask runs into its edge is emulated
with the true mask. A checkpoint is written after every epoch (resumable) and
the final fp16 weights to ``out_dir/weights.pt``. ``progress`` receives a dict
per step and per epoch; when ``should_stop`` returns True after a step, the
checkpoint is written at that step and :class:`~..training.config.TrainingStopped`
is raised (``resume=True`` continues from that very step).

``checkpoint.pt`` is data only (tensors and plain containers, random states
included, see :mod:`~..training.rng_state`), read back with
``torch.load(weights_only=True)`` after its SHA-256 record
(``checkpoint.pt.sha256.json``) is checked: a checkpoint from a shared folder
can be refused, never executed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import MicrosegError
from ..prompting.base import Prompts
from ..prompting.evaluation import next_click
from ..safeload import plain, write_with_digest
from .backend import PromptableBackend, postprocess, save_weights
from .crops import CropConfig, CropLogits, encode, prev_logits_in, prompt_window, resize
from .crops import place as place_mask
from .crops import touches_edge as _touches
from .data import Augment, ObjectBank, first_prompt, make_patch
from .model import PromptUNet

#: ``format`` of a training checkpoint.
CHECKPOINT_FORMAT = "napari-microseg-promptable-checkpoint"
#: Probabilities of 0, 1, 2, 3 corrective rounds before the gradient step.
ROUNDS_P = (0.4, 0.3, 0.2, 0.1)


class Example:
    """One training object: patch, truth and the prompts so far."""

    __slots__ = ("image", "gt", "points", "labels", "box", "prev")

    def __init__(self, image, gt, points, labels, box):
        self.image, self.gt = image, gt
        self.points, self.labels, self.box, self.prev = points, labels, box, None


def _window(ex: Example, cfg: CropConfig, rng, grow_p: float = 0.85):
    prev_bbox = None
    if isinstance(ex.prev, CropLogits):
        m = ex.prev.logits > 0
        if m.any():
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            w = ex.prev.window
            prev_bbox = (w.r0 + rows[0], w.c0 + cols[0], w.r0 + rows[-1], w.c0 + cols[-1])
    win = prompt_window(ex.points, ex.box, prev_bbox, ex.gt.shape, cfg)
    if ex.box is None and rng.random() < grow_p:
        for _ in range(3):
            img_sl, loc_sl = win.overlap(ex.gt.shape)
            local = np.zeros((win.side, win.side), bool)
            local[loc_sl] = ex.gt[img_sl]
            if win.side >= cfg.max_side or not _touches(local, win, ex.gt.shape):
                break
            win = win.grown(2.0, ex.gt.shape, cfg.max_side)
    return win


def _batch(examples, cfg: CropConfig, rng):
    xs, wins = [], []
    for ex in examples:
        win = _window(ex, cfg, rng)
        prev = prev_logits_in(ex.prev, win, ex.gt.shape)
        xs.append(encode(ex.image, win, cfg, ex.points, ex.labels, ex.box, prev))
        wins.append(win)
    return torch.from_numpy(np.stack(xs)), wins


def _targets(examples, wins, n: int) -> torch.Tensor:
    ts = []
    for ex, win in zip(examples, wins, strict=True):
        img_sl, loc_sl = win.overlap(ex.gt.shape)
        local = np.zeros((win.side, win.side), np.float32)
        local[loc_sl] = ex.gt[img_sl]
        ts.append(resize(local, n))
    return torch.from_numpy(np.stack(ts))[:, None]


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


def _corrective_round(model, examples, cfg, rng) -> None:
    """Predict (no gradient) and add the simulated user's next click to each example."""
    x, wins = _batch(examples, cfg, rng)
    model.eval()
    with torch.no_grad():
        out = model(x)[:, 0].numpy()
    model.train()
    for ex, win, lg in zip(examples, wins, out, strict=True):
        logits = resize(lg, win.side)
        mask = postprocess(logits > 0, win, Prompts(ex.points, ex.labels, ex.box))
        pred = place_mask(mask, win, ex.gt.shape)
        click = next_click(pred, ex.gt)
        ex.prev = CropLogits(win, logits)
        if click is not None:
            (r, c), lab = click
            ex.points = np.vstack([ex.points, [[r, c]]])
            ex.labels = np.r_[ex.labels, lab]


def _lr(progress: float, base: float, warmup: float = 0.03) -> float:
    if progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    q = (progress - warmup) / (1 - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(q, 1.0))))


def train_promptable(
    samples,
    *,
    epochs: int,
    out_dir,
    init=None,
    steps_per_epoch: int = 150,
    batch_size: int = 32,
    lr: float = 2e-3,
    minutes: float | None = None,
    weights: list | None = None,
    invert: list | None = None,
    p_box: float = 0.3,
    widths=(16, 32, 64, 96, 128),
    crop: CropConfig | None = None,
    augment: Augment | None = None,
    val_samples=None,
    val_objects: int | None = None,
    resume: bool = False,
    seed: int = 0,
    threads: int | None = 1,
    log: Callable[[str], None] | None = print,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Train (or fine-tune) the promptable network; return the final weights path.

    Parameters
    ----------
    samples : list of (image, labels)
        Images (any dtype) with instance labels (0 background).
    epochs : int
        Number of epochs of ``steps_per_epoch`` batches (the LR schedule spans them).
    out_dir : path-like
        Receives ``checkpoint.pt`` (every epoch), ``log.jsonl`` and ``weights.pt``.
    init : path-like or "default", optional
        Start from these weights (a weights file, a checkpoint, or the shipped
        model); the architecture and crop rules then come from them.
    steps_per_epoch, batch_size, lr : int, int, float
        Optimisation (AdamW, warm-up then cosine decay to 2 % of ``lr``).
    minutes : float, optional
        Wall-time budget: the schedule runs on ``max(step / total, time / budget)``
        and training stops when either is used up.
    weights, invert : list, optional
        Per sample: drawing weight; whether inversion augmentation is allowed.
    p_box : float
        Fraction of examples prompted with a box instead of a click.
    widths : sequence of int
        U-Net widths for a new model.
    crop, augment : CropConfig, Augment, optional
        Window rules and augmentation (defaults if omitted).
    val_samples : list of Sample, optional
        Scored after every epoch with 1 + 2 simulated clicks (logged, not used to
        choose weights).
    val_objects : int, optional
        At most this many validation objects per image.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` if it exists.
    seed : int
        Seed of the example stream.
    threads : int or None
        ``torch.set_num_threads`` for the run (1 leaves the other cores free).
    log : callable, optional
        Receives one line per epoch.
    progress : callable, optional
        Receives ``{"kind": "step", "step", "total", "epoch", "loss", "lr",
        "elapsed_s"}`` after every step and ``{"kind": "epoch", **record}`` (the
        ``log.jsonl`` record, with ``val_iou`` when validating) after every epoch.
    should_stop : callable, optional
        Polled after every step; True saves the checkpoint at that step and
        raises :class:`~..training.config.TrainingStopped`.

    Returns
    -------
    Path
        ``out_dir/best_weights.pt`` (the epoch with the best mean IoU after 1 and 3
        validation clicks) when ``val_samples`` are given, else ``out_dir/weights.pt``
        (the last weights, always written).

    Raises
    ------
    TrainingStopped
        ``should_stop`` returned True (the checkpoint is saved; resume from it).
    """
    if threads:
        torch.set_num_threads(int(threads))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(seed)
    thresholds = {}  # the starting model's logit thresholds carry over to the result
    if init is not None:
        if init == "default":
            be = PromptableBackend.load_default()
        else:
            be = PromptableBackend.from_checkpoint(init)
        model, crop = be.model, be.crop
        thresholds = {k: be.meta[k] for k in ("threshold", "first_threshold") if k in be.meta}
    else:
        model, crop = PromptUNet(widths), crop or CropConfig()
    aug = augment or Augment()
    bank = ObjectBank(list(samples), weights=weights, invert=invert)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    state = {"step": 0, "elapsed": 0.0, "epoch": 0, "epoch_step": 0, "epoch_losses": [],
             "history": []}
    rng = np.random.default_rng(seed)
    if resume and ckpt_path.is_file():
        model, opt, crop, ck_state = _resume(ckpt_path, rng, lr)
        state = {"epoch_step": 0, "epoch_losses": [], **ck_state}
    total = epochs * steps_per_epoch
    budget = None if minutes is None else 60.0 * float(minutes)
    model.train()

    def done_fraction():
        p = state["step"] / total
        return max(p, state["elapsed"] / budget) if budget else p

    def save_checkpoint():
        from ..training.rng_state import rng_states

        data = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "rng_states": rng_states(rng),
                **plain({"model_config": model.config(), "crop": crop.to_dict(),
                         "state": state})}
        write_with_digest(ckpt_path, lambda tmp: torch.save(data, tmp))

    while state["epoch"] < epochs and done_fraction() < 1:
        t_epoch, losses = time.perf_counter(), state["epoch_losses"]
        for _ in range(steps_per_epoch - state["epoch_step"]):
            if done_fraction() >= 1:
                break
            t0 = time.perf_counter()
            examples = []
            for _ in range(batch_size):
                img, gt = make_patch(bank, rng, aug)
                examples.append(Example(img, gt, *first_prompt(gt, rng, aug, p_box)))
            rounds = rng.choice(len(ROUNDS_P), size=len(examples), p=ROUNDS_P)
            for j in range(int(rounds.max())):
                sub = [ex for ex, k in zip(examples, rounds, strict=True) if k > j]
                _corrective_round(model, sub, crop, rng)
            x, wins = _batch(examples, crop, rng)
            y = _targets(examples, wins, crop.n)
            for g in opt.param_groups:
                g["lr"] = _lr(done_fraction(), lr)
            loss = _loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            state["step"] += 1
            state["epoch_step"] += 1
            state["elapsed"] += time.perf_counter() - t0
            if progress is not None:
                progress({"kind": "step", "step": state["step"], "total": total,
                          "epoch": state["epoch"] + 1, "loss": losses[-1],
                          "lr": opt.param_groups[0]["lr"], "elapsed_s": state["elapsed"]})
            if should_stop is not None and should_stop():
                from ..training.config import TrainingStopped

                save_checkpoint()
                raise TrainingStopped(f"Stopped at step {state['step']}; resume from {out}.")
        state["epoch"] += 1
        state["epoch_step"], state["epoch_losses"] = 0, []
        rec = {"epoch": state["epoch"], "step": state["step"],
               "loss": float(np.mean(losses)) if losses else None,
               "lr": opt.param_groups[0]["lr"], "elapsed_s": round(state["elapsed"], 1),
               "epoch_s": round(time.perf_counter() - t_epoch, 1)}
        if val_samples:
            rec["val_iou"] = quick_val(model, crop, val_samples, meta=thresholds,
                                       max_objects=val_objects)
            model.train()
            # best epoch: mean IoU after 1 and after 3 clicks
            score = float(np.mean([rec["val_iou"][0], rec["val_iou"][min(2, len(rec["val_iou"]) - 1)]]))
            if score > state.get("best_score", -1.0):
                state["best_score"] = score
                rec["best"] = True
                write_with_digest(out / "best_weights.pt", lambda tmp: save_weights(
                    tmp, model, crop, steps=state["step"],
                    elapsed_s=round(state["elapsed"], 1), **thresholds))
        state["history"].append(rec)
        save_checkpoint()
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if log is not None:
            log(json.dumps(rec))
        if progress is not None:
            progress({"kind": "epoch", **rec})
    model.eval()
    final = out / "weights.pt"
    write_with_digest(final, lambda tmp: save_weights(
        tmp, model, crop, steps=state["step"], elapsed_s=round(state["elapsed"], 1),
        history=plain(state["history"]), **thresholds))
    best = out / "best_weights.pt"
    return best if val_samples and best.is_file() else final


def _resume(path: Path, rng, lr: float):
    """``(model, optimiser, crop, state)`` from the checkpoint at ``path`` (read as data).

    One-line :class:`~..errors.MicrosegError` for a file that changed since it
    was written, holds anything but tensors and plain data (never executed),
    is damaged, or is no promptable training checkpoint.
    """
    from ..safeload import load_torch_data
    from ..training.rng_state import restore_rng

    ck = load_torch_data(path, "napari-microseg checkpoint")
    keys = ("model", "model_config", "optimizer", "crop", "state")
    if not isinstance(ck, dict) or not all(k in ck for k in keys):
        raise MicrosegError(f"{path} is not a microseg-promptable training checkpoint.")
    try:
        model = PromptUNet(**ck["model_config"])
        model.load_state_dict(ck["model"])
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        opt.load_state_dict(ck["optimizer"])
        crop = CropConfig.from_dict(ck["crop"])
        restore_rng(ck, rng)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise MicrosegError(f"{path}: the checkpoint does not fit this model ({msg}).") from None
    return model, opt, crop, dict(ck["state"])


def quick_val(model, crop: CropConfig, samples, n_corrective: int = 2, meta=None,
              max_objects: int | None = None) -> list[float]:
    """Mean IoU after 1, 2, 3 simulated clicks on ``samples`` (a cheap monitor).

    ``meta`` holds the model's logit thresholds; ``max_objects`` caps the objects
    scored per image (drawn with a fixed seed, so epochs compare).
    """
    from ..prompting.evaluation import evaluate_clicks

    model.eval()
    res = evaluate_clicks(PromptableBackend(model, crop, meta), samples, "point", n_corrective,
                          max_objects=max_objects)
    return res["mean_iou"]
