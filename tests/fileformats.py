"""Writers of minimal microscopy files for tests (not a test module).

RosettaSciIO cannot write DigitalMicrograph, TIA or Velox files and ships no
test data in its wheel, so the tests build small, spec-conformant files here:

* :func:`write_dm` - Gatan DigitalMicrograph DM3/DM4 (layout after C. Boothroyd's
  description: big-endian tag headers, little-endian tag data, a thumbnail as
  the first ``ImageList`` entry, as DigitalMicrograph itself writes).
* :func:`write_ser` / :func:`write_emi` - FEI/TIA ``.ser`` holding one 2-D image
  element, and the companion ``.emi`` whose XML ``ObjectInfo`` block carries the
  microscope settings.
* :func:`write_velox_emd` - Velox EMD (HDF5; needs h5py) with one image.
"""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------- DM

#: numpy dtype -> (DM tag encoding of one element, DM image DataType code)
_DM_TYPES = {
    np.dtype(np.int16): (2, 1),
    np.dtype(np.float32): (6, 2),
    np.dtype(np.uint8): (10, 6),
    np.dtype(np.int32): (3, 7),
    np.dtype(np.uint16): (4, 10),
    np.dtype(np.uint32): (5, 11),
    np.dtype(np.float64): (7, 12),
}
#: DM tag encoding -> struct format of one little-endian element
_DM_FMT = {2: "h", 3: "l", 4: "H", 5: "L", 6: "f", 7: "d", 8: "B", 10: "B", 11: "q", 12: "Q"}


class _Leaf:
    """One DM data tag: an encoded-type ``info`` list and its payload bytes."""

    def __init__(self, info, payload):
        self.info = info
        self.payload = payload


def _scalar(code, value):
    return _Leaf([code], struct.pack("<" + _DM_FMT[code], value))


def _f32(value):
    return _scalar(6, value)


def _string(text):
    """DM stores tag strings as arrays of uint16 code points."""
    codes = np.array([ord(c) for c in text], dtype="<u2")
    return _Leaf([20, 4, codes.size], codes.tobytes())


def _array(arr, code=None):
    arr = np.ascontiguousarray(arr)
    code = _DM_TYPES[arr.dtype][0] if code is None else code
    return _Leaf([20, code, arr.size], arr.astype(arr.dtype.newbyteorder("<")).tobytes())


def _as_leaf(value):
    if isinstance(value, _Leaf):
        return value
    if isinstance(value, bool):
        return _scalar(8, int(value))
    if isinstance(value, int):
        return _scalar(3, value)
    if isinstance(value, float):
        return _scalar(7, value)
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"cannot encode {value!r} as a DM tag")


def _int(value, version):
    return struct.pack(">l" if version == 3 else ">q", value)


def _group_body(group, version):
    """Sorted/open flags, tag count, then each tag; ``list`` groups are unnamed."""
    entries = list(group.items()) if isinstance(group, dict) else [("", v) for v in group]
    out = [b"\x01\x00", _int(len(entries), version)]
    out += [_tag(name, value, version) for name, value in entries]
    return b"".join(out)


def _tag(name, value, version):
    raw = name.encode("latin-1")
    is_group = isinstance(value, (dict, list))
    head = bytes([20 if is_group else 21]) + struct.pack(">H", len(raw)) + raw
    if is_group:
        body = _group_body(value, version)
    else:
        leaf = _as_leaf(value)
        info = b"".join(_int(i, version) for i in leaf.info)
        body = b"%%%%" + _int(len(leaf.info), version) + info + leaf.payload
    if version == 4:  # DM4 gives the byte size of every tag after its name
        head += struct.pack(">q", len(body))
    return head + body


def _calibration(scale, origin, units):
    return {"Origin": _f32(origin), "Scale": _f32(scale), "Units": units}


def _dm_image(data, scales, units, image_tags, name):
    """The tag group of one image; ``scales`` are ordered like ``data.shape``."""
    data = np.asarray(data)
    if data.dtype not in _DM_TYPES:
        raise TypeError(f"write_dm does not support dtype {data.dtype}")
    code, dm_type = _DM_TYPES[data.dtype]
    dims = [_calibration(s, 0.0, units) for s in reversed(scales)]  # DM lists x first
    return {
        "ImageData": {
            "Calibrations": {
                "Brightness": _calibration(1.0, 0.0, "Counts"),
                "Dimension": dims,
                "DisplayCalibratedUnits": True,
            },
            "Data": _array(data.ravel(), code),
            "DataType": dm_type,
            "Dimensions": [int(n) for n in reversed(data.shape)],
            "PixelDepth": int(data.dtype.itemsize),
        },
        "ImageTags": image_tags,
        "Name": name,
        "UniqueID": {"0": 1, "1": 2, "2": 3, "3": 4},
    }


def write_dm(
    path,
    data,
    scale_nm,
    units="nm",
    version=3,
    voltage_kv=None,
    magnification=None,
    detector=None,
    *,
    microscope=None,
    illumination_mode=None,
    title="image",
    extra_signals=(),
):
    """Write a minimal DigitalMicrograph DM3 or DM4 file.

    Parameters
    ----------
    path : str or Path
        Output file.
    data : ndarray
        2-D image (or 1-D spectrum); uint8, uint16, int16, int32, uint32, float32
        or float64. Stored little-endian, x fastest, as DigitalMicrograph does.
    scale_nm : float or tuple of float
        Size of one pixel in ``units`` (despite the name: 0.0015 with
        ``units="µm"`` is 1.5 nm); a ``(y, x)`` tuple gives non-square pixels.
    units : str
        Calibration unit of the spatial axes; ``""`` writes an uncalibrated image.
    version : {3, 4}
        DM file version.
    voltage_kv, magnification : float, optional
        Written to ``ImageTags/Microscope Info`` (voltage in volts, as DM does).
    detector : str, optional
        Camera name, written to ``ImageTags/Acquisition/Device/Name``.
    microscope, illumination_mode : str, optional
        ``Microscope Info/Name`` and ``Microscope Info/Illumination Mode``.
    title : str
        The image name.
    extra_signals : sequence of ndarray
        Further images or spectra stored after the first (scale 1, unit "").

    Returns
    -------
    Path
        ``path``.
    """
    if version not in (3, 4):
        raise ValueError("version must be 3 or 4")
    data = np.asarray(data)
    scales = scale_nm if isinstance(scale_nm, (tuple, list)) else (scale_nm,) * data.ndim
    info = {}
    if illumination_mode is not None:
        info["Illumination Mode"] = illumination_mode
    if magnification is not None:
        info["Indicated Magnification"] = float(magnification)
    if microscope is not None:
        info["Name"] = microscope
    if voltage_kv is not None:
        info["Voltage"] = float(voltage_kv) * 1e3
    tags = {}
    if detector is not None:
        tags["Acquisition"] = {"Device": {"Name": detector}}
    tags["DataBar"] = {"Acquisition Date": "1/2/2024", "Acquisition Time": "10:11:12 AM"}
    if info:
        tags["Microscope Info"] = info
    thumb = np.zeros((8, 8), dtype=np.uint32)  # RGBA thumbnail, as DM writes
    thumb_group = _dm_image(thumb, (1.0, 1.0), "", {}, "")
    thumb_group["ImageData"]["DataType"] = 23
    images = [thumb_group, _dm_image(data, scales, units, tags, title)]
    for extra in extra_signals:
        extra = np.asarray(extra)
        images.append(_dm_image(extra, (1.0,) * extra.ndim, "", {}, "extra"))
    root = {
        "ApplicationBounds": _Leaf(
            [15, 0, 4, 0, 3, 0, 3, 0, 3, 0, 3], struct.pack("<4l", 0, 0, 1, 1)
        ),
        "ImageList": images,
        "InImageMode": True,
        "Thumbnails": [{"ImageIndex": 0, "SourceSize_Pixels": _array(np.array([8, 8], "<u4"))}],
    }
    body = _group_body(root, version)
    end = b"\x00" * 8
    if version == 3:
        size = 12 + len(body) + len(end)
        header = struct.pack(">lll", 3, size - 16, 1)
    else:
        size = 16 + len(body) + len(end)
        header = struct.pack(">lql", 4, size - 24, 1)
    path = Path(path)
    path.write_bytes(header + body + end)
    return path


# -------------------------------------------------------------------------- TIA

_SER_DTYPES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.uint16): 2,
    np.dtype(np.uint32): 3,
    np.dtype(np.int8): 4,
    np.dtype(np.int16): 5,
    np.dtype(np.int32): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.float64): 8,
}


def write_ser(path, data, scale_m):
    """Write a TIA ``.ser`` series file holding one 2-D image element.

    Series version 0x0210 (32-bit offsets), one dimension of size 1, a "time
    only" tag. Rows are stored bottom-up, as TIA does (readers flip them back).

    Parameters
    ----------
    path : str or Path
        Output file; TIA names it ``<base>_1.ser`` next to ``<base>.emi``.
    data : ndarray
        2-D image of uint8/16/32, int8/16/32, float32 or float64.
    scale_m : float or tuple of float
        Pixel size in metres, or ``(y, x)``.

    Returns
    -------
    Path
        ``path``.
    """
    data = np.asarray(data)
    if data.ndim != 2 or data.dtype not in _SER_DTYPES:
        raise TypeError("write_ser needs a 2-D integer or float image")
    sy, sx = scale_m if isinstance(scale_m, (tuple, list)) else (scale_m, scale_m)
    ny, nx = data.shape
    description = b"Number"
    dim = struct.pack("<lddll", 1, 0.0, 1.0, 0, len(description)) + description
    dim += struct.pack("<l", 0)  # no unit
    header_len = 30 + len(dim)
    offsets_at = header_len
    data_at = offsets_at + 8
    element = struct.pack("<ddlddlHll", 0.0, sx, 0, 0.0, sy, 0, _SER_DTYPES[data.dtype], nx, ny)
    pixels = np.ascontiguousarray(data[::-1]).astype(data.dtype.newbyteorder("<")).tobytes()
    tag_at = data_at + len(element) + len(pixels)
    header = struct.pack("<HHHlllll", 0x4949, 0x0197, 0x0210, 0x4122, 0x4152, 1, 1, offsets_at)
    header += struct.pack("<l", 1) + dim
    out = header + struct.pack("<ll", data_at, tag_at) + element + pixels
    out += struct.pack("<HHl", 0x4152, 0, 1_700_000_000)
    path = Path(path)
    path.write_bytes(out)
    return path


def write_emi(path, voltage_kv=None, magnification=None, mode="TEM", microscope=None):
    """Write a stand-in ``.emi`` file: binary filler around the XML ``ObjectInfo``.

    Readers only look for the ``<ObjectInfo>`` block; the rest of a real EMI
    file (a serialised TIA object) is replaced by filler bytes.
    """

    def item(label, value, unit=""):
        unit_xml = f"<Unit>{unit}</Unit>" if unit else "<Unit/>"
        return f"<Data><Label>{label}</Label><Value>{value}</Value>{unit_xml}</Data>"

    items = [item("Mode", mode)]
    if voltage_kv is not None:
        items.append(item("High tension", voltage_kv, "kV"))
    if magnification is not None:
        items.append(item("Magnification", magnification, "x"))
    if microscope is not None:
        items.append(item("Microscope", microscope))
    xml = (
        "<ObjectInfo><AcquireDate>Tue Jan 02 10:11:12 2024</AcquireDate>"
        "<AcquireInfo><DwellTimePath>1.0</DwellTimePath></AcquireInfo>"
        f"<ExperimentalDescription><Root>{''.join(items)}</Root></ExperimentalDescription>"
        "</ObjectInfo>"
    )
    path = Path(path)
    path.write_bytes(b"\x00\x01TIA" + b"\x00" * 64 + xml.encode() + b"\x00" * 64)
    return path


# ------------------------------------------------------------------- Velox EMD


def write_velox_emd(
    path, data, scale_nm, *, voltage_kv=300.0, magnification=None, detector="HAADF"
):
    """Write a minimal Velox EMD (HDF5) file holding one image (needs h5py).

    Layout as Velox 11 writes it: ``/Version`` (JSON), ``/Data/Image/<uuid>/Data``
    of shape ``(y, x, frames)`` and ``/Data/Image/<uuid>/Metadata``, the JSON
    metadata as a column of uint8 per frame.

    Parameters
    ----------
    path : str or Path
        Output file.
    data : ndarray
        2-D image; any numeric dtype is kept.
    scale_nm : float or tuple of float
        Pixel size in nm, or ``(y, x)``; stored in metres as Velox does.
    voltage_kv, magnification : float, optional
        ``Optics/AccelerationVoltage`` (in V) and ``CustomProperties/StemMagnification``.
    detector : str
        Name of the scanning detector (``BinaryResult/Detector``).
    """
    import h5py

    data = np.asarray(data)
    sy, sx = scale_nm if isinstance(scale_nm, (tuple, list)) else (scale_nm, scale_nm)
    ny, nx = data.shape
    meta = {
        "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1700000000"}},
        "BinaryResult": {
            "Detector": detector,
            "DetectorIndex": "0",
            "ImageSize": {"height": str(ny), "width": str(nx)},
            "Offset": {"x": "0", "y": "0"},
            "PixelSize": {"height": repr(sy * 1e-9), "width": repr(sx * 1e-9)},
            "PixelUnitX": "m",
            "PixelUnitY": "m",
        },
        "Detectors": {"Detector-0": {"DetectorName": detector, "DetectorType": "ScanningDetector"}},
        "Instrument": {
            "InstrumentClass": "Titan",
            "InstrumentModel": "Titan Themis",
            "Manufacturer": "FEI Company",
        },
        "Optics": {"AccelerationVoltage": repr(float(voltage_kv) * 1e3)},
        "Scan": {"DwellTime": "1e-06", "FrameTime": "4.2"},
    }
    if magnification is not None:
        meta["CustomProperties"] = {
            "StemMagnification": {"type": "double", "value": repr(float(magnification))}
        }
    raw = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    column = np.zeros((raw.size + 16, 1), dtype=np.uint8)
    column[: raw.size, 0] = raw
    with h5py.File(path, "w") as f:
        version = json.dumps({"format": "Velox", "version": "11"}).encode()
        f.create_dataset("Version", data=np.array([version]))
        group = f.create_group(f"Data/Image/{uuid.uuid4().hex}")
        group.create_dataset("Data", data=data[:, :, np.newaxis], chunks=(ny, nx, 1))
        group.create_dataset("Metadata", data=column)
    return Path(path)
