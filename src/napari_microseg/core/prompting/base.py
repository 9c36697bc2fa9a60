"""The interface every promptable backend implements.

Coordinates are pixel ``(row, col)`` of the full image, floats allowed. A
backend never sees napari layers; it gets arrays and returns arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Prompts:
    """Prompts for one object.

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        Click positions as ``(row, col)`` in image pixels.
    labels : ndarray, shape (n,)
        1 for a positive click (object), 0 for a negative one (background).
    box : ndarray, shape (4,), optional
        ``(row_min, col_min, row_max, col_max)`` in image pixels, inclusive of
        the object (as drawn; need not be integer).
    mask_logits : ndarray, optional
        The previous prediction's logits as returned in
        :attr:`Prediction.logits`, fed back to refine.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=float))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=int))
    box: np.ndarray | None = None
    mask_logits: np.ndarray | None = None

    def __post_init__(self):
        self.points = np.asarray(self.points, dtype=float).reshape(-1, 2)
        self.labels = np.asarray(self.labels, dtype=int).reshape(-1)
        if len(self.points) != len(self.labels):
            raise ValueError(f"{len(self.points)} points but {len(self.labels)} point labels")
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=float).reshape(4)

    @property
    def empty(self) -> bool:
        """No click and no box."""
        return len(self.points) == 0 and self.box is None

    def bounds(self) -> tuple[float, float, float, float]:
        """``(rmin, cmin, rmax, cmax)`` enclosing every click and the box."""
        pts = [self.points] if len(self.points) else []
        if self.box is not None:
            pts.append(self.box.reshape(2, 2))
        if not pts:
            raise ValueError("no prompts")
        allp = np.concatenate(pts)
        return (*allp.min(0), *allp.max(0))


@dataclass
class Prediction:
    """A backend's answer for one object.

    Parameters
    ----------
    mask : ndarray of bool
        Full-image mask.
    score : float
        The backend's own quality estimate (predicted IoU for SAM2), in [0, 1].
    logits : ndarray or object, optional
        Whatever the backend needs back in :attr:`Prompts.mask_logits` to refine
        on the next click (opaque to callers).
    """

    mask: np.ndarray
    score: float = 1.0
    logits: object = None


class PromptBackend(ABC):
    """A promptable segmentation model.

    Subclasses set :attr:`name` and implement :meth:`set_image` and
    :meth:`predict`. :meth:`signature` must change whenever anything that
    affects the embedding changes (weights, normalisation, tiling), because it
    keys the embedding cache.
    """

    #: Short id, e.g. ``"sam2.1-tiny"``, ``"microseg-promptable"``, ``"otsu-flood"``.
    name: str = "backend"
    #: Whether :meth:`set_image` computes an embedding worth caching.
    needs_embedding: bool = False

    @abstractmethod
    def set_image(self, image: np.ndarray, *, progress=None) -> None:
        """Prepare ``image`` (2-D, any dtype, already normalised to float32 [0, 1]).

        ``progress``, if given, is called with a fraction in [0, 1].
        """

    @abstractmethod
    def predict(self, prompts: Prompts) -> Prediction:
        """Mask for one object from ``prompts`` on the current image."""

    def signature(self) -> dict:
        """What identifies this backend's embeddings (JSON-ready)."""
        return {"backend": self.name}
