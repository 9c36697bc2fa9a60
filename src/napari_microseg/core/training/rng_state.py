"""Random-generator states of a training run as checkpoint data.

A checkpoint is read with ``torch.load(weights_only=True)``, so every state
is stored as tensors and plain containers: numpy's bit-generator state dict
(ints), Python ``random``'s state as lists, the torch CPU and CUDA generator
states as uint8 tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from ..safeload import plain


def rng_states(rng: np.random.Generator | None = None) -> dict:
    """Every random-generator state of a run as plain data and tensors.

    ``numpy``: the bit generator's state dict (ints); ``python``: ``random``'s
    state as lists; ``torch``: the CPU generator (uint8 tensor); ``cuda``: one
    tensor per device (empty without CUDA).
    """
    import random

    version, internal, gauss = random.getstate()
    return {
        "numpy": plain(rng.bit_generator.state) if rng is not None else None,
        "python": [version, list(internal), gauss],
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict, rng: np.random.Generator | None = None) -> None:
    """Restore what :func:`rng_states` returned (missing parts are left as they are)."""
    import random

    if rng is not None and states.get("numpy"):
        rng.bit_generator.state = states["numpy"]
    if states.get("python"):
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if states.get("torch") is not None:
        torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def restore_rng(data: dict, rng: np.random.Generator) -> None:
    """Random states of a checkpoint (this format, or the earlier ``rng`` / ``torch_rng`` keys)."""
    if isinstance(data.get("rng_states"), dict):
        set_rng_states(data["rng_states"], rng)
        return
    rng.bit_generator.state = data["rng"]
    torch.set_rng_state(data["torch_rng"])
