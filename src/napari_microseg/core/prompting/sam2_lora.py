"""Fine-tuned SAM2: LoRA on the image encoder, and the small delta file that carries it.

A fine-tuned SAM2 is a base checkpoint (named by model id and SHA-256) plus a
*delta*: the LoRA matrices on the attention ``qkv`` / ``proj`` layers of the
Hiera trunk, and the full mask-decoder and prompt-encoder weights. The delta
file (``delta.pt``, a few MB to ~20 MB) is what training writes and what
:class:`~.sam2_backend.Sam2Backend` applies on top of the base
(``Sam2Backend(base_id, finetuned=folder)``).

``delta.pt`` holds ``{"format", "base", "lora", "image_size", "state_dict"}``:
``base`` = ``{"model", "config", "weights"}`` (``weights`` is the base
checkpoint's SHA-256, or ``"random(seed=N)"`` for the test-only random base,
which only loads with ``allow_random_weights=True``); ``lora`` =
``{"rank", "alpha", "targets"}``; ``image_size`` the encoder input side the
delta was trained at.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MicrosegError

#: Value of the delta file's ``format`` key.
DELTA_FORMAT = "napari-microseg-sam2-delta"
#: File name of the delta inside a registered model folder.
DELTA_FILE = "delta.pt"
#: Trunk modules that receive LoRA (regex, full match on names inside ``image_encoder.trunk``).
LORA_TARGETS = r"blocks\.\d+\.attn\.(qkv|proj)"
#: Model sub-modules trained in full.
FULL_MODULES = ("sam_mask_decoder.", "sam_prompt_encoder.")


def add_lora(model, rank: int = 4, alpha: float | None = None, targets: str = LORA_TARGETS) -> int:
    """Inject LoRA adapters into the Hiera trunk of ``model``; return how many layers got one.

    Only the adapters, the mask decoder and the prompt encoder require grad
    afterwards; every other weight is frozen.
    """
    from peft import LoraConfig, inject_adapter_in_model

    rank = int(rank)
    if not 1 <= rank <= 64:
        raise MicrosegError(f"LoRA rank {rank} must be between 1 and 64.")
    cfg = LoraConfig(
        r=rank,
        lora_alpha=float(alpha if alpha is not None else 2 * rank),
        target_modules=targets,
        lora_dropout=0.0,
        bias="none",
    )
    inject_adapter_in_model(cfg, model.image_encoder.trunk)
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name))
    return sum(1 for n, _ in model.named_modules() if n.endswith(".lora_A"))


def is_trainable(name: str) -> bool:
    """Whether parameter ``name`` belongs to the delta (LoRA, decoder, prompt encoder)."""
    return "lora_" in name or name.startswith(FULL_MODULES)


def delta_state(model) -> dict:
    """The delta's tensors (CPU copies) of a LoRA-injected ``model``."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if is_trainable(k)}


def save_delta(path, model, *, base: dict, lora: dict, image_size: int, meta=None) -> str:
    """Write the delta of ``model`` to ``path``; return the file's SHA-256."""
    import torch

    from ..safeload import write_with_digest

    data = {
        "format": DELTA_FORMAT,
        "base": dict(base),
        "lora": dict(lora),
        "image_size": int(image_size),
        "meta": dict(meta or {}),
        "state_dict": delta_state(model),
    }
    return write_with_digest(path, lambda tmp: torch.save(data, tmp))


def read_delta(path) -> dict:
    """The contents of a delta file; one-line :class:`MicrosegError` when it is not one.

    ``path`` is a delta file or a registered model folder. The file is read as
    data (``weights_only=True``) after its SHA-256 is compared with the card's
    ``delta_sha256`` (a model folder) or the record beside it (a run folder).
    """
    from ..safeload import load_torch_data
    from ..weights import sha256_file

    path = Path(path)
    expected = None
    if path.is_dir():
        expected = _card_sha256(path / "model_card.json")
        path = path / DELTA_FILE
    data = load_torch_data(path, "napari-microseg SAM2 delta file", expected_sha256=expected)
    if not isinstance(data, dict) or data.get("format") != DELTA_FORMAT:
        raise MicrosegError(f"{path} is not a napari-microseg SAM2 delta file.")
    data["path"] = str(path)
    data["sha256"] = sha256_file(path)
    return data


def _card_sha256(card_path: Path) -> str | None:
    """The ``delta_sha256`` a registered model's card records (None without one)."""
    import json

    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    sha = card.get("delta_sha256") if isinstance(card, dict) else None
    return sha if isinstance(sha, str) else None


def apply_delta(model, delta: dict, merge: bool = True) -> None:
    """Inject LoRA as the delta says and load its weights into ``model`` (in place).

    ``merge=True`` folds the LoRA matrices into the frozen weights so
    prediction costs what the base costs.
    """
    lora = delta["lora"]
    add_lora(model, lora["rank"], lora.get("alpha"), lora.get("targets", LORA_TARGETS))
    result = model.load_state_dict(delta["state_dict"], strict=False)
    if result.unexpected_keys:
        raise MicrosegError(
            f"{delta.get('path', 'delta')}: {len(result.unexpected_keys)} weights do not fit this "
            f"SAM2 model (e.g. {result.unexpected_keys[0]}); it was made for another base."
        )
    missing = [k for k in result.missing_keys if is_trainable(k)]
    if missing:
        raise MicrosegError(
            f"{delta.get('path', 'delta')}: the delta lacks {len(missing)} weights "
            f"(e.g. {missing[0]})."
        )
    if merge:
        for module in model.image_encoder.trunk.modules():
            if hasattr(module, "lora_A") and hasattr(module, "merge"):
                module.merge()
    for p in model.parameters():
        p.requires_grad_(False)


def check_base(delta: dict, model_id: str, weights: str, allow_random_weights: bool) -> None:
    """Refuse a delta made for another base, or a random base without the test flag."""
    base = delta.get("base") or {}
    where = delta.get("path", "delta")
    if str(base.get("weights", "")).startswith("random") and not allow_random_weights:
        raise MicrosegError(
            f"{where} was fine-tuned from RANDOM SAM2 weights (a test model) and cannot be used "
            "for labelling; fine-tune from a real SAM2 checkpoint."
        )
    if base.get("model") != model_id:
        raise MicrosegError(f"{where} was fine-tuned from {base.get('model')!r}, not {model_id!r}.")
    if base.get("weights") != weights:
        raise MicrosegError(
            f"{where} was fine-tuned from {model_id} weights with SHA-256 "
            f"{str(base.get('weights'))[:16]}…, but the weights found have {str(weights)[:16]}…; "
            "use the same base checkpoint."
        )
