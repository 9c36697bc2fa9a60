"""The interface every promptable backend implements.

Coordinates are pixel ``(row, col)`` of the full image, floats allowed. A
backend never sees napari layers; it gets arrays and returns arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RegionMask:
    """A boolean mask placed in a larger image: ``mask`` starts at pixel ``offset``.

    Objects of a large image are kept as their bounding-box crop, never as a
    full-image array.

    Parameters
    ----------
    mask : ndarray of bool
        The object inside its crop.
    offset : (int, int)
        ``(row, col)`` of ``mask[0, 0]`` in the image.
    """

    mask: np.ndarray
    offset: tuple[int, int] = (0, 0)

    def __post_init__(self):
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.ndim != 2:
            raise ValueError(f"a region mask is 2-D, got shape {self.mask.shape}")
        self.offset = (int(self.offset[0]), int(self.offset[1]))

    @classmethod
    def from_full(cls, mask: np.ndarray, pad: int = 0) -> RegionMask:
        """The bounding-box crop of a full-image ``mask`` (plus ``pad`` px where the image allows)."""
        mask = np.asarray(mask, dtype=bool)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if not len(rows):
            return cls(np.zeros((0, 0), bool), (0, 0))
        r0, c0 = max(rows[0] - pad, 0), max(cols[0] - pad, 0)
        r1, c1 = min(rows[-1] + pad + 1, mask.shape[0]), min(cols[-1] + pad + 1, mask.shape[1])
        return cls(mask[r0:r1, c0:c1].copy(), (r0, c0))

    def any(self) -> bool:
        """Whether the mask has a pixel."""
        return bool(self.mask.any())

    def bbox(self) -> tuple[int, int, int, int]:
        """``(rmin, cmin, rmax, cmax)`` of the object's pixels, inclusive, in image pixels."""
        rows, cols = np.flatnonzero(self.mask.any(1)), np.flatnonzero(self.mask.any(0))
        if not len(rows):
            raise ValueError("empty region mask")
        r, c = self.offset
        return (r + int(rows[0]), c + int(cols[0]), r + int(rows[-1]), c + int(cols[-1]))

    def shifted(self, dr: int, dc: int) -> RegionMask:
        """The same mask with its offset moved by ``(dr, dc)`` (e.g. into a tile's frame)."""
        return RegionMask(self.mask, (self.offset[0] + int(dr), self.offset[1] + int(dc)))

    def crop(self, rows: slice, cols: slice) -> np.ndarray:
        """The mask on the image window ``rows, cols`` (False outside the region)."""
        out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), bool)
        r, c = self.offset
        h, w = self.mask.shape
        ra, rb = max(rows.start, r), min(rows.stop, r + h)
        ca, cb = max(cols.start, c), min(cols.stop, c + w)
        if ra < rb and ca < cb:
            out[ra - rows.start : rb - rows.start, ca - cols.start : cb - cols.start] = (
                self.mask[ra - r : rb - r, ca - c : cb - c]
            )
        return out

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask as a full image of ``shape``."""
        return self.crop(slice(0, int(shape[0])), slice(0, int(shape[1])))


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
        :attr:`Prediction.logits`, fed back to refine (or, when editing an
        existing object, the backend's :meth:`PromptBackend.mask_prior` of it).
    start_mask : RegionMask, optional
        The existing object being edited (its mask becomes the starting
        mask; see :meth:`PromptSession.start_from <.session.PromptSession.start_from>`).
    size_hint : float, optional
        Typical area (pixels) of the objects the user committed on this image
        (:meth:`PromptSession.note_committed <.session.PromptSession.note_committed>`);
        a backend may size a first click's view by it (the offline model does,
        :func:`~..promptable.crops.hinted_side`); others ignore it.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=float))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=int))
    box: np.ndarray | None = None
    mask_logits: np.ndarray | None = None
    start_mask: RegionMask | None = None
    size_hint: float | None = None

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
        """``(rmin, cmin, rmax, cmax)`` enclosing every click, the box and the start mask."""
        pts = [self.points] if len(self.points) else []
        if self.box is not None:
            pts.append(self.box.reshape(2, 2))
        if self.start_mask is not None and self.start_mask.any():
            pts.append(np.asarray(self.start_mask.bbox(), float).reshape(2, 2))
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
    #: Whether :meth:`predict` uses :attr:`Prompts.size_hint` (the offline model does).
    uses_size_hint: bool = False

    @abstractmethod
    def set_image(self, image: np.ndarray, *, progress=None) -> None:
        """Prepare ``image`` (2-D, any dtype, already normalised to float32 [0, 1]).

        ``progress``, if given, is called with a fraction in [0, 1].
        """

    @abstractmethod
    def predict(self, prompts: Prompts) -> Prediction:
        """Mask for one object from ``prompts`` on the current image."""

    def mask_prior(self, start: RegionMask, shape: tuple[int, int]):
        """What :attr:`Prompts.mask_logits` should hold to start from an existing object.

        ``start`` is the object in the frame of the image given to
        :meth:`set_image` (of ``shape``). The default, ``None``, means the
        backend has no mask input; it can still read :attr:`Prompts.start_mask`.
        """
        return None

    def signature(self) -> dict:
        """What identifies this backend's embeddings (JSON-ready)."""
        return {"backend": self.name}
