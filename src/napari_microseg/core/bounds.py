"""Range checks shared by every entry point (CLI flags, recipes, docks) and the machine's limits.

Each check raises :class:`SettingsError` with one line naming the field, the
value and the allowed range, e.g. ``postprocess.smooth_sigma 1000000.0 must be
a number in [0, 50] (px)``. The settings classes
(:class:`~napari_microseg.core.models.postprocess.PostprocessSettings`,
:class:`~napari_microseg.core.measure.pipeline.MeasureSettings`) and the tiled
inference call these helpers with the bounds below, so the same value is
refused the same way wherever it comes from. No torch, Qt or napari here.
"""

from __future__ import annotations

import math
import numbers
import os

from .errors import MicrosegError

#: Largest opening/closing radius (px): a disk of r=64 is already 12 900 px.
RADIUS_MAX = 64
#: Largest boundary-smoothing Gaussian sigma (px).
SIGMA_MAX = 50.0
#: Watershed: smallest and largest distance between object centres (px).
MIN_DISTANCE_RANGE = (0, 1000)  # 0 acts as 1 (recipes written before the bound)
#: Number of size-histogram bins.
BINS_RANGE = (2, 10000)
#: Inference tile side (px).
TILE_RANGE = (8, 16384)
#: Inference tile halo (px).
HALO_RANGE = (0, 4096)
#: Tiles per forward pass.
BATCH_SIZE_RANGE = (1, 256)
#: Images with more pixels than this are refused before any pixel is read.
MAX_PIXELS = 2**31


class SettingsError(MicrosegError):
    """A setting is of the wrong type or outside its allowed range."""


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v) if isinstance(v, str) else str(v)


def is_real(v) -> bool:
    """Whether ``v`` is a finite real number (``bool`` is not)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def is_integer(v) -> bool:
    """Whether ``v`` is an integer (``int`` or NumPy integer; ``bool`` is not)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_real(name: str, value, lo: float, hi: float | None = None, unit: str = "") -> float:
    """``value`` as float when it is a finite number in ``[lo, hi]``; else :class:`SettingsError`.

    Parameters
    ----------
    name : str
        How the user knows the field (``"postprocess.smooth_sigma"``, ``"--smooth"``).
    value
        The value to check.
    lo, hi : float
        Inclusive bounds; ``hi=None`` means no upper bound.
    unit : str
        Shown after the range, e.g. ``"px"``.
    """
    if not is_real(value) or value < lo or (hi is not None and value > hi):
        rng = f"[{_fmt(lo)}, {_fmt(hi)}]" if hi is not None else f">= {_fmt(lo)}"
        raise SettingsError(
            f"{name} {value!r} must be a finite number {'in ' if hi is not None else ''}{rng}"
            f"{f' ({unit})' if unit else ''}."
        )
    return float(value)


def check_int(name: str, value, lo: int, hi: int | None = None, unit: str = "") -> int:
    """``value`` as int when it is an integer in ``[lo, hi]``; else :class:`SettingsError`."""
    if not is_integer(value) or value < lo or (hi is not None and value > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise SettingsError(
            f"{name} {value!r} must be an integer {'in ' if hi is not None else ''}{rng}"
            f"{f' ({unit})' if unit else ''}."
        )
    return int(value)


def check_choice(name: str, value, choices) -> None:
    """:class:`SettingsError` unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise SettingsError(f"{name} {value!r} is not one of {', '.join(choices)}.")


def check_bool(name: str, value) -> None:
    """:class:`SettingsError` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise SettingsError(f"{name} {value!r} must be true or false.")


def check_fits_image(name: str, value: float, image_shape) -> None:
    """:class:`SettingsError` unless ``value`` (px) is below half the image's shorter side.

    A radius, sigma or distance that large spans the whole image: the result
    is meaningless and the cost grows with the square of the value.
    """
    if image_shape is None or len(image_shape) < 2:
        return
    side = min(int(s) for s in tuple(image_shape)[:2])
    if value and value >= side / 2:
        raise SettingsError(
            f"{name} {_fmt(value)} px must be less than half the image's shorter side "
            f"({side} px / 2 = {_fmt(side / 2)} px)."
        )


def available_memory_bytes() -> int | None:
    """Memory available to this process now (psutil, else ``os.sysconf``); ``None`` if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # psutil missing or unsupported platform
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def memory_budget_bytes(fraction: float = 0.25) -> int | None:
    """``fraction`` of :func:`available_memory_bytes` (``None`` when unknown)."""
    avail = available_memory_bytes()
    return None if avail is None else int(avail * fraction)
