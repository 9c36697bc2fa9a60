"""Pixel size and instrument metadata from TIFF tags (via tifffile).

Every source a TIFF can carry is read into a list of candidate
:class:`PixelSize` values; :func:`napari_microseg.core.reading.choose_pixel_size`
then picks the most trusted one and reports disagreements.

Sources, most trusted first: Thermo Fisher/FEI ``fei_metadata`` (SFEG/HELIOS
tags), Zeiss ``sem_metadata`` (CZ_SEM tag), OME-XML, ImageJ, and plain TIFF
resolution tags (ignored when they hold a display default such as 72 dpi).
"""

from __future__ import annotations

import contextlib
import math
import xml.etree.ElementTree as ET

import tifffile

from .calibration import PixelSize, unit_to_nm
from .errors import CalibrationError

#: Resolutions (pixels per inch) that image programs write as a display
#: default; they say nothing about the specimen.
DISPLAY_DEFAULT_DPI = (1.0, 72.0, 96.0, 150.0, 300.0, 600.0)
#: Plausible FEI ``[Scan] PixelWidth/PixelHeight`` values (m): 0.1 pm to 1 mm per pixel.
FEI_PIXEL_RANGE_M = (1e-13, 1e-3)


def _ratio(value) -> float:
    """A TIFF RATIONAL (tuple) or number as float."""
    if isinstance(value, tuple):
        num, den = value
        return num / den if den else float("nan")
    return float(value)


def _fei_pixel_m(scan: dict, key: str) -> tuple[float | None, str | None]:
    """``(metres, None)`` for a plausible ``[Scan] key``, ``(None, warning)`` otherwise."""
    raw = scan[key]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    lo, hi = FEI_PIXEL_RANGE_M
    if math.isfinite(value) and lo <= value <= hi:
        return value, None
    shown = f"{raw:g}" if isinstance(raw, (int, float)) and not isinstance(raw, bool) else repr(raw)
    return None, (
        f"FEI metadata [Scan] {key}={shown} is not a pixel size in m between {lo:g} and {hi:g}; "
        "it was ignored (the image is uncalibrated unless another source gives a pixel size)."
    )


def fei_calibration(fei: dict) -> tuple[list[PixelSize], dict]:
    """Pixel size and instrument fields from Thermo Fisher/FEI metadata.

    A ``PixelWidth``/``PixelHeight`` that is not a finite number between
    :data:`FEI_PIXEL_RANGE_M` (0, negative, NaN, 1e10, text) is ignored with a
    one-line message in ``info["warnings"]``.
    """
    cands, info = [], {"instrument": "Thermo Fisher/FEI"}
    scan = fei.get("Scan", {}) or {}
    if "PixelWidth" in scan:
        pw, bad = _fei_pixel_m(scan, "PixelWidth")
        if bad is None and "PixelHeight" in scan:
            ph, bad = _fei_pixel_m(scan, "PixelHeight")
        else:
            ph = pw
        if bad is not None:
            info["warnings"] = [bad]
        else:
            with contextlib.suppress(CalibrationError):
                cands.append(PixelSize(ph * 1e9, pw * 1e9, "fei_metadata",
                                       "[Scan] PixelWidth/PixelHeight (m)"))
    for section in ("Beam", "EBeam", "IBeam"):
        hv = (fei.get(section) or {}).get("HV")
        if isinstance(hv, (int, float)) and hv > 0:
            info["accelerating_voltage_kv"] = hv / 1000.0
            break
    det = fei.get("Detectors") or {}
    name = det.get("Name") or det.get("Mode")
    if name:
        info["detector"] = str(name) + (f" ({det['Mode']})" if det.get("Mode") and det.get("Name") else "")
    system = fei.get("System") or {}
    if system.get("SystemType"):
        info["instrument"] = f"Thermo Fisher/FEI {system['SystemType']}"
    hfw = (fei.get("EBeam") or {}).get("HFW") or scan.get("HorFieldsize")
    if isinstance(hfw, (int, float)) and hfw > 0:
        info["horizontal_field_width_um"] = hfw * 1e6
    image = fei.get("Image") or {}
    if isinstance(image.get("ResolutionY"), int):
        info["scan_rows"] = int(image["ResolutionY"])
    info["signal"] = "SEM"
    return cands, info


def _zeiss_value(sem: dict, key: str):
    entry = sem.get(key)
    if not isinstance(entry, tuple) or len(entry) < 2:
        return None, None
    return entry[1], (entry[2] if len(entry) > 2 else None)


def zeiss_calibration(sem: dict) -> tuple[list[PixelSize], dict]:
    """Pixel size and instrument fields from the Zeiss CZ_SEM tag."""
    cands, info = [], {"instrument": "Zeiss SEM", "signal": "SEM"}
    value, unit = _zeiss_value(sem, "ap_image_pixel_size")
    if isinstance(value, (int, float)) and value > 0:
        try:
            nm = value * unit_to_nm(unit or "nm")
            cands.append(PixelSize.isotropic(nm, "sem_metadata", f"AP_IMAGE_PIXEL_SIZE ({value} {unit})"))
        except CalibrationError:
            pass
    kv, kv_unit = _zeiss_value(sem, "ap_actualkv")
    if isinstance(kv, (int, float)):
        info["accelerating_voltage_kv"] = kv / 1000.0 if (kv_unit or "").lower() == "v" else float(kv)
    mag, _ = _zeiss_value(sem, "ap_mag")
    if mag is not None:
        info["magnification"] = mag if isinstance(mag, (int, float)) else str(mag)
    for key in ("dp_detector_type", "dp_detector_channel", "dp_detector"):
        det, _ = _zeiss_value(sem, key)
        if det:
            info["detector"] = str(det)
            break
    return cands, info


def ome_calibration(ome_xml: str) -> list[PixelSize]:
    """Pixel size from OME-XML ``PhysicalSizeX/Y`` (default unit µm)."""
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return []
    for el in root.iter():
        if el.tag.endswith("Pixels"):
            x, y = el.get("PhysicalSizeX"), el.get("PhysicalSizeY")
            if x is None:
                return []
            try:
                xu = unit_to_nm(el.get("PhysicalSizeXUnit", "µm"))
                yu = unit_to_nm(el.get("PhysicalSizeYUnit", el.get("PhysicalSizeXUnit", "µm")))
                y = x if y is None else y
                return [PixelSize(float(y) * yu, float(x) * xu, "ome", "OME Pixels PhysicalSizeX/Y")]
            except (ValueError, CalibrationError):
                return []
    return []


def _imagej_unit(unit: str) -> str:
    unit = str(unit).strip()
    # ImageJ escapes non-ASCII units, e.g. "\\u00B5m" for µm.
    if "\\u" in unit:
        unit = unit.encode("ascii", "backslashreplace").decode("unicode_escape")
    return unit


def resolution_calibration(page: tifffile.TiffPage, imagej: dict | None) -> list[PixelSize]:
    """Pixel size from X/YResolution tags, with the ImageJ unit when present."""
    tags = page.tags
    if "XResolution" not in tags:
        return []
    xres = _ratio(tags["XResolution"].value)
    yres = _ratio(tags["YResolution"].value) if "YResolution" in tags else xres
    if not (xres > 0 and yres > 0 and math.isfinite(xres) and math.isfinite(yres)):
        return []
    if imagej and imagej.get("unit"):
        unit = _imagej_unit(imagej["unit"])
        if unit.lower() in ("pixel", "pixels", "px", ""):
            return []
        try:
            per = unit_to_nm(unit)
        except CalibrationError:
            return []
        return [PixelSize(per / yres, per / xres, "imagej", f"ImageJ resolution, unit {unit!r}")]
    resunit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    if resunit == 2:  # inch
        if xres in DISPLAY_DEFAULT_DPI:
            return []
        return [PixelSize(2.54e7 / yres, 2.54e7 / xres, "tiff_resolution", "X/YResolution per inch")]
    if resunit == 3:  # centimetre
        return [PixelSize(1e7 / yres, 1e7 / xres, "tiff_resolution", "X/YResolution per cm")]
    return []


def tiff_calibration(tif: tifffile.TiffFile) -> tuple[list[PixelSize], dict]:
    """All pixel-size candidates and instrument metadata of an open TIFF.

    Returns
    -------
    candidates : list of PixelSize
        One per source found, in no particular order.
    info : dict
        ``instrument``, ``accelerating_voltage_kv``, ``magnification``,
        ``detector``, ``signal``, ``scan_rows`` where present.
    """
    cands: list[PixelSize] = []
    info: dict = {}
    fei = tif.fei_metadata if tif.is_fei else None
    if fei:
        c, i = fei_calibration(fei)
        cands += c
        info.update(i)
    sem = tif.sem_metadata if tif.is_sem else None
    if sem:
        c, i = zeiss_calibration(sem)
        cands += c
        info.update(i)
    if tif.is_ome and tif.ome_metadata:
        cands += ome_calibration(tif.ome_metadata)
    imagej = tif.imagej_metadata if tif.is_imagej else None
    cands += resolution_calibration(tif.pages.first, imagej)
    return cands, info
