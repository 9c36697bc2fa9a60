"""Intensity normalisation of a micrograph to float32 in [0, 1] for promptable models.

Two ways to pick the intensity window ``[lo, hi]`` mapped to ``[0, 1]``:

- robust percentiles of the finite pixels (default 0.5 % and 99.5 %), so a few
  hot pixels or a saturated info bar do not flatten the contrast;
- the image layer's contrast limits, so the model sees what the user sees.

The window is part of the embedding cache key (:func:`normalization_signature`):
the same image normalised differently gives a different embedding.
"""

from __future__ import annotations

import math

import numpy as np

#: Default robust percentiles (low, high).
DEFAULT_PERCENTILES = (0.5, 99.5)
#: Percentiles are computed on a regular subsample of at most this many pixels.
MAX_SAMPLES = 4_000_000
#: Bump when the normalisation arithmetic changes (invalidates cached embeddings).
VERSION = 1


def _sample(image: np.ndarray, max_samples: int = MAX_SAMPLES) -> np.ndarray:
    """A regular (strided, deterministic) subsample of ``image`` with <= ``max_samples`` pixels."""
    size = int(np.prod(image.shape[:2])) if image.ndim >= 2 else image.size
    if size <= max_samples or image.ndim < 2:
        return np.asarray(image)
    step = int(math.ceil(math.sqrt(size / max_samples)))
    return np.asarray(image[::step, ::step])


def normalization_range(
    image: np.ndarray,
    contrast_limits=None,
    percentiles=DEFAULT_PERCENTILES,
) -> tuple[float, float]:
    """The intensity window ``(lo, hi)`` that :func:`normalize_image` maps to ``[0, 1]``.

    Parameters
    ----------
    image : array-like
        Any numeric dtype (8/16-bit integers, floats); NaN and inf are ignored.
    contrast_limits : (float, float), optional
        Use this window (e.g. a napari layer's ``contrast_limits``) instead of
        percentiles.
    percentiles : (float, float)
        Robust low/high percentiles used when ``contrast_limits`` is None.

    Returns
    -------
    (float, float)
        ``lo <= hi``; equal for a constant image.
    """
    if contrast_limits is not None:
        lo, hi = (float(v) for v in contrast_limits)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"contrast limits must be finite, got {contrast_limits!r}")
        return (lo, hi) if lo <= hi else (hi, lo)
    p_lo, p_hi = (float(p) for p in percentiles)
    if not 0 <= p_lo <= p_hi <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low <= high <= 100, got {percentiles!r}")
    sample = _sample(image)
    if sample.dtype == bool:
        sample = sample.astype(np.uint8)
    if np.issubdtype(sample.dtype, np.floating) or np.issubdtype(sample.dtype, np.complexfloating):
        sample = np.real(sample)
        sample = sample[np.isfinite(sample)]
    else:
        sample = sample.reshape(-1)
    if sample.size == 0:
        return (0.0, 0.0)
    lo, hi = np.percentile(sample, [p_lo, p_hi])
    return float(lo), float(hi)


def apply_normalization(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(image - lo) / (hi - lo)`` clipped to ``[0, 1]`` as float32; NaN becomes 0.

    A degenerate window (``hi <= lo``) gives an all-zero image.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not hi > lo:
        return np.zeros(image.shape, np.float32)
    out = np.array(np.real(image), dtype=np.float32)  # always a new array
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def normalize_image(
    image: np.ndarray,
    contrast_limits=None,
    percentiles=DEFAULT_PERCENTILES,
) -> np.ndarray:
    """``image`` as float32 in ``[0, 1]``.

    Parameters
    ----------
    image : array-like
        2-D (or any shape) image of any numeric dtype; NaN-safe.
    contrast_limits : (float, float), optional
        Window to map to ``[0, 1]`` (a layer's contrast limits). Default: robust
        ``percentiles`` of the finite pixels.
    percentiles : (float, float)
        Low/high percentiles, used when ``contrast_limits`` is None.

    Returns
    -------
    ndarray of float32
        Same shape as ``image``; never aliases it.

    Examples
    --------
    >>> img = np.array([[0, 100], [200, 65535]], np.uint16)
    >>> normalize_image(img, contrast_limits=(0, 200))
    array([[0. , 0.5],
           [1. , 1. ]], dtype=float32)
    """
    lo, hi = normalization_range(image, contrast_limits, percentiles)
    return apply_normalization(image, lo, hi)


def normalization_signature(
    image: np.ndarray | None = None,
    contrast_limits=None,
    percentiles=DEFAULT_PERCENTILES,
    *,
    value_range: tuple[float, float] | None = None,
) -> dict:
    """JSON-ready description of the normalisation, for cache keys and provenance.

    Pass either ``image`` (the window is computed as :func:`normalize_image`
    would) or an already computed ``value_range``.
    """
    if value_range is None:
        if image is None:
            raise ValueError("give the image or its value_range")
        value_range = normalization_range(image, contrast_limits, percentiles)
    lo, hi = (float(v) for v in value_range)
    sig = {
        "version": VERSION,
        "method": "contrast_limits" if contrast_limits is not None else "percentiles",
        "range": [float(f"{lo:.7g}"), float(f"{hi:.7g}")],
    }
    if contrast_limits is None:
        sig["percentiles"] = [float(p) for p in percentiles]
    return sig
