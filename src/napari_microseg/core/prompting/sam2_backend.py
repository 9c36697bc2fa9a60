"""SAM2 / SAM2.1 as a :class:`~.base.PromptBackend` (clicks and boxes to one mask).

The heavy ``sam2`` and ``torch`` imports happen when a backend is built, not
when this module is imported.

Test-only switch: ``Sam2Backend(model_id, allow_random_weights=True)`` builds
the network with seeded random weights when no checkpoint is found (its
signature says ``"weights": "random(seed=0)"`` so such embeddings are never
mixed with real ones). Without the switch, missing weights raise
:class:`~napari_microseg.core.weights.WeightsMissingError` naming the file to
place and where. Random weights give meaningless masks: use them only for
plumbing tests and timing.

Fine-tuned SAM2: ``Sam2Backend(model_id, finetuned=folder_or_delta)`` builds
the base and applies a fine-tuning delta (:mod:`.sam2_lora`); the delta's SHA-256
joins the signature, so its embeddings never mix with the base's.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..device import autocast, select_device
from ..errors import MicrosegError
from ..weights import (
    WeightsMissingError,
    find_weights,
    get_spec,
    missing_weights_message,
    weights_checksum,
)
from .base import Prediction, PromptBackend, Prompts

log = logging.getLogger(__name__)

#: Keys of the arrays returned by :meth:`Sam2Backend.get_embedding`.
EMBEDDING_KEYS = ("image_embed", "high_res_feat_0", "high_res_feat_1", "orig_hw")


class Sam2Backend(PromptBackend):
    """Promptable segmentation with SAM2 / SAM2.1 (``SAM2ImagePredictor``).

    Parameters
    ----------
    model_id : str
        ``"sam2.1-tiny"``, ``"sam2.1-small"``, ``"sam2.1-base_plus"``,
        ``"sam2.1-large"`` or the same with ``"sam2-"`` (see
        :data:`napari_microseg.core.weights.MODELS`).
    checkpoint : path-like, optional
        A checkpoint file the user chose; default: found by
        :func:`~napari_microseg.core.weights.find_weights`.
    device : str
        ``"auto"`` (CUDA with bfloat16 autocast, then MPS, else CPU), or an
        explicit device.
    allow_random_weights : bool
        Test-only: build with seeded random weights when no checkpoint exists.
    seed : int
        Seed of the random weights.
    finetuned : path-like, optional
        A fine-tuning delta (``delta.pt``, or a registered model folder holding
        one) to apply on the base; it must name this base and its weights.
    image_size : int, optional
        Encoder input side (default the model's 1024; a delta brings its own).

    Raises
    ------
    WeightsMissingError
        No checkpoint and ``allow_random_weights`` is False.
    MicrosegError
        The checkpoint cannot be loaded (damaged, or for another model).
    """

    needs_embedding = True

    def __init__(
        self,
        model_id: str = "sam2.1-tiny",
        checkpoint=None,
        device: str = "auto",
        *,
        allow_random_weights: bool = False,
        seed: int = 0,
        finetuned=None,
        image_size: int | None = None,
    ):
        self.spec = get_spec(model_id)
        self.name = self.spec.model_id
        delta = None
        if finetuned is not None:
            from .sam2_lora import check_base, read_delta

            delta = read_delta(finetuned)
            image_size = delta["image_size"]
            if not allow_random_weights:  # a random base is refused before any file lookup
                check_base(delta, self.name, (delta.get("base") or {}).get("weights"), False)
        path = find_weights(self.name, checkpoint)
        if path is None and not allow_random_weights:
            raise WeightsMissingError(missing_weights_message(self.name))
        self.checkpoint = path
        self.weights = weights_checksum(path) if path is not None else f"random(seed={seed})"
        self.finetuned = None
        if delta is not None:
            check_base(delta, self.name, self.weights, allow_random_weights)
            self.finetuned = delta["sha256"]
        self.device = select_device(device)
        model = self._build(path, seed, image_size)
        if delta is not None:
            from .sam2_lora import apply_delta

            apply_delta(model, delta)
            model.to(self.device)
        self._attach(model)

    @classmethod
    def from_model(cls, model, model_id: str, weights: str, device=None) -> Sam2Backend:
        """A backend around an already built (e.g. training) SAM2 ``model``."""
        self = cls.__new__(cls)
        self.spec = get_spec(model_id)
        self.name = self.spec.model_id
        self.checkpoint, self.weights, self.finetuned = None, weights, None
        self.device = device or next(model.parameters()).device
        self._attach(model)
        return self

    def _attach(self, model) -> None:
        self.model = model
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        with warnings.catch_warnings():  # sam2 1.1 scripts its transforms with torch.jit
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.script.*", category=FutureWarning
            )
            self.predictor = SAM2ImagePredictor(self.model)
        side = int(self.model.image_size)
        self.predictor._bb_feat_sizes = [(side // 4,) * 2, (side // 8,) * 2, (side // 16,) * 2]
        #: Number of image-encoder passes so far (cache tests count these).
        self.n_encoder_calls = 0

    def _build(self, path, seed: int, image_size: int | None = None):
        import torch
        from sam2.build_sam import build_sam2

        extra = [f"++model.image_size={int(image_size)}"] if image_size else []
        if path is None:
            log.warning("SAM2 %s built with RANDOM weights: for tests and timing only", self.name)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return build_sam2(
                    self.spec.config, None, device=str(self.device), hydra_overrides_extra=extra
                )
        try:
            return build_sam2(
                self.spec.config, str(path), device=str(self.device), hydra_overrides_extra=extra
            )
        except Exception as e:
            raise MicrosegError(
                f"Could not load SAM2 checkpoint {path} as '{self.name}' "
                f"({type(e).__name__}: {e}). "
                f"The file may be damaged or belong to another model size; the expected file is "
                f"{self.spec.filename} from {self.spec.url}."
            ) from e

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.device.type == "cuda" else "fp32"

    def signature(self) -> dict:
        """Model id, config, weights (and fine-tuning delta) checksums, precision (cache key)."""
        sig = {
            "backend": "sam2",
            "model": self.name,
            "config": self.spec.config,
            "weights": self.weights,
            "precision": self.precision,
            "input_size": int(self.model.image_size),
        }
        if self.finetuned:
            sig["finetuned"] = self.finetuned  # the delta's SHA-256
        return sig

    # -- embedding -----------------------------------------------------------------

    def set_image(self, image: np.ndarray, *, progress=None) -> None:
        """Compute the embedding of ``image`` (2-D float in [0, 1], or H x W x 3)."""
        import torch

        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)  # grey -> RGB for the encoder
        elif image.ndim != 3 or image.shape[2] != 3:
            raise MicrosegError(f"SAM2 needs a 2-D or H x W x 3 image, got shape {image.shape}")
        if progress is not None:
            progress(0.0)
        with torch.inference_mode(), autocast(self.device):
            self.predictor.set_image(image)
        self.n_encoder_calls += 1
        if progress is not None:
            progress(1.0)

    def get_embedding(self) -> dict[str, np.ndarray]:
        """The current image's features as float32 numpy arrays (see :data:`EMBEDDING_KEYS`)."""
        p = self.predictor
        if not p._is_image_set:
            raise MicrosegError("No image is set: call set_image first.")
        feats = p._features
        hr0, hr1 = feats["high_res_feats"]

        def np32(t):
            return t.detach().float().cpu().numpy()

        return {
            "image_embed": np32(feats["image_embed"]),
            "high_res_feat_0": np32(hr0),
            "high_res_feat_1": np32(hr1),
            "orig_hw": np.asarray(p._orig_hw[0], np.int64),
        }

    def load_embedding(self, embedding: dict[str, np.ndarray]) -> None:
        """Restore features from :meth:`get_embedding` (no encoder pass)."""
        import torch

        missing = [k for k in EMBEDDING_KEYS if k not in embedding]
        if missing:
            raise MicrosegError(f"Embedding lacks {', '.join(missing)}")

        def tensor(a):
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)

        p = self.predictor
        p.reset_predictor()
        p._features = {
            "image_embed": tensor(embedding["image_embed"]),
            "high_res_feats": [
                tensor(embedding["high_res_feat_0"]),
                tensor(embedding["high_res_feat_1"]),
            ],
        }
        h, w = (int(v) for v in np.asarray(embedding["orig_hw"]).reshape(2))
        p._orig_hw = [(h, w)]
        p._is_image_set = True

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """``(rows, cols)`` of the current image, or None."""
        p = self.predictor
        return tuple(p._orig_hw[0]) if p._is_image_set else None

    # -- prompts -------------------------------------------------------------------

    def mask_prior(self, start, shape: tuple[int, int]) -> np.ndarray:
        """An existing object as SAM2's ``mask_input``: ``(1, s/4, s/4)`` logits (+-10) over the image."""
        from skimage.transform import resize

        side = int(self.model.image_size) // 4
        frac = resize(start.full(shape).astype(np.float32), (side, side), order=1, anti_aliasing=True)
        return (20.0 * (frac - 0.5)).astype(np.float32)[None]

    def predict(self, prompts: Prompts) -> Prediction:
        """One mask from clicks / box / previous logits on the current image.

        Points ``(row, col)`` become SAM2's ``(x, y)``; a box
        ``(rmin, cmin, rmax, cmax)`` becomes ``(x0, y0, x1, y1)``. A single
        click without a box asks for three candidate masks and keeps the one
        with the best predicted IoU.
        """
        import torch

        p = self.predictor
        if not p._is_image_set:
            raise MicrosegError("No image is set: call set_image first.")
        n = len(prompts.points)
        if n == 0 and prompts.box is None:
            raise ValueError("SAM2 needs at least one click or a box")
        coords = (
            np.ascontiguousarray(prompts.points[:, ::-1]) if n else None
        )  # (row, col) -> (x, y)
        labels = prompts.labels if n else None
        box = prompts.box[[1, 0, 3, 2]] if prompts.box is not None else None
        mask_in = prompts.mask_logits
        if mask_in is not None:
            mask_in = np.asarray(mask_in, dtype=np.float32).reshape(1, *np.shape(mask_in)[-2:])
        multimask = n == 1 and box is None
        with torch.inference_mode(), autocast(self.device):
            m_in, pts, lab, bx = p._prep_prompts(coords, labels, box, mask_in, True)
            masks, ious, low_res = p._predict(
                pts, lab, bx, m_in, multimask_output=multimask, return_logits=False
            )
        ious = ious[0].float()
        best = int(torch.argmax(ious)) if multimask else 0
        mask = masks[0, best].cpu().numpy()
        logits = low_res[0, best : best + 1].float().cpu().numpy()
        score = float(min(max(float(ious[best]), 0.0), 1.0))
        return Prediction(mask=mask, score=score, logits=logits)
