"""Which torch device a model runs on, and the matching autocast."""

from __future__ import annotations

import contextlib

from .errors import MicrosegError

#: Values :func:`select_device` understands besides an explicit ``"cuda:N"``.
PREFERENCES = ("auto", "cuda", "mps", "cpu")


def _mps_available(torch) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(preference: str = "auto"):
    """The torch device to run on.

    Parameters
    ----------
    preference : str
        ``"auto"`` (CUDA, then Apple MPS, else CPU), ``"cuda"``, ``"cuda:N"``,
        ``"mps"`` or ``"cpu"``.

    Returns
    -------
    torch.device

    Raises
    ------
    MicrosegError
        If an explicitly requested accelerator is not available.
    """
    import torch

    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MicrosegError(f"Device {preference!r} requested but CUDA is not available.")
        return torch.device(pref)
    if pref == "mps":
        if not _mps_available(torch):
            raise MicrosegError("Device 'mps' requested but Apple MPS is not available.")
        return torch.device("mps")
    if pref == "cpu":
        return torch.device("cpu")
    raise MicrosegError(f"Unknown device {preference!r}; use one of {', '.join(PREFERENCES)}.")


def autocast(device):
    """Context for inference on ``device``: bfloat16 autocast on CUDA, nothing elsewhere."""
    import torch

    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
