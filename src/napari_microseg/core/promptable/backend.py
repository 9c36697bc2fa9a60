"""``microseg-promptable``: the built-in click/box backend (no embedding, crop-local).

Each :meth:`PromptableBackend.predict` encodes one window around the prompts
(:mod:`.crops`), runs the compact U-Net (:mod:`.model`) on it and pastes the
thresholded logits back. Only the window is read from the image, so a click
costs the same on an 8192 x 8192 image as on a 512 x 512 one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from ..errors import MicrosegError
from ..prompting.base import Prediction, PromptBackend, Prompts, RegionMask
from .crops import (
    LOW_LOGIT,
    CropConfig,
    CropLogits,
    Window,
    encode,
    hinted_side,
    place,
    prev_logits_in,
    prompt_window,
    square_window,
    touches_edge,
    window_logits,
)
from .model import PromptUNet

#: Package folder (under ``napari_microseg``) holding the shipped model.
RESOURCE = ("resources", "models", "microseg-promptable")
#: File names inside it.
WEIGHTS_FILE, CARD_FILE = "weights.pt", "model_card.json"
_EIGHT = np.ones((3, 3), bool)


def save_weights(path, model: PromptUNet, crop: CropConfig, half: bool = True, **meta) -> None:
    """Write ``model`` (fp16 by default), its config and ``crop`` to ``path``."""
    state = {k: (v.half() if half and v.is_floating_point() else v).clone()
             for k, v in model.state_dict().items()}
    torch.save({"model": model.config(), "crop": crop.to_dict(), "state_dict": state,
                "meta": meta}, path)


def load_weights(path, expected_sha256: str | None = None) -> tuple[PromptUNet, CropConfig, dict]:
    """``(model in eval mode, crop config, meta)`` from a weights file.

    The file is read as data (``weights_only=True``; a pickle holding code is
    refused, never run) after its SHA-256 is compared with ``expected_sha256``
    (a card's) or the record beside it. Every failure is one
    :class:`~..errors.MicrosegError` line naming the file.
    """
    from ..safeload import load_torch_data

    data = load_torch_data(path, "microseg-promptable weights file",
                           expected_sha256=expected_sha256)
    if not isinstance(data, dict) or "state_dict" not in data or "model" not in data:
        raise MicrosegError(f"{path} is not a microseg-promptable weights file.")
    try:
        model = PromptUNet(**data["model"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in data["state_dict"].items()})
        crop = CropConfig.from_dict(data.get("crop"))
    except (TypeError, ValueError, KeyError, RuntimeError, AttributeError) as e:
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise MicrosegError(f"{path}: the weights do not fit the promptable model ({msg}).") from None
    model.eval()
    meta = data.get("meta")
    return model, crop, dict(meta) if isinstance(meta, dict) else {}


@contextlib.contextmanager
def _threads(n: int | None):
    if not n:
        yield
        return
    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if old != n:
            torch.set_num_threads(old)


class PromptableBackend(PromptBackend):
    """Click- and box-conditioned U-Net on a crop around the prompts.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(1, 6, n, n)`` inputs to ``(1, 1, n, n)`` logits (a
        :class:`~.model.PromptUNet`, or any stand-in for tests).
    crop : CropConfig, optional
        Window rules; must match the ones the model was trained with.
    meta : dict, optional
        Provenance (the model card), reported by :meth:`signature`.
    threads : int or None
        Torch threads while predicting (restored afterwards); ``None`` keeps
        the global setting. One thread is the fastest for a 64 x 64 input.
    max_passes : int
        How many times a click-only window may be doubled when the mask runs
        into its edge, plus one.
    threshold : float, optional
        Logit above which a pixel is object when refining (a previous mask is
        given); default the model's own (``meta["threshold"]``, else 0).
    first_threshold : float, optional
        The same for a new object (no previous mask); default
        ``meta["first_threshold"]``, else ``threshold``.
    """

    name = "microseg-promptable"
    needs_embedding = False
    uses_size_hint = True

    def __init__(self, model, crop: CropConfig | None = None, meta: dict | None = None,
                 threads: int | None = 1, max_passes: int = 4, threshold: float | None = None,
                 first_threshold: float | None = None):
        self.model = model.eval() if hasattr(model, "eval") else model
        self.crop = crop or CropConfig()
        self.meta = dict(meta or {})
        self.threads = threads
        self.max_passes = int(max_passes)
        self.threshold = float(self.meta.get("threshold", 0.0) if threshold is None else threshold)
        if first_threshold is None:
            first_threshold = self.meta.get("first_threshold", self.threshold)
        self.first_threshold = float(first_threshold)
        self._image: np.ndarray | None = None
        #: Shapes of the network inputs of the last :meth:`predict` (one per pass).
        self.last_input_shapes: list[tuple[int, ...]] = []
        #: Windows of the last :meth:`predict` (one per pass).
        self.last_windows: list[Window] = []
        #: Where the weights came from: ``"default"`` (the shipped model), a weights file, or
        #: ``None`` (built in memory); in-session adaptation starts from it.
        self.source: str | Path | None = None

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path, **kw) -> PromptableBackend:
        """Backend from a weights file (``.pt``); the card beside it, if any, is merged into meta.

        The card's ``weights_sha256`` must match the file (a changed or corrupt
        file is refused).
        """
        card_path = Path(path).with_name(CARD_FILE)
        card = {}
        if card_path.is_file():
            try:
                card = json.loads(card_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as e:
                msg = f"{card_path}: the model card is not readable JSON ({e})."
                raise MicrosegError(msg) from None
            if not isinstance(card, dict):
                raise MicrosegError(f"{card_path}: the model card is not a JSON object.")
        sha = card.get("weights_sha256")
        model, crop, meta = load_weights(path, sha if isinstance(sha, str) else None)
        backend = cls(model, crop, {**meta, **card}, **kw)
        backend.source = Path(path)
        return backend

    @classmethod
    def load_default(cls, **kw) -> PromptableBackend:
        """The model shipped in the package (``resources/models/microseg-promptable``)."""
        folder = resources.files("napari_microseg").joinpath(*RESOURCE)
        weights = folder.joinpath(WEIGHTS_FILE)
        if not weights.is_file():
            raise MicrosegError(
                "The built-in microseg-promptable weights are missing from the installation "
                f"({weights})."
            )
        with resources.as_file(weights) as path:
            backend = cls.from_checkpoint(path, **kw)
        backend.source = "default"
        return backend

    def signature(self) -> dict:
        """Backend name, model id and window rules."""
        return {
            "backend": self.name,
            "model": self.meta.get("model_id", "custom"),
            "crop": self.crop.to_dict(),
        }

    # -- prediction --------------------------------------------------------------------

    def set_image(self, image: np.ndarray, *, progress=None) -> None:
        """Keep a reference to ``image`` (2-D float in [0, 1]); nothing is computed."""
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D image, got shape {image.shape}")
        self._image = image if image.dtype == np.float32 else image.astype(np.float32)
        if progress is not None:
            progress(1.0)

    def mask_prior(self, start: RegionMask, shape: tuple[int, int]) -> CropLogits:
        """An existing object as the previous-mask input: saturated logits on a window around it."""
        r0, c0, r1, c1 = start.bbox()
        side = max(r1 - r0, c1 - c0) + 3
        win = square_window(((r0 + r1) / 2, (c0 + c1) / 2), side, shape)
        inside = start.crop(slice(win.r0, win.r0 + win.side), slice(win.c0, win.c0 + win.side))
        return CropLogits(win, np.where(inside, -LOW_LOGIT, LOW_LOGIT).astype(np.float32))

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.last_input_shapes.append(tuple(x[None].shape))
        with torch.inference_mode():
            out = self.model(torch.from_numpy(x[None]))
        return np.asarray(out[0, 0].float().numpy(), np.float32)

    def predict(self, prompts: Prompts) -> Prediction:
        """Mask for ``prompts``; see the class and :mod:`.crops` docstrings."""
        if self._image is None:
            raise RuntimeError("set_image() must be called before predict()")
        shape = self._image.shape
        self.last_input_shapes, self.last_windows = [], []
        prev = prompts.mask_logits
        editing = prompts.start_mask is not None and prev is not None
        if prompts.empty or (prompts.box is None and not (prompts.labels == 1).any() and not editing):
            return Prediction(np.zeros(shape, bool), 0.0, None)
        prev_bbox = _prev_bbox(prev)
        crop = self.crop
        if (prompts.size_hint and prev is None and prompts.box is None
                and prompts.start_mask is None):
            crop = dataclasses.replace(crop, min_side=hinted_side(prompts.size_hint))
        win = prompt_window(prompts.points, prompts.box, prev_bbox, shape, crop)
        thr = self.threshold if prev is not None else self.first_threshold
        with _threads(self.threads):
            for attempt in range(self.max_passes):
                self.last_windows.append(win)
                x = encode(self._image, win, self.crop, prompts.points, prompts.labels,
                           prompts.box, prev_logits_in(prev, win, shape))
                logits = window_logits(self._run(x), win)
                mask = postprocess(logits > thr, win, prompts)
                if editing and prompts.box is None and not (prompts.labels == 1).any():
                    mask = _overlapping(mask, prev_logits_in(prev, win, shape) > 0)
                grow = (
                    prompts.box is None
                    and attempt + 1 < self.max_passes
                    and win.side < self.crop.max_side
                    and touches_edge(mask, win, shape)
                )
                if not grow:
                    break
                win = win.grown(2.0, shape, self.crop.max_side)
        prob = 1.0 / (1.0 + np.exp(-logits[mask])) if mask.any() else np.zeros(1)
        score = float(prob.mean()) if mask.any() else 0.0
        return Prediction(place(mask, win, shape), score, CropLogits(win, logits))


def _prev_bbox(prev) -> tuple | None:
    """Bounding box (image pixels) of a previous :class:`CropLogits` mask, if any."""
    if not isinstance(prev, CropLogits):
        return None
    m = prev.logits > 0
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if not len(rows):
        return None
    w = prev.window
    return (w.r0 + rows[0], w.c0 + cols[0], w.r0 + rows[-1], w.c0 + cols[-1])


def _overlapping(mask: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The 8-connected components of ``mask`` that overlap ``ref`` (same shape)."""
    lab, _ = ndi.label(mask, structure=_EIGHT)
    ids = np.unique(lab[ref & mask])
    return np.isin(lab, ids[ids > 0])


def postprocess(mask: np.ndarray, win: Window, prompts: Prompts) -> np.ndarray:
    """Keep what the prompts point at: clip to the box, keep clicked components.

    With a box, the mask is cut to the box. Components holding a positive click
    (within one pixel) are kept; with none, a box keeps its largest component
    and bare clicks keep the network's mask as is.
    """
    mask = mask.copy()
    side = win.side
    if prompts.box is not None:
        b = np.rint(prompts.box - [win.r0, win.c0, win.r0, win.c0]).astype(int)
        inside = np.zeros_like(mask)
        inside[max(b[0], 0) : max(b[2] + 1, 0), max(b[1], 0) : max(b[3] + 1, 0)] = True
        mask &= inside
    if not mask.any():
        return mask
    lab, n = ndi.label(mask, structure=_EIGHT)
    if n <= 1 and not len(prompts.points):
        return mask
    pos = prompts.points[prompts.labels == 1] - [win.r0, win.c0]
    keep = set()
    for r, c in np.rint(pos).astype(int):
        ids = lab[max(r - 1, 0) : min(r + 2, side), max(c - 1, 0) : min(c + 2, side)]
        keep.update(int(k) for k in np.unique(ids) if k)
    if keep:
        return np.isin(lab, list(keep))
    if prompts.box is not None and n > 1:
        return lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return mask
