"""parse_pixel_size: a typed pixel size keeps every digit and converts units exactly."""

from __future__ import annotations

import pytest

from napari_microseg.core.calibration import format_nm, parse_pixel_size, pixel_size_unit
from napari_microseg.core.errors import CalibrationError, MicrosegError


@pytest.mark.parametrize(
    ("text", "unit", "nm"),
    [
        ("0.390625", "nm", 0.390625),
        ("0.478516", "nm", 0.478516),
        ("0.390625 nm", "µm", 0.390625),  # a unit in the text wins over the menu
        ("0.390625nm/px", "nm", 0.390625),
        ("3.90625 Å", "nm", 0.390625),
        ("3.90625 A/px", "nm", 0.390625),
        ("3.90625 angstrom", "nm", 0.390625),
        ("3.90625 \u212b", "nm", 0.390625),  # the angstrom sign
        ("3.90625", "A", 0.390625),
        ("390.625 pm", "nm", 0.390625),
        ("0.000390625", "um", 0.390625),
        ("0.000390625 µm", "nm", 0.390625),
        ("0.000390625 μm", "nm", 0.390625),  # Greek mu
        ("0,390625", "nm", 0.390625),  # decimal comma
        ("  1.23456789  ", "nm", 1.23456789),
        ("3.9e-1", "nm", 0.39),
        ("2", "µm", 2000.0),
    ],
)
def test_parse_keeps_precision_and_converts_exactly(text, unit, nm):
    assert parse_pixel_size(text, unit) == nm  # exact, not approx


def test_six_significant_digits_survive_every_unit():
    for text, unit in (("0.390625", "nm"), ("0.000390625", "um"), ("3.90625", "Å"), ("390.625", "pm")):
        assert format_nm(parse_pixel_size(text, unit)) == "0.390625"


@pytest.mark.parametrize("text", ["", "abc", "0", "-0.4", "1 nm nm", "inf", "nan", "1e400", "0.4 furlong"])
def test_parse_refuses_bad_text_with_one_line(text):
    with pytest.raises(CalibrationError) as e:
        parse_pixel_size(text, "nm")
    assert isinstance(e.value, MicrosegError) and "\n" not in str(e.value) and "ixel size" in str(e.value)


def test_unit_names():
    assert pixel_size_unit("um") == "µm" and pixel_size_unit("angstrom") == "Å"
    assert pixel_size_unit("A") == "Å" and pixel_size_unit("pm/px") == "pm"
    with pytest.raises(CalibrationError):
        pixel_size_unit("m")
