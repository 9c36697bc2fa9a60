"""The built-in promptable model (``microseg-promptable``).

A compact U-Net conditioned on clicks, a box and the previous mask, applied to
a window around the prompts only (:mod:`.crops`), so it needs no image
embedding and its per-click cost does not grow with the image. The weights
ship in the package (``resources/models/microseg-promptable``); they were
trained with :func:`.training.train_promptable` (``microseg train-promptable``).
"""

from .backend import PromptableBackend, load_weights, save_weights
from .crops import CropConfig
from .model import PromptUNet

__all__ = [
    "CropConfig",
    "PromptUNet",
    "PromptableBackend",
    "load_default",
    "load_weights",
    "save_weights",
]


def load_default(**kw) -> PromptableBackend:
    """The shipped model as a backend (see :meth:`PromptableBackend.load_default`)."""
    return PromptableBackend.load_default(**kw)
