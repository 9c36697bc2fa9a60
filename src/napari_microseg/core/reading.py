"""Read a micrograph with its physical calibration: :func:`read_micrograph`.

Formats: TIFF (ImageJ, OME, Thermo/FEI, Zeiss, resolution tags) through
tifffile; DM3/DM4, Velox EMD and TIA SER through rosettasciio; PNG, JPEG and
BMP through Pillow. Pixels are returned exactly as stored (no rescale).

The pixel size is taken, most trusted first, from an explicit override, a
sidecar file (``<image>.microseg.json`` or ``microseg.json`` in the folder),
the instrument's metadata, OME, ImageJ and TIFF resolution tags. When sources
disagree by more than 1 % the most trusted wins and a warning says so. With no
source the micrograph is uncalibrated and lengths are in px.
"""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path

import numpy as np

from .calibration import SOURCE_PRIORITY, PixelSize
from .errors import CalibrationError, CorruptFileError, InvalidImageError, UnsupportedFormatError
from .infobar import detect_info_bar
from .micrograph import Micrograph, check_declared_size

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
RSCIIO_SUFFIXES = (".dm3", ".dm4", ".emd", ".ser")
SUPPORTED_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES + RSCIIO_SUFFIXES

#: Images smaller than this along either axis are refused.
MIN_SIDE = 8
#: Images with more pixels than this are opened lazily when the format allows.
LAZY_PIXELS = 2**27


def is_supported(path) -> bool:
    """Whether ``path`` has a suffix napari-microseg reads."""
    return Path(str(path)).suffix.lower() in SUPPORTED_SUFFIXES


def read_micrograph(
    path,
    *,
    pixel_size_nm: float | None = None,
    as_grey: bool = False,
    detect_bar: bool | str = "auto",
    lazy: bool | None = None,
) -> Micrograph:
    """Read a micrograph and its calibration.

    Parameters
    ----------
    path : str or Path
        The image file.
    pixel_size_nm : float, optional
        Override the pixel size (source ``"user"``), e.g. when the metadata
        lacks it.
    as_grey : bool
        Convert RGB(A) to grey with luminance weights, keeping the dtype's
        range. Colour images whose channels are identical are always reduced
        to grey (lossless, noted in the metadata).
    detect_bar : bool or "auto"
        Exclude an SEM information bar from the analysis mask. ``"auto"`` looks
        for one only in Thermo/FEI and Zeiss SEM files.
    lazy : bool, optional
        Open without loading into memory (TIFF only). Default: only images
        above :data:`LAZY_PIXELS` pixels.

    Returns
    -------
    Micrograph

    Raises
    ------
    UnsupportedFormatError, CorruptFileError, InvalidImageError, CalibrationError
        With a message naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}")
    if path.is_dir():
        raise UnsupportedFormatError(f"{path.name} is a folder, not an image file.")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedFormatError(
            f"{path.name}: unsupported format {suffix or '(no suffix)'}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}."
        )
    if path.stat().st_size == 0:
        raise CorruptFileError(f"{path.name} is empty (0 bytes).")

    if suffix in TIFF_SUFFIXES:
        from .tiff_reading import read_tiff

        mg = read_tiff(path, lazy=lazy, lazy_pixels=LAZY_PIXELS)
    elif suffix in PIL_SUFFIXES:
        mg = read_pil(path)
    else:
        from .formats_rsciio import read_rsciio

        mg = read_rsciio(path)
    mg.path = str(path)
    _check_shape(mg, path)
    _tidy_channels(mg, as_grey)
    _apply_calibration(mg, path, pixel_size_nm)
    _mask_non_finite(mg)
    _exclude_info_bar(mg, detect_bar)
    return mg


def read_pil(path: Path) -> Micrograph:
    """Read PNG/JPEG/BMP with Pillow, keeping 8/16-bit values as stored."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode == "1":
                im = im.convert("L")
            elif mode in ("LA", "PA"):
                im = im.convert("RGBA")
            elif mode == "CMYK":
                im = im.convert("RGB")
            data = np.asarray(im)
            if mode.startswith("I;16"):
                data = data.astype(np.uint16)
    except Image.DecompressionBombError as e:
        raise InvalidImageError(f"{path.name}: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptFileError(f"Cannot read {path.name}: file is damaged or not a {path.suffix[1:].upper()} ({e}).") from e
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), path.suffix[1:].upper())
    return Micrograph(data=data, metadata={"format": fmt, "pil_mode": mode, "warnings": []})


def _check_shape(mg: Micrograph, path: Path) -> None:
    shape = mg.shape
    if len(shape) < 2 or len(shape) > 3:
        raise InvalidImageError(f"{path.name}: expected a 2-D image, got an array of shape {shape}.")
    if len(shape) == 3 and shape[-1] not in (3, 4):
        raise InvalidImageError(
            f"{path.name}: holds a stack of {shape[0]} images; open one frame at a time."
        )
    ny, nx = shape[:2]
    if min(ny, nx) < MIN_SIDE:
        raise InvalidImageError(
            f"{path.name}: image is {ny} x {nx} px, too small to analyse (minimum {MIN_SIDE} x {MIN_SIDE})."
        )
    # every format: no more pixels than can be analysed (TIFF checks this before reading)
    check_declared_size(path.name, shape, mg.data.dtype, eager=False)
    if np.dtype(mg.data.dtype).kind == "c":
        raise InvalidImageError(f"{path.name}: complex-valued data (e.g. an FFT) is not a micrograph.")


def _tidy_channels(mg: Micrograph, as_grey: bool) -> None:
    if not mg.is_rgb:
        return
    data = np.asarray(mg.data)
    rgb = data[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        mg.data = np.ascontiguousarray(rgb[..., 0])
        mg.metadata["converted_to_grey"] = "identical RGB channels reduced to one (lossless)"
    elif as_grey:
        grey = rgb.astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])
        if data.dtype.kind in "ui":
            grey = np.clip(np.round(grey), np.iinfo(data.dtype).min, np.iinfo(data.dtype).max)
        mg.data = grey.astype(data.dtype)
        mg.metadata["converted_to_grey"] = "luminance 0.2125 R + 0.7154 G + 0.0721 B"


def read_sidecar(path: Path) -> PixelSize | None:
    """Pixel size from ``<image>.microseg.json`` or the folder's ``microseg.json``.

    The per-image file holds ``{"pixel_size_nm": 0.39}``. The folder file holds
    the same key for every image, or ``{"patterns": {"*.png": 0.39}}``.
    """
    own = path.with_name(path.name + ".microseg.json")
    folder = path.with_name("microseg.json")
    for f in (own, folder):
        if not f.exists():
            continue
        try:
            d = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CalibrationError(f"Cannot read the calibration sidecar {f.name}: {e}") from e
        value = d.get("pixel_size_nm")
        if f is folder:
            for pattern, v in (d.get("patterns") or {}).items():
                if fnmatch.fnmatch(path.name, pattern):
                    value = v
                    break
        if value is not None:
            try:
                return PixelSize.isotropic(float(value), "sidecar", f.name)
            except (TypeError, ValueError) as e:
                raise CalibrationError(f"{f.name}: pixel_size_nm must be a number, got {value!r}.") from e
    return None


def choose_pixel_size(candidates: list[PixelSize]) -> tuple[PixelSize, list[str]]:
    """Pick the most trusted candidate; warn when others disagree by > 1 %.

    Returns
    -------
    pixel_size : PixelSize
        The chosen value, or uncalibrated when ``candidates`` is empty.
    warnings : list of str
        One line per contradicting source.
    """
    cands = [c for c in candidates if c.calibrated]
    if not cands:
        return PixelSize.uncalibrated(), []
    cands.sort(key=lambda c: SOURCE_PRIORITY.index(c.source))
    best, warnings = cands[0], []
    for other in cands[1:]:
        if not (math.isclose(other.x_nm, best.x_nm, rel_tol=0.01) and math.isclose(other.y_nm, best.y_nm, rel_tol=0.01)):
            warnings.append(
                f"Contradictory pixel sizes: {best.source} gives {best.x_nm:.4g} nm/px but "
                f"{other.source} gives {other.x_nm:.4g} nm/px; using {best.source}."
            )
    return best, warnings


def _apply_calibration(mg: Micrograph, path: Path, override: float | None) -> None:
    cands = list(mg.metadata.pop("_calibration_candidates", []))
    if mg.pixel_size.calibrated:
        cands.append(mg.pixel_size)
    side = read_sidecar(path)
    if side is not None:
        cands.append(side)
    if override is not None:
        try:
            cands.append(PixelSize.isotropic(float(override), "user", "set by the user"))
        except (TypeError, ValueError) as e:
            raise CalibrationError(f"Pixel size override must be a number of nm, got {override!r}.") from e
    chosen, warnings = choose_pixel_size(cands)
    if not chosen.calibrated and mg.pixel_size.detail:
        chosen = mg.pixel_size
    elif not chosen.calibrated:
        chosen = PixelSize.uncalibrated(f"no pixel size in {path.name}; set one in the Calibration dock or a sidecar")
    mg.pixel_size = chosen
    mg.metadata["calibration_sources"] = [c.to_dict() for c in cands]
    mg.warnings.extend(warnings)
    if not chosen.calibrated:
        mg.warnings.append(f"{path.name} is uncalibrated: sizes are reported in px.")


def _mask_non_finite(mg: Micrograph) -> None:
    if np.dtype(mg.data.dtype).kind != "f" or not isinstance(mg.data, np.ndarray):
        return
    finite = np.isfinite(mg.data if not mg.is_rgb else mg.data[..., :3]).reshape(mg.shape[:2] + (-1,)).all(-1)
    n_bad = finite.size - int(np.count_nonzero(finite))
    if n_bad == 0:
        return
    if n_bad == finite.size:
        raise InvalidImageError(f"{Path(mg.path).name}: every pixel is NaN or infinite.")
    mg.analysis_mask = finite if mg.analysis_mask is None else (mg.analysis_mask & finite)
    mg.metadata["non_finite_pixels"] = n_bad
    mg.warnings.append(f"{n_bad} NaN/infinite pixels are excluded from analysis (data kept as is).")


def _exclude_info_bar(mg: Micrograph, detect_bar: bool | str) -> None:
    if detect_bar == "auto":
        detect_bar = mg.metadata.get("signal") == "SEM"
    if not detect_bar or not isinstance(mg.data, np.ndarray):
        return
    bar = detect_info_bar(mg.data, scan_rows=mg.metadata.get("scan_rows"))
    if bar is None:
        return
    mask = bar.mask(mg.shape[:2])
    mg.analysis_mask = mask if mg.analysis_mask is None else (mg.analysis_mask & mask)
    mg.metadata["info_bar"] = bar.to_dict()
