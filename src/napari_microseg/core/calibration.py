"""Physical pixel size of a micrograph and where it came from.

All lengths in napari-microseg are nanometres. A micrograph whose pixel size is
unknown is *uncalibrated*: its unit is ``"px"`` and every measurement says so,
rather than guessing a scale.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation

from .errors import CalibrationError

#: Length units understood in metadata, in nanometres per unit.
NM_PER_UNIT = {
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
    "cm": 1e7,
    "centimeter": 1e7,
    "mm": 1e6,
    "millimeter": 1e6,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "ångström": 0.1,
    "pm": 1e-3,
    "picometer": 1e-3,
    "inch": 2.54e7,
}

#: Where a pixel size can come from, most trusted first.
SOURCE_PRIORITY = (
    "user",
    "sidecar",
    "fei_metadata",
    "sem_metadata",
    "digitalmicrograph",
    "emd",
    "ser",
    "ome",
    "imagej",
    "tiff_resolution",
    "none",
)


def unit_to_nm(unit: str) -> float:
    """Return how many nanometres one ``unit`` is.

    Parameters
    ----------
    unit : str
        A length unit such as ``"nm"``, ``"µm"``, ``"um"``, ``"m"`` or ``"Å"``.

    Raises
    ------
    CalibrationError
        If the unit is not a length unit this module knows.
    """
    key = str(unit).strip().lower()
    if key in NM_PER_UNIT:
        return NM_PER_UNIT[key]
    raise CalibrationError(f"Unknown length unit {unit!r}; expected one of nm, µm, um, m, Å, pm.")


#: Units offered for typing a pixel size, with the spellings each accepts.
PIXEL_SIZE_UNITS = {
    "nm": ("nm", "nanometer", "nanometre"),
    "µm": ("µm", "μm", "um", "micron", "microns", "micrometer", "micrometre"),
    "Å": ("å", "a", "angstrom", "ångström", "angstroem"),
    "pm": ("pm", "picometer", "picometre"),
}

#: Exact nanometres per unit (as decimal strings, so conversion adds no rounding).
_NM_PER_PIXEL_UNIT = {"nm": "1", "µm": "1000", "Å": "0.1", "pm": "0.001"}

_PIXEL_SIZE_RE = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?)\s*"
    r"(?P<unit>[^\s/]*)\s*(?:/\s*(?:px|pixels?|pix))?\s*$"
)


def pixel_size_unit(unit: str) -> str:
    """The canonical name (``"nm"``, ``"µm"``, ``"Å"`` or ``"pm"``) of a typed pixel-size unit.

    Parameters
    ----------
    unit : str
        A spelling such as ``"um"``, ``"A"``, ``"angstrom"`` or ``"nm"`` (case-insensitive;
        an ``"/px"`` suffix is allowed).

    Raises
    ------
    CalibrationError
        If the unit is not one of nm, µm, Å or pm.
    """
    key = str(unit).strip()
    key = re.sub(r"\s*/\s*(px|pixels?|pix)$", "", key, flags=re.IGNORECASE).strip()
    low = key.lower()  # also maps the angstrom sign U+212B to å
    for name, spellings in PIXEL_SIZE_UNITS.items():
        if low in spellings:
            return name
    raise CalibrationError(
        f"Pixel size unit {unit!r} is not understood; use nm, µm (um), Å (A, angstrom) or pm per pixel."
    )


def parse_pixel_size(text: str, unit: str = "nm") -> float:
    """Parse a typed pixel size into nanometres per pixel, keeping every digit typed.

    Parameters
    ----------
    text : str
        The number as typed, optionally followed by a unit and ``/px``:
        ``"0.390625"``, ``"0.390625 nm"``, ``"3.90625 Å/px"``, ``"0.000390625 um"``,
        ``"390.625 pm"``, ``"1e-3 µm"``. A decimal comma (``"0,390625"``) is accepted.
    unit : str
        The unit of a bare number (the dock's unit menu): nm, µm (``"um"``), Å
        (``"A"``, ``"angstrom"``) or pm. A unit written in ``text`` takes precedence.

    Returns
    -------
    float
        Nanometres per pixel. The conversion is done in decimal arithmetic, so
        ``"3.90625 Å"`` gives exactly ``0.390625`` and the typed precision is
        never rounded to a display step.

    Raises
    ------
    CalibrationError
        If the text is not a number with an optional known unit, or the value is
        not positive and finite.
    """
    m = _PIXEL_SIZE_RE.match(str(text))
    if m is None:
        raise CalibrationError(
            f"Pixel size {text!r} is not a number; type e.g. 0.390625 or 0.390625 nm (units nm, µm, Å, pm)."
        )
    name = pixel_size_unit(m.group("unit") or unit)
    try:
        value = Decimal(m.group("num").replace(",", ".")) * Decimal(_NM_PER_PIXEL_UNIT[name])
    except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
        raise CalibrationError(f"Pixel size {text!r} is not a number.") from None
    nm = float(value)
    if not math.isfinite(nm) or nm <= 0:
        raise CalibrationError(f"Pixel size {text!r} must be a positive number of {name} per pixel.")
    return nm


def format_nm(nm: float) -> str:
    """A pixel size in nm with every significant digit (up to 10), e.g. ``"0.390625"``."""
    return f"{nm:.10g}"


@dataclass(frozen=True)
class PixelSize:
    """Isotropic-or-not pixel size in nanometres with its provenance.

    Parameters
    ----------
    y_nm, x_nm : float or None
        Size of one pixel along rows and columns in nm; ``None`` when unknown.
    source : str
        Where the value came from, one of :data:`SOURCE_PRIORITY`.
    detail : str
        Human-readable detail, e.g. the metadata key that held the value.
    """

    y_nm: float | None = None
    x_nm: float | None = None
    source: str = "none"
    detail: str = ""

    def __post_init__(self):
        for name in ("y_nm", "x_nm"):
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise CalibrationError(f"Pixel size {name}={v!r} must be a positive finite number of nm.")
        if (self.y_nm is None) != (self.x_nm is None):
            raise CalibrationError("Pixel size must give both axes or neither.")

    @classmethod
    def uncalibrated(cls, detail: str = "no pixel size in the file's metadata") -> PixelSize:
        """A pixel size that is unknown; lengths are then reported in px."""
        return cls(None, None, "none", detail)

    @classmethod
    def isotropic(cls, nm: float, source: str, detail: str = "") -> PixelSize:
        """Square pixels of ``nm`` nanometres."""
        return cls(float(nm), float(nm), source, detail)

    @property
    def calibrated(self) -> bool:
        """Whether the physical size is known."""
        return self.y_nm is not None

    @property
    def unit(self) -> str:
        """``"nm"`` when calibrated, otherwise ``"px"``."""
        return "nm" if self.calibrated else "px"

    @property
    def scale(self) -> tuple[float, float]:
        """The ``(y, x)`` scale for a napari layer (1, 1 when uncalibrated)."""
        if not self.calibrated:
            return (1.0, 1.0)
        return (self.y_nm, self.x_nm)

    @property
    def area_nm2(self) -> float | None:
        """Area of one pixel in nm², or ``None`` when uncalibrated."""
        return None if not self.calibrated else self.y_nm * self.x_nm

    def to_dict(self) -> dict:
        """JSON-ready representation (inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PixelSize:
        """Rebuild from :meth:`to_dict` output."""
        return cls(d.get("y_nm"), d.get("x_nm"), d.get("source", "none"), d.get("detail", ""))

    def describe(self) -> str:
        """One line such as ``"0.390625 nm/px (fei_metadata: Scan/PixelWidth)"`` (7 significant digits)."""
        if not self.calibrated:
            return f"uncalibrated, lengths in px ({self.detail})" if self.detail else "uncalibrated (px)"
        if math.isclose(self.y_nm, self.x_nm, rel_tol=1e-6):
            val = f"{self.x_nm:.7g} nm/px"
        else:
            val = f"{self.y_nm:.7g} x {self.x_nm:.7g} nm/px (y x)"
        return f"{val} ({self.source}{': ' + self.detail if self.detail else ''})"
