"""Prompt backends by name.

``make_backend("otsu-flood")`` and ``make_backend("oracle", labels=...)`` always
work; ``"sam2.1-tiny"`` (and the other SAM2 / SAM2.1 sizes, see
:data:`napari_microseg.core.weights.MODELS`) need the optional ``sam2`` package and
the checkpoint; ``"microseg-promptable"`` is the built-in model shipped in the
package (:mod:`napari_microseg.core.promptable`). Fine-tuned prompt models
registered in the per-user model folder (``microseg train --arch promptable`` /
``--arch sam2``, see :func:`~napari_microseg.core.models.store.list_prompt_models`)
are built by their registry name too.
"""

from __future__ import annotations

from ..errors import MicrosegError
from .base import PromptBackend

#: Names that need no optional dependency.
BUILTIN = ("otsu-flood", "oracle")
#: The built-in learned backend (weights shipped in the package).
BUILTIN_LEARNED = ("microseg-promptable",)
#: Planned, not implemented.
PLANNED: tuple[str, ...] = ()


def sam2_names() -> tuple[str, ...]:
    """The SAM2 model ids (from :mod:`napari_microseg.core.weights`)."""
    from ..weights import MODELS

    return tuple(MODELS)


def finetuned_names() -> tuple[str, ...]:
    """Registry names of the fine-tuned prompt models (promptable and SAM2)."""
    from ..models.store import list_prompt_models

    return tuple(e.name for e in list_prompt_models() if e.name not in _fixed_names())


def _fixed_names() -> tuple[str, ...]:
    return BUILTIN + BUILTIN_LEARNED + sam2_names() + PLANNED


def available_backends() -> tuple[str, ...]:
    """Every name :func:`make_backend` knows (SAM2 ones may still fail to build)."""
    return BUILTIN + BUILTIN_LEARNED + sam2_names() + finetuned_names() + PLANNED


def make_backend(name: str, **kw) -> PromptBackend:
    """Build the prompt backend called ``name``.

    Parameters
    ----------
    name : str
        One of :func:`available_backends`.
    **kw
        Passed to the backend's constructor (``labels=`` is required for
        ``"oracle"``).

    Returns
    -------
    PromptBackend

    Raises
    ------
    MicrosegError
        Unknown name, SAM2 not installed or its weights missing, or a backend
        that is not available yet.
    """
    if name == "otsu-flood":
        from .baselines import OtsuFloodBackend

        return OtsuFloodBackend(**kw)
    if name == "oracle":
        from .baselines import OracleBackend

        if "labels" not in kw:
            raise MicrosegError("The oracle backend needs the true instance labels (labels=...).")
        return OracleBackend(**kw)
    if name == "microseg-promptable":
        from ..promptable.backend import PromptableBackend

        if "checkpoint" in kw:
            return PromptableBackend.from_checkpoint(kw.pop("checkpoint"), **kw)
        return PromptableBackend.load_default(**kw)
    if name not in _fixed_names():
        entry = _finetuned_entry(name)
        if entry is not None:
            return _make_finetuned(entry, **kw)
    if name.startswith("sam2"):
        return _make_sam2(name, **kw)
    if name in PLANNED:
        raise MicrosegError(f"Prompt backend {name!r} is not available yet.")
    raise MicrosegError(
        f"Unknown prompt backend {name!r}; choose from {', '.join(available_backends())}."
    )


def _make_sam2(name: str, **kw) -> PromptBackend:
    """SAM2 backend; a missing checkpoint raises the weights module's own message."""
    hint = "Install it with `SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0`."
    try:
        from .sam2_backend import Sam2Backend
    except ImportError as e:
        raise MicrosegError(
            f"Prompt backend {name!r} is not available: the SAM2 backend failed to import "
            f"({e}). {hint}"
        ) from e
    try:
        # WeightsMissingError (a MicrosegError) says which file to put where.
        return Sam2Backend(name, **kw)
    except ImportError as e:
        raise MicrosegError(f"Prompt backend {name!r} needs the sam2 package ({e}). {hint}") from e
    except FileNotFoundError as e:
        raise MicrosegError(f"Weights for {name!r} are missing: {e}") from e


def _finetuned_entry(name: str):
    from ..models.store import list_prompt_models

    return next((e for e in list_prompt_models() if e.name == name), None)


def _make_finetuned(entry, **kw) -> PromptBackend:
    """A registered fine-tuned model: promptable weights, or SAM2 base + delta."""
    files = entry.card.get("files") or {}
    if entry.backend == "microseg-promptable":
        from ..promptable.backend import WEIGHTS_FILE, PromptableBackend

        kw.pop("checkpoint", None)
        backend = PromptableBackend.from_checkpoint(
            entry.folder / files.get("weights", WEIGHTS_FILE), **kw
        )
        backend.name = entry.name
        return backend
    base = (entry.card.get("base") or {}).get("model", "sam2.1-tiny")
    backend = _make_sam2(base, finetuned=entry.folder, **kw)
    backend.name = entry.name
    return backend
