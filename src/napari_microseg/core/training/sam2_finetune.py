"""Fine-tuning SAM2 on labelled micrographs (``architecture="sam2"``).

:func:`finetune` is what :func:`~.engine.train` runs for this architecture. It
starts from a SAM2 / SAM2.1 checkpoint (found as the Label dock finds it, see
:mod:`napari_microseg.core.weights`) and trains

* the mask decoder and the prompt encoder in full, and
* the Hiera image encoder through LoRA adapters (peft) on the attention
  ``qkv`` and ``proj`` layers (:mod:`~napari_microseg.core.prompting.sam2_lora`);
  everything else stays frozen.

Each step draws ``batch_size`` augmented patches (the engine's
:class:`~.data.PatchSampler`, oversampling objects), embeds them with the
current encoder (recomputed every step, since LoRA changes it) and prompts
up to ``objects_per_image`` true instances of each patch: one positive click
inside the object (SAM2's three candidate masks, the best one is trained), a
click plus one or two extra clicks (inside: positive, outside: negative), or the
object's (jittered) box. Loss: 20 x focal + Dice on the low-resolution mask
logits, plus the MSE between the predicted and the true IoU. AdamW over the
trainable weights, the engine's warm-up/cosine schedule
(:func:`~.run_plumbing.lr_factor`), gradient clipping, AMP on CUDA. A handful of
images is enough to start (few-shot); validation is the simulated user's
mean IoU after 1 and 3 clicks (``iou_1click``, ``iou_3clicks``).

Run folder: ``last.pt`` (trainable weights, optimiser, random states, step;
every epoch and at a stop), ``best_delta.pt`` (best validation epoch),
``history.json``, ``config.json``, ``card.json``. The registered model is a
folder with ``delta.pt`` (LoRA + decoder + prompt encoder, see
:mod:`~napari_microseg.core.prompting.sam2_lora`) and a card naming the base
model and its weights' SHA-256; ``make_backend(name)`` builds base + delta.

``config.params`` keys
----------------------
base : str
    SAM2 model id to start from (default ``"sam2.1-tiny"``).
checkpoint : str
    The base checkpoint file (default: found like the Label dock finds it).
lora_rank : int
    LoRA rank (default 4; 4 to 8 is usual). ``lora_alpha`` defaults to 2 x rank.
image_size : int
    Encoder input side (default the model's 1024). Smaller (e.g. 512) trains
    several times faster on a CPU; the fine-tuned model then runs at that size.
objects_per_image : int
    Instances prompted per patch and step (default 8).
p_box, p_extra_points : float
    Share of patches prompted with boxes (0.3), and of click patches given
    one or two extra clicks (0.3).
val_objects : int
    At most this many objects scored per validation image (default 20).
allow_random_weights : bool
    TEST ONLY: start from seeded random weights when no checkpoint exists. The
    result is refused by the Label dock and ``make_backend`` unless they are
    given the same flag.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..atomic import write_json_atomic
from ..device import select_device
from ..prompting.evaluation import interior_point, mask_bbox
from ..safeload import plain
from .config import TrainConfig, TrainEvent, TrainingDataError, TrainResult
from .data import PatchSampler
from .prompt_models import click_metrics, samples, setup_run, step_event, write_config
from .prompt_models import register as register_prompt
from .rng_state import restore_rng, rng_states
from .run_plumbing import CHECKPOINT_FORMAT, lr_factor, run_progress
from .run_plumbing import load_checkpoint as _load_checkpoint
from .run_plumbing import save_checkpoint as _save_checkpoint

CHECKPOINT, BEST = "last.pt", "best_delta.pt"
DEFAULT_PARAMS = {
    "base": "sam2.1-tiny",
    "checkpoint": None,
    "lora_rank": 4,
    "lora_alpha": None,
    "image_size": None,
    "objects_per_image": 8,
    "p_box": 0.3,
    "p_extra_points": 0.3,
    "val_objects": 20,
    "min_area": 10,
    "allow_random_weights": False,
}
#: SAM2's input normalisation (ImageNet mean and std).
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FOCAL_WEIGHT, DICE_WEIGHT, IOU_WEIGHT = 20.0, 1.0, 1.0


# -- prompts and losses -----------------------------------------------------------------------


def sample_prompts(lab: np.ndarray, rng: np.random.Generator, params: dict):
    """Prompts for up to ``objects_per_image`` instances of a label patch.

    Returns ``(coords (n, k, 2) as x, y; labels (n, k); masks (n, H, W) bool;
    multimask)`` or ``None`` when the patch holds no object; SAM2 point labels:
    1 positive, 0 negative, 2/3 box corners.
    """
    ids, counts = np.unique(lab, return_counts=True)
    ids = ids[(ids > 0) & (counts >= int(params["min_area"]))]
    if not len(ids):
        return None
    ids = rng.permutation(ids)[: int(params["objects_per_image"])]
    h, w = lab.shape
    if rng.random() < float(params["p_box"]):
        kind, extra = "box", 0
    elif rng.random() < float(params["p_extra_points"]):
        kind, extra = "points", int(rng.integers(1, 3))
    else:
        kind, extra = "point", 0
    coords, labels, masks = [], [], []
    for k in ids:
        m = lab == k
        masks.append(m)
        if kind == "box":
            r0, c0, r1, c1 = (float(v) for v in mask_bbox(m))
            size = np.array([c1 - c0 + 1, r1 - r0 + 1] * 2)
            jit = rng.uniform(-0.05, 0.05, 4) * size
            x0, y0, x1, y1 = np.clip(np.array([c0, r0, c1, r1]) + jit, 0, [w - 1, h - 1] * 2)
            coords.append([[x0, y0], [max(x0, x1), max(y0, y1)]])
            labels.append([2, 3])
            continue
        pts, labs = [_inside(m, rng)], [1]
        for _ in range(extra):
            if rng.random() < 0.5:
                pts.append(_inside(m, rng, centre=False))
                labs.append(1)
            else:
                pts.append(_outside(m, rng))
                labs.append(0)
        coords.append([(c, r) for r, c in pts])
        labels.append(labs)
    return (
        np.asarray(coords, np.float32),
        np.asarray(labels, np.int64),
        np.stack(masks),
        kind == "point",
    )


def _inside(m: np.ndarray, rng, centre: bool = True) -> tuple[float, float]:
    """A click in ``m``: the farthest interior point (half the time) or a random pixel."""
    if centre and rng.random() < 0.5:
        return tuple(float(v) for v in interior_point(m))
    rr, cc = np.nonzero(m)
    i = int(rng.integers(len(rr)))
    return float(rr[i]), float(cc[i])


def _outside(m: np.ndarray, rng) -> tuple[float, float]:
    """A negative click near ``m`` (in its box grown by half its size), else anywhere outside."""
    r0, c0, r1, c1 = mask_bbox(m)
    pr, pc = max(2, (r1 - r0) // 2), max(2, (c1 - c0) // 2)
    sl = (slice(max(r0 - pr, 0), r1 + pr + 1), slice(max(c0 - pc, 0), c1 + pc + 1))
    rr, cc = np.nonzero(~m[sl])
    if not len(rr):
        rr, cc = np.nonzero(~m)
        sl = (slice(0, None), slice(0, None))
    i = int(rng.integers(len(rr)))
    return float(rr[i] + sl[0].start), float(cc[i] + sl[1].start)


def mask_losses(logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor):
    """``(focal + dice per object and output (n, m), IoU MSE per object (n,))``.

    ``logits`` (n, m, h, w), ``target`` (n, 1, h, w) in [0, 1], ``iou_pred`` (n, m).
    """
    from torchvision.ops import sigmoid_focal_loss

    logits = logits.float()
    t = target.expand_as(logits)
    focal = sigmoid_focal_loss(logits, t, alpha=0.25, gamma=2.0, reduction="none").mean((2, 3))
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * t).sum((2, 3)) + 1) / (p.sum((2, 3)) + t.sum((2, 3)) + 1)
    with torch.no_grad():
        pred, truth = logits > 0, t > 0.5
        inter = (pred & truth).sum((2, 3)).float()
        union = (pred | truth).sum((2, 3)).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    mse = ((iou_pred.float() - iou) ** 2).mean(1)
    return FOCAL_WEIGHT * focal + DICE_WEIGHT * dice, mse


def preprocess(patches: np.ndarray, side: int, device) -> torch.Tensor:
    """``(B, P, P)`` grey patches in [0, 1] to SAM2's ``(B, 3, side, side)`` input."""
    x = torch.from_numpy(np.clip(patches, 0, 1).astype(np.float32))[:, None].to(device)
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


def image_features(model, x: torch.Tensor):
    """``(image embedding, [high-res features])`` of a batch, with gradients (LoRA)."""
    out = model.forward_image(x)
    _, feats, _, sizes = model._prepare_backbone_features(out)
    if model.directly_add_no_mem_embed:
        feats[-1] = feats[-1] + model.no_mem_embed
    b = x.shape[0]
    maps = [f.permute(1, 2, 0).reshape(b, -1, *s) for f, s in zip(feats, sizes, strict=True)]
    return maps[-1], maps[:-1]


def decode(model, embed, high_res, coords, labels, multimask: bool):
    """Low-resolution mask logits ``(n, m, h, w)`` and predicted IoU ``(n, m)`` for one image."""
    pe = model.sam_prompt_encoder
    sparse, dense = pe(points=(coords, labels), boxes=None, masks=None)
    low, iou, _, _ = model.sam_mask_decoder(
        image_embeddings=embed,
        image_pe=pe.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=True,
        high_res_features=high_res,
    )
    return low, iou


# -- the run ----------------------------------------------------------------------------------


class _Sam2Run:
    """State of one SAM2 fine-tuning run (see :func:`finetune`)."""

    def __init__(self, config: TrainConfig, params: dict, images, val_images, run_dir, progress):
        self.cfg, self.params = config, params
        self.images, self.val_images = images, val_images
        self.run_dir, self.progress = run_dir, progress

    def log(self, text: str) -> None:
        self.progress(TrainEvent("message", text=text))

    def setup(self) -> None:
        from ..errors import MicrosegError
        from ..prompting.sam2_backend import Sam2Backend
        from ..prompting.sam2_lora import LORA_TARGETS, add_lora

        cfg, p = self.cfg, self.params
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        torch.manual_seed(cfg.seed)
        self.device = select_device(cfg.device)
        try:
            base = Sam2Backend(
                p["base"],
                p["checkpoint"],
                device=str(self.device),
                allow_random_weights=bool(p["allow_random_weights"]),
                seed=cfg.seed,
                image_size=p["image_size"],
            )
        except ImportError as e:
            raise TrainingDataError(f"SAM2 fine-tuning needs the sam2 package ({e}).") from None
        except MicrosegError as e:  # weights missing or unreadable
            raise TrainingDataError(str(e)) from None
        if str(base.weights).startswith("random"):
            self.log("SAM2 base has RANDOM weights (test flag): the result is for tests only.")
        self.model, self.base_id, self.base_weights = base.model, base.name, base.weights
        self.side = int(self.model.image_size)
        alpha = p["lora_alpha"] or 2 * int(p["lora_rank"])
        n = add_lora(self.model, int(p["lora_rank"]), alpha)
        self.lora = {"rank": int(p["lora_rank"]), "alpha": float(alpha), "targets": LORA_TARGETS}
        self.log(f"LoRA rank {p['lora_rank']} on {n} attention layers of the image encoder.")
        self.model.eval()  # no dropout / batch statistics; gradients still flow
        self.trainable = [q for q in self.model.parameters() if q.requires_grad]
        self.opt = torch.optim.AdamW(self.trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.amp_dtype = (
            torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp and self.amp_dtype == torch.float16
        )
        self.sampler = PatchSampler(
            self.images, cfg.patch_size, cfg.augment, max(cfg.oversample, 0.5), target="instance"
        )
        self.rng = np.random.default_rng(cfg.seed)
        self.step, self.elapsed, self.history, self.best = 0, 0.0, [], None

    # -- checkpoints --------------------------------------------------------------------------

    def _state(self) -> dict:
        from ..prompting.sam2_lora import delta_state

        return {
            "format": CHECKPOINT_FORMAT,
            "delta": delta_state(self.model),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng_states": rng_states(self.rng),
            **plain(
                {
                    "config": self.cfg.to_dict(),
                    "step": self.step,
                    "elapsed": self.elapsed,
                    "history": self.history,
                    "best": self.best,
                }
            ),
        }

    def checkpoint(self) -> None:
        """``last.pt`` (data only, read with ``weights_only=True``) and its SHA-256 record."""
        _save_checkpoint(self.run_dir / CHECKPOINT, self._state())
        write_json_atomic(self.run_dir / "history.json", self.history)

    def restore(self) -> None:
        data = _load_checkpoint(self.run_dir / CHECKPOINT)
        result = self.model.load_state_dict(data["delta"], strict=False)
        if result.unexpected_keys:
            raise TrainingDataError(
                f"{self.run_dir / CHECKPOINT} was written for another SAM2 setup "
                f"(e.g. {result.unexpected_keys[0]}); start a new run."
            )
        self.opt.load_state_dict(data["optimizer"])
        self.scaler.load_state_dict(data["scaler"])
        restore_rng(data, self.rng)
        self.step, self.elapsed = data["step"], data["elapsed"]
        self.history, self.best = data["history"], data["best"]
        self.log(f"Resumed {self.run_dir.name} at step {self.step} of {self.cfg.total_steps}.")

    def save_delta(self, path: Path) -> str:
        from ..prompting.sam2_lora import save_delta
        from ..weights import get_spec

        base = {
            "model": self.base_id,
            "config": get_spec(self.base_id).config,
            "weights": self.base_weights,
        }
        return save_delta(
            path,
            self.model,
            base=base,
            lora=self.lora,
            image_size=self.side,
            meta={"step": self.step},
        )

    # -- steps ----------------------------------------------------------------------------------

    def _batch(self):
        """Patches and their prompts (patches without objects are redrawn)."""
        patches, prompts = [], []
        for _ in range(self.cfg.batch_size):
            for _ in range(20):
                _, img, lab = self.sampler.sample(self.rng)
                pr = sample_prompts(np.asarray(lab), self.rng, self.params)
                if pr is not None:
                    patches.append(img)
                    prompts.append(pr)
                    break
        if not patches:
            raise TrainingDataError("No training patch holds an object; label more objects.")
        return np.stack(patches), prompts

    def _loss(self, patches, prompts) -> torch.Tensor:
        x = preprocess(patches, self.side, self.device)
        scale = self.side / patches.shape[-1]
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            embed, high_res = image_features(self.model, x)
            losses = []
            for b, (coords, labels, masks, multi) in enumerate(prompts):
                pts = torch.from_numpy(coords * scale).to(self.device)
                lab = torch.from_numpy(labels).int().to(self.device)
                low, iou = decode(
                    self.model, embed[b : b + 1], [h[b : b + 1] for h in high_res], pts, lab, multi
                )
                t = torch.from_numpy(masks.astype(np.float32))[:, None].to(self.device)
                t = F.interpolate(t, size=low.shape[-2:], mode="bilinear", antialias=True)
                mask_loss, iou_loss = mask_losses(low, t, iou)
                losses.append(mask_loss.min(1).values + IOU_WEIGHT * iou_loss)
            return torch.cat(losses).mean()

    def train_step(self) -> float:
        patches, prompts = self._batch()
        progress = run_progress(self.step, self.elapsed, self.cfg)
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * lr_factor(progress, self.cfg.warmup_fraction)
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss(patches, prompts)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.detach())

    # -- epochs ---------------------------------------------------------------------------------

    def validate(self) -> dict:
        if not self.val_images:
            return {}
        from ..prompting.evaluation import evaluate_clicks
        from ..prompting.sam2_backend import Sam2Backend

        be = Sam2Backend.from_model(self.model, self.base_id, "training", self.device)
        res = evaluate_clicks(
            be,
            samples(self.val_images),
            "point",
            2,
            max_objects=int(self.params["val_objects"]),
            seed=self.cfg.seed,
        )
        return click_metrics(res["mean_iou"]) if res.get("n_objects") else {}

    def end_epoch(self, epoch: int, losses: list) -> None:
        metrics = self.validate()
        score = [metrics.get("iou_1click", 0.0), metrics.get("iou_3clicks", 0.0)]
        if not metrics:
            score = [float(self.step), 0.0]  # no validation: the latest is the best
        better = self.best is None or score > self.best
        if better:
            self.best = score
            self.save_delta(self.run_dir / BEST)
        rec = {
            "epoch": epoch,
            "step": self.step,
            "loss": float(np.mean(losses)) if losses else None,
            "lr": self.opt.param_groups[0]["lr"],
            "elapsed_s": round(self.elapsed, 2),
            "best": better,
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        self.history.append(rec)
        self.checkpoint()
        self.progress(
            TrainEvent(
                "epoch",
                step=self.step,
                total_steps=self.cfg.total_steps,
                epoch=epoch,
                loss=rec["loss"],
                lr=rec["lr"],
                batch_size=self.cfg.batch_size,
                elapsed_s=self.elapsed,
                metrics=metrics,
            )
        )

    def go(self, should_stop) -> bool:
        """Train to the end (False) or until ``should_stop`` (True)."""
        cfg = self.cfg
        losses = []
        while self.step < cfg.total_steps:
            if cfg.max_minutes and self.elapsed >= cfg.max_minutes * 60:
                break
            t0 = time.perf_counter()
            loss = self.train_step()
            self.step += 1
            self.elapsed += time.perf_counter() - t0
            losses.append(loss)
            lr = self.opt.param_groups[0]["lr"]
            self.progress(step_event(cfg, self.step, cfg.total_steps, loss, lr, self.elapsed))
            if self.step % cfg.steps_per_epoch == 0:
                self.end_epoch(self.step // cfg.steps_per_epoch, losses)
                losses = []
            if should_stop():
                self.checkpoint()
                self.log(f"Stopped at step {self.step}; resume continues from {self.run_dir}.")
                return True
        if self.step % cfg.steps_per_epoch or not self.history:
            self.end_epoch(self.step // cfg.steps_per_epoch + 1, losses)
        return False


def finetune(
    config: TrainConfig,
    images,
    val_images=None,
    *,
    run_dir=None,
    resume: bool = False,
    progress=None,
    should_stop=None,
    register: bool = True,
    overwrite: bool = False,
    source: dict | None = None,
) -> TrainResult:
    """Fine-tune SAM2 (LoRA encoder, decoder, prompt encoder); register it when the run ends.

    Parameters and result as :func:`~.engine.train` (the module docstring lists
    the ``config.params`` keys). ``result.best_weights`` is the best delta file;
    the registered model is built by ``make_backend(result.model_name)``.
    """
    progress = progress or (lambda e: None)
    should_stop = should_stop or (lambda: False)
    params = {**DEFAULT_PARAMS, **(config.params or {})}
    run_dir, images, val_images = setup_run(
        config, images, val_images, run_dir, resume, CHECKPOINT, patch_size=config.patch_size
    )
    run = _Sam2Run(config, params, images, val_images, run_dir, progress)
    run.setup()
    if resume:
        run.restore()
    else:
        write_config(run_dir, config, source, images, val_images)
    stopped = run.go(should_stop)
    best = run_dir / BEST
    result = TrainResult(
        run_dir,
        best if best.is_file() else None,
        run_dir / CHECKPOINT,
        run.history,
        stopped=stopped,
    )
    if not stopped and register:
        result.card = _register(run, best, source, overwrite)
        result.model_name = result.card["name"]
        run.log(f"Registered fine-tuned SAM2 {result.model_name!r}.")
    progress(
        TrainEvent(
            "done",
            step=run.step,
            total_steps=config.total_steps,
            elapsed_s=run.elapsed,
            text="stopped" if stopped else "finished",
        )
    )
    return result


def _register(run: _Sam2Run, best: Path, source, overwrite: bool) -> dict:
    from ..prompting.sam2_lora import DELTA_FILE, read_delta

    delta = read_delta(best)
    fields = {
        "backend": "sam2",
        "model_id": f"{run.cfg.name}-{delta['sha256'][:12]}",
        "description": f"{run.base_id} fine-tuned with napari-microseg (LoRA encoder, decoder)",
        "files": {"delta": DELTA_FILE},
        "delta_sha256": delta["sha256"],
        "base": {
            **delta["base"],
            "weights_sha256": delta["base"]["weights"],
            "image_size": delta["image_size"],
        },
        "lora": delta["lora"],
    }
    return register_prompt(
        run.cfg,
        fields,
        {DELTA_FILE: best},
        run.history,
        source,
        run.images,
        run.val_images,
        run.run_dir,
        overwrite,
    )
