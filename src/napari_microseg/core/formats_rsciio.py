"""Read electron-microscopy formats through RosettaSciIO.

Gatan DigitalMicrograph (``.dm3``, ``.dm4``), FEI/Thermo Fisher Velox or NCEM
EMD (``.emd``, needs h5py) and TIA (``.ser``, ``.emi``) files become a
:class:`~napari_microseg.core.micrograph.Micrograph`: the first 2-D image of the
file, pixels exactly as stored, pixel size in nm from the signal's axes.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .calibration import PixelSize, unit_to_nm
from .errors import CalibrationError, CorruptFileError, InvalidImageError, UnsupportedFormatError
from .micrograph import Micrograph

#: File extension -> (rsciio plugin module, pixel-size source name)
RSCIIO_EXTENSIONS = {
    ".dm3": ("digitalmicrograph", "digitalmicrograph"),
    ".dm4": ("digitalmicrograph", "digitalmicrograph"),
    ".emd": ("emd", "emd"),
    ".ser": ("tia", "ser"),
    ".emi": ("tia", "ser"),
}

_NO_UNIT = {"", "<undefined>", "undefined", "none", "px", "pixel", "pixels"}


def read_rsciio(path, lazy: bool = False) -> Micrograph:
    """Read a DM3/DM4, EMD or TIA SER/EMI micrograph.

    Parameters
    ----------
    path : str or Path
        The file. For ``<base>_1.ser`` the sibling ``<base>.emi`` is used for
        instrument metadata when it exists.
    lazy : bool
        Pass ``lazy=True`` to RosettaSciIO for files too large to load: the
        data is then a dask array.

    Returns
    -------
    Micrograph
        The first 2-D image of the file; ``metadata["warnings"]`` says when
        other signals were ignored (Velox EDS spectra are not even loaded).

    Raises
    ------
    UnsupportedFormatError
        For an extension handled elsewhere, or a missing optional package.
    CorruptFileError
        If RosettaSciIO cannot decode the file.
    InvalidImageError
        If the file holds no 2-D image (spectra only, image stacks, complex data).
    """
    path = Path(path)
    name = path.name
    ext = path.suffix.lower()
    if ext not in RSCIIO_EXTENSIONS:
        raise UnsupportedFormatError(
            f"Cannot read {name}: {ext or 'no'} extension is not a "
            "DigitalMicrograph, EMD or TIA format."
        )
    if not path.is_file():
        raise FileNotFoundError(f"Cannot read {name}: no such file ({path}).")
    plugin, source = RSCIIO_EXTENSIONS[ext]
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        signals = _read_signals(path, plugin, lazy, caught)
    caught += [
        f"RosettaSciIO: {r.message}" for r in records if r.category is not DeprecationWarning
    ]

    index = next((i for i, s in enumerate(signals) if _is_image(s)), None)
    if index is None:
        found = ", ".join(_describe(s) for s in signals) or "nothing"
        raise InvalidImageError(f"Cannot use {name}: it holds no 2-D image (found {found}).")
    signal = signals[index]
    data = _image_data(signal["data"], name)
    warn = list(caught)
    if len(signals) > 1:
        others = [_describe(s) for i, s in enumerate(signals) if i != index]
        warn.append(
            f"{name} holds {len(signals)} signals; using signal {index + 1} "
            f"({_describe(signal)}) and ignoring: {', '.join(others)}."
        )
    metadata = _metadata(plugin, path, signal)
    pixel_size = _pixel_size(signal["axes"], source, metadata["format"], warn)
    metadata["warnings"] = warn
    return Micrograph(data=data, pixel_size=pixel_size, metadata=metadata, path=str(path))


# ------------------------------------------------------------------ reading


def _read_signals(path: Path, plugin: str, lazy: bool, caught: list[str]) -> list[dict]:
    name = path.name
    try:
        if plugin == "digitalmicrograph":
            from rsciio.digitalmicrograph import file_reader
        elif plugin == "emd":
            from rsciio.emd import file_reader
        else:
            from rsciio.tia import file_reader
    except ImportError as exc:  # h5py for EMD, or rsciio itself
        raise UnsupportedFormatError(
            f"Cannot read {name}: the optional package '{exc.name or exc}' is not installed."
        ) from exc
    try:
        if path.suffix.lower() == ".ser":
            emi = _sibling_emi(path)
            if emi is not None:
                try:
                    found = [
                        s
                        for s in file_reader(str(emi), lazy=lazy)
                        if s["metadata"]["General"].get("original_filename") == name
                    ]
                    if found:
                        return found
                except Exception as exc:  # any failure: fall back to the .ser alone
                    caught.append(
                        f"Ignored {emi.name} ({_reason(exc)}); no instrument metadata was read."
                    )
        if plugin == "emd":  # Velox: skip EDS spectrum images (huge, and need `sparse`)
            return list(file_reader(str(path), lazy=lazy, select_type="images"))
        return list(file_reader(str(path), lazy=lazy))
    except ImportError as exc:  # e.g. dask for lazy reading
        raise UnsupportedFormatError(
            f"Cannot read {name}: the optional package '{exc.name or exc}' is not installed."
        ) from exc
    except MemoryError as exc:
        raise CorruptFileError(
            f"Cannot read {name}: file is damaged or truncated (it declares "
            "more data than fits in memory; if intact, open it lazily)."
        ) from exc
    except Exception as exc:  # any decoder failure means a bad file
        raise CorruptFileError(
            f"Cannot read {name}: file is damaged or truncated ({_reason(exc)})."
        ) from exc


def _sibling_emi(path: Path) -> Path | None:
    """``foo_1.ser`` -> ``foo.emi`` when that file exists."""
    base, _, number = path.stem.rpartition("_")
    if not base or not number.isdigit():
        return None
    emi = path.with_name(base + ".emi")
    if not emi.is_file():
        emi = path.with_name(base + ".EMI")
    return emi if emi.is_file() else None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 100 else text[:97] + "..."
    kind = type(exc).__name__
    if kind == "error":  # struct.error and the like
        kind = f"{type(exc).__module__}.error"
    return f"{kind}: {text}" if text else kind


def _sorted_axes(signal: dict) -> list[dict]:
    axes = list(signal.get("axes") or [])
    if all("index_in_array" in a for a in axes):
        axes.sort(key=lambda a: a["index_in_array"])
    return axes


def _is_image(signal: dict) -> bool:
    data, axes = signal["data"], _sorted_axes(signal)
    if getattr(data, "ndim", 0) != 2 or len(axes) != 2:
        return False
    if any(a.get("navigate", False) for a in axes):
        return False
    return np.dtype(data.dtype).kind != "c"


def _describe(signal: dict) -> str:
    data = signal["data"]
    shape = "x".join(str(int(n)) for n in data.shape)
    n_signal = sum(not a.get("navigate", False) for a in signal.get("axes") or [])
    kind = {0: "point", 1: "spectrum", 2: "image"}.get(n_signal, f"{n_signal}-D signal")
    if data.ndim > n_signal:
        kind = {"spectrum": "spectra", "image": "image stack"}.get(kind, kind)
    if np.dtype(data.dtype).kind == "c":
        kind = f"complex {kind}"
    return f"{kind} {shape}"


def _image_data(data, name: str):
    """Turn DM's structured RGBA pixels into ``(Y, X, 3)`` uint8; keep the rest."""
    names = np.dtype(data.dtype).names
    if names:
        if not {"R", "G", "B"} <= set(names):
            raise InvalidImageError(
                f"Cannot use {name}: its pixel type {data.dtype} is not supported."
            )
        data = np.stack([np.asarray(data[c]) for c in "RGB"], axis=-1)
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
    return data


# ---------------------------------------------------------------- calibration


def _pixel_size(axes_in: list[dict], source: str, fmt: str, warn: list[str]) -> PixelSize:
    axes = _sorted_axes({"axes": axes_in})
    nm, parts = [], []
    for axis, label in zip(axes, ("y", "x"), strict=True):
        units = axis.get("units")
        units = "" if units is None else str(units).strip()
        try:
            scale = float(axis.get("scale", 1.0))
        except (TypeError, ValueError):
            scale = float("nan")
        if units.lower() in _NO_UNIT:
            return PixelSize.uncalibrated(f"{fmt} gives no length unit for the {label} axis")
        if math.isfinite(scale) and float(np.float32(scale)) == scale:
            scale = float(str(np.float32(scale)))  # DM stores float32: 0.0015, not 0.0015000000130
        try:
            value = scale * unit_to_nm(units)
        except CalibrationError:
            warn.append(
                f"The {label} axis is calibrated in {units!r}, which is not a length "
                "(diffraction pattern?); lengths are reported in px."
            )
            return PixelSize.uncalibrated(f"{fmt} {label} axis unit {units!r} is not a length")
        if not math.isfinite(value) or value <= 0:
            return PixelSize.uncalibrated(f"{fmt} {label} axis scale {scale!r} is not positive")
        nm.append(value)
        parts.append(f"{label} {scale:.6g} {units}")
    if len(nm) != 2:
        return PixelSize.uncalibrated(f"{fmt} gives no spatial axes")
    return PixelSize(nm[0], nm[1], source, f"{fmt} axes: {', '.join(parts)}")


# ----------------------------------------------------------------- metadata


def _get(tree, *keys, default=None):
    """``tree[k0][k1]...`` or ``default``; empty strings/lists count as missing."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return default
        tree = tree[key]
    if tree is None or (isinstance(tree, (str, list, tuple)) and len(tree) == 0):
        return default
    return tree


def _number(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _json_safe(obj, depth: int = 0):
    """A small JSON-ready copy: depth 4, 40 keys, 16 list items, 200 characters."""
    if isinstance(obj, dict):
        if depth >= 4:
            return "{...}"
        items = list(obj.items())[:40]
        return {str(k): _json_safe(v, depth + 1) for k, v in items}
    if isinstance(obj, (list, tuple, np.ndarray)):
        seq = list(obj[:16]) if not isinstance(obj, np.ndarray) or obj.size <= 16 else None
        return "[...]" if seq is None or depth >= 4 else [_json_safe(v, depth + 1) for v in seq]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, bytes):
        obj = obj.decode("utf-8", "replace")
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    return str(obj)[:200]


def _metadata(plugin: str, path: Path, signal: dict) -> dict:
    om = signal.get("original_metadata") or {}
    title = _text(_get(signal, "metadata", "General", "title"))
    if plugin == "digitalmicrograph":
        md = _dm_metadata(path, om, title)
    elif plugin == "emd":
        md = _emd_metadata(om, title)
    else:
        md = _tia_metadata(om)
    if title:
        md.setdefault("title", title)
    return {k: v for k, v in md.items() if v is not None}


def _dm_metadata(path: Path, om: dict, title: str | None) -> dict:
    try:
        with open(path, "rb") as f:
            version = int.from_bytes(f.read(4), "big")
    except OSError:
        version = 0
    fmt = f"DigitalMicrograph DM{version}" if version in (3, 4) else "DigitalMicrograph"
    tags = _get(om, "ImageList", "TagGroup0", "ImageTags", default={})
    info = _get(tags, "Microscope Info", default={})
    voltage = _number(_get(info, "Voltage"))
    instrument = None
    for keys in (
        ("Session Info", "Microscope"),
        ("Microscope Info", "Name"),
        ("Microscope Info", "Microscope"),
    ):
        instrument = instrument or _text(_get(tags, *keys))
    detector = _text(_get(tags, "Acquisition", "Device", "Name"))
    if detector is None and "DigiScan" in tags:
        detector = title
    mode = (_text(_get(info, "Illumination Mode")) or "").upper()
    signal = _text(_get(tags, "Meta Data", "Signal"))
    if signal is None and mode:
        if "STEM" in mode:
            signal = detector or "STEM"
        elif "SEM" in mode:
            signal = "SEM"
        else:
            diffraction = (_text(_get(info, "Imaging Mode")) or "").upper() == "DIFFRACTION"
            signal = "TEM diffraction" if diffraction else "TEM"
    excerpt = {k: tags[k] for k in ("Microscope Info", "Session Info") if k in tags}
    return {
        "format": fmt,
        "accelerating_voltage_kv": voltage / 1e3 if voltage else None,
        "magnification": _number(_get(info, "Indicated Magnification")),
        "detector": detector,
        "instrument": instrument,
        "signal": signal,
        "original_metadata_excerpt": _json_safe(excerpt),
    }


def _emd_metadata(om: dict, title: str | None) -> dict:
    if "BinaryResult" not in om and "Optics" not in om:  # NCEM/Berkeley EMD
        return {
            "format": "EMD (NCEM)",
            "original_metadata_excerpt": _json_safe(
                {k: v for k, v in om.items() if not isinstance(v, dict)}
            ),
        }
    index = _get(om, "BinaryResult", "DetectorIndex")
    det = _get(om, "Detectors", f"Detector-{index}", default={}) if index is not None else {}
    detector = _text(_get(om, "BinaryResult", "Detector")) or _text(_get(det, "DetectorName"))
    detector = detector or title
    det_type = _text(_get(det, "DetectorType")) or ""
    signal = "TEM" if det_type == "ImagingDetector" else detector
    voltage = _number(_get(om, "Optics", "AccelerationVoltage"))
    magnification = _number(_get(om, "CustomProperties", "StemMagnification", "value"))
    if magnification is None:
        magnification = _number(_get(om, "Optics", "NominalMagnification"))
    instrument = " ".join(
        t
        for t in (
            _text(_get(om, "Instrument", "Manufacturer")),
            _text(_get(om, "Instrument", "InstrumentModel")),
        )
        if t
    )
    excerpt = {k: om[k] for k in ("Instrument", "Optics", "BinaryResult") if k in om}
    if det:
        excerpt["Detector"] = det
    return {
        "format": "Velox EMD",
        "accelerating_voltage_kv": voltage / 1e3 if voltage else None,
        "magnification": magnification,
        "detector": detector,
        "instrument": instrument or _text(_get(om, "Instrument", "InstrumentClass")),
        "signal": signal,
        "original_metadata_excerpt": _json_safe(excerpt),
    }


def _tia_metadata(om: dict) -> dict:
    desc = _get(om, "ObjectInfo", "ExperimentalDescription", default={})
    microscope = _text(_get(desc, "Microscope"))
    if microscope and microscope.startswith("Microscope "):
        microscope = microscope[len("Microscope ") :]
    mode = _text(_get(desc, "Mode")) or ""
    signal = ("STEM" if "STEM" in mode else "TEM") if mode else None
    detector = _text(_get(om, "ObjectInfo", "AcquireInfo", "CameraNamePath"))
    header = _get(om, "ser_header_parameters", default={})
    excerpt = (
        {"ExperimentalDescription": desc}
        if desc
        else {
            "ser_header": {k: v for k, v in header.items() if not isinstance(v, (np.ndarray, list))}
        }
    )
    return {
        "format": "TIA SER",
        "accelerating_voltage_kv": _number(_get(desc, "High tension_kV")),
        "magnification": _number(_get(desc, "Magnification_x")),
        "detector": detector,
        "instrument": microscope,
        "signal": signal,
        "original_metadata_excerpt": _json_safe(excerpt),
    }


def rsciio_extensions() -> tuple[str, ...]:
    """Extensions :func:`read_rsciio` handles, lower case with the dot."""
    return tuple(RSCIIO_EXTENSIONS)


__all__ = ["RSCIIO_EXTENSIONS", "read_rsciio", "rsciio_extensions"]
