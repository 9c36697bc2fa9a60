"""Probability maps for ``evaluate --probability``: read, check, reduce to foreground.

Accepts a 2-D float foreground map or the ``(K, H, W)`` float class maps that
``microseg predict --probabilities`` writes (``<stem>_prob.tif``, axes CYX, one
plane per defect class, no background plane). The foreground probability of
several planes is their sum when it stays within [0, 1] (softmax models: one
minus the background) and else their maximum (independent sigmoid classes).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, MicrosegError


class ProbabilityMapError(MicrosegError):
    """The probability map cannot be used (type, range, shape)."""


def read_probability(path, shape: tuple[int, int]) -> np.ndarray:
    """Read ``path`` and return its ``(H, W)`` float64 foreground probability.

    Parameters
    ----------
    path : str or Path
        A float TIFF (2-D, or CYX/YXC class planes) or any image the
        micrograph reader opens.
    shape : tuple of int
        ``(H, W)`` of the labels it goes with.

    Raises
    ------
    ProbabilityMapError
        For a non-float map, values outside [0, 1] or NaN, or a shape that
        matches neither ``(H, W)``, ``(K, H, W)`` nor ``(H, W, K)``.
    """
    path = Path(path)
    data = _read(path)
    return foreground_probability(data, shape, path.name)


def _read(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        if not path.is_file():
            raise FileNotFoundError(2, "No such file", str(path))
        try:
            return np.asarray(tifffile.imread(path)).squeeze()
        except (ValueError, tifffile.TiffFileError, IndexError, KeyError) as e:
            raise CorruptFileError(f"Cannot read the probability map {path.name}: {e}") from e
    from ..reading import read_micrograph

    return np.asarray(read_micrograph(path).data).squeeze()


def foreground_probability(data: np.ndarray, shape, name: str = "the probability map") -> np.ndarray:
    """Check ``data`` and reduce it to a ``(H, W)`` foreground probability (see module doc)."""
    data = np.asarray(data)
    shape = tuple(int(v) for v in shape)
    if data.dtype.kind != "f":
        raise ProbabilityMapError(
            f"{name} holds {data.dtype} values, not probabilities; give a float map in [0, 1] "
            "(e.g. the _prob.tif of microseg predict --probabilities)."
        )
    if data.ndim == 2 and data.shape == shape:
        fg_planes = data[None]
    elif data.ndim == 3 and data.shape[1:] == shape:
        fg_planes = data
    elif data.ndim == 3 and data.shape[:2] == shape and data.shape[2] <= 16:
        fg_planes = np.moveaxis(data, 2, 0)
    else:
        raise ProbabilityMapError(
            f"{name} has shape {data.shape}; expected {shape} or class planes of that size."
        )
    planes = fg_planes.astype(np.float64, copy=False)
    if not np.all(np.isfinite(planes)):
        raise ProbabilityMapError(f"{name} holds NaN or infinite values.")
    lo, hi = float(planes.min()), float(planes.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ProbabilityMapError(
            f"{name} has values from {lo:.4g} to {hi:.4g}, outside [0, 1]; give probabilities, "
            "not logits or intensities."
        )
    total = planes.sum(axis=0)
    fg = total if float(total.max()) <= 1 + 1e-4 else planes.max(axis=0)
    fg = np.clip(fg, 0.0, 1.0)
    if float(fg.min()) == float(fg.max()):
        warnings.warn(
            f"{name} is constant ({float(fg.min()):.4g}); its AUPRC only reflects the foreground "
            "fraction.",
            stacklevel=2,
        )
    return fg
