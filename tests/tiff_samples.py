"""Writers for instrument-style TIFF test files (tifffile, no vendor software)."""

from __future__ import annotations

import numpy as np
import tifffile


def fei_ini(pixel_m: float, hv_v: float = 5000.0, scan_rows: int | None = None, detector="TLD") -> str:
    """Text of a Thermo Fisher/FEI HELIOS metadata block (INI style)."""
    lines = [
        "[User]", "Date=01/02/2024", "[System]", "SystemType=Helios G4 UX",
        "[Beam]", f"HV={hv_v:g}", "[EBeam]", f"HV={hv_v:g}", "HFW=1.2e-06",
        "[Scan]", f"PixelWidth={pixel_m:.6e}", f"PixelHeight={pixel_m:.6e}",
        "[Detectors]", f"Name={detector}", "Mode=SE",
    ]
    if scan_rows is not None:
        lines += ["[Image]", "ResolutionX=1024", f"ResolutionY={scan_rows}"]
    return "\r\n".join(lines) + "\r\n"


def write_fei_tiff(path, data, pixel_m: float, **kwargs) -> None:
    """A TIFF with FEI_HELIOS tag 34682, as Thermo Fisher SEMs write it."""
    tifffile.imwrite(path, data, extratags=[(34682, "s", 0, fei_ini(pixel_m, **kwargs), True)])


def write_zeiss_tiff(path, data, pixel_nm: float, kv: float = 20.0, mag: str = "10.00 K X") -> None:
    """A TIFF with Zeiss CZ_SEM tag 34118."""
    text = "\r\n".join([
        "0", "0",
        "AP_IMAGE_PIXEL_SIZE", f"Image Pixel Size = {pixel_nm:g} nm",
        "AP_ACTUALKV", f"EHT = {kv:.2f} kV",
        "AP_MAG", f"Mag = {mag}",
        "DP_DETECTOR_TYPE", "Detector = SE2",
    ]) + "\r\n"
    tifffile.imwrite(path, data, extratags=[(34118, "s", 0, text, True)])


def sem_with_bar(ny=600, nx=512, bar=64, seed=0) -> np.ndarray:
    """A noisy SEM-like uint8 image whose bottom ``bar`` rows are a data bar."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(120, 25, (ny, nx)), 0, 255).astype(np.uint8)
    img[ny - bar :] = 0
    img[ny - bar + 10 : ny - bar + 22, 20:200] = 255  # "text"
    img[ny - bar + 30 : ny - bar + 34, 300:460] = 255  # scale bar
    return img
