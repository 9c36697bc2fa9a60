"""argparse ``type=`` functions that refuse out-of-range flags with the core's own bounds.

``p.add_argument("--open", type=bounded_int(0, RADIUS_MAX, "px"))`` makes
``--open -1`` an argparse error (one line, exit 2) before any model is loaded,
with the same range :mod:`napari_microseg.core.bounds` gives the settings.
"""

from __future__ import annotations

import argparse

from ..core import bounds


def _message(e: bounds.SettingsError) -> str:
    return str(e).strip()


def bounded_int(lo: int, hi: int | None = None, unit: str = ""):
    """A ``type=`` callable: an integer in ``[lo, hi]`` (``hi=None``: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = text
        try:
            return bounds.check_int("", value, lo, hi, unit)
        except bounds.SettingsError as e:
            raise argparse.ArgumentTypeError(_message(e)) from None

    parse.__name__ = "integer"
    return parse


def bounded_float(lo: float, hi: float | None = None, unit: str = ""):
    """A ``type=`` callable: a finite number in ``[lo, hi]`` (``hi=None``: no upper bound)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = text
        try:
            return bounds.check_real("", value, lo, hi, unit)
        except bounds.SettingsError as e:
            raise argparse.ArgumentTypeError(_message(e)) from None

    parse.__name__ = "number"
    return parse
