"""Round trips and failure modes of :func:`read_rsciio` (DM3/DM4, TIA SER, Velox EMD)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from fileformats import write_dm, write_emi, write_ser, write_velox_emd
from napari_microseg.core.errors import CorruptFileError, InvalidImageError, UnsupportedFormatError
from napari_microseg.core.formats_rsciio import read_rsciio


def _image(dtype, shape=(48, 64)):
    """Pixels that differ everywhere and use the dtype's range (incl. sign/fraction)."""
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _truncate(src, dst, fraction=0.6):
    raw = src.read_bytes()
    dst.write_bytes(raw[: int(len(raw) * fraction)])
    return dst


# --------------------------------------------------------------- DigitalMicrograph


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.uint8, np.int16])
def test_dm_round_trip(tmp_path, version, dtype):
    data = _image(dtype)
    path = write_dm(
        tmp_path / f"img.dm{version}",
        data,
        0.25,
        version=version,
        voltage_kv=200,
        magnification=88000,
        detector="OneView",
        microscope="JEM-ARM200F",
        illumination_mode="TEM",
    )
    m = read_rsciio(path)
    assert m.data.dtype == np.dtype(dtype)
    assert m.data.shape == data.shape
    assert m.data.tobytes() == data.tobytes()  # bit for bit, no flip or rescale
    assert m.pixel_size.calibrated
    assert m.pixel_size.y_nm == pytest.approx(0.25)
    assert m.pixel_size.x_nm == pytest.approx(0.25)
    assert m.pixel_size.source == "digitalmicrograph"
    md = m.metadata
    assert md["format"] == f"DigitalMicrograph DM{version}"
    assert md["accelerating_voltage_kv"] == pytest.approx(200.0)
    assert md["magnification"] == pytest.approx(88000.0)
    assert md["detector"] == "OneView"
    assert md["instrument"] == "JEM-ARM200F"
    assert md["signal"] == "TEM"
    assert md["warnings"] == []
    assert md["original_metadata_excerpt"]["Microscope Info"]["Voltage"] == pytest.approx(2e5)
    json.dumps(md)  # JSON-safe
    assert m.path == str(path)


@pytest.mark.parametrize("version", [3, 4])
def test_dm_micrometre_calibration_is_converted(tmp_path, version):
    data = _image(np.uint16, (20, 30))
    path = write_dm(tmp_path / f"um.dm{version}", data, 0.0015, units="µm", version=version)
    m = read_rsciio(path)
    assert m.pixel_size.x_nm == pytest.approx(1.5, rel=1e-9)
    assert m.pixel_size.y_nm == pytest.approx(1.5, rel=1e-9)
    assert "µm" in m.pixel_size.detail
    assert "accelerating_voltage_kv" not in m.metadata  # absent when the file lacks it


def test_dm_anisotropic_pixels_keep_both_axes(tmp_path):
    data = _image(np.float32, (16, 24))
    m = read_rsciio(write_dm(tmp_path / "aniso.dm4", data, (0.5, 0.2), version=4))
    assert m.pixel_size.y_nm == pytest.approx(0.5)
    assert m.pixel_size.x_nm == pytest.approx(0.2)
    assert m.shape == (16, 24)


@pytest.mark.parametrize("units", ["", "pixel"])
def test_dm_without_length_unit_is_uncalibrated(tmp_path, units):
    data = _image(np.uint16, (10, 12))
    m = read_rsciio(write_dm(tmp_path / "raw.dm3", data, 1.0, units=units))
    assert not m.pixel_size.calibrated
    assert m.pixel_size.unit == "px"
    assert "no length unit" in m.pixel_size.detail
    assert m.data.tobytes() == data.tobytes()


def test_dm_reciprocal_unit_is_uncalibrated_with_warning(tmp_path):
    data = _image(np.float32, (10, 12))
    m = read_rsciio(write_dm(tmp_path / "dp.dm3", data, 0.01, units="1/nm"))
    assert not m.pixel_size.calibrated
    assert any("not a length" in w for w in m.metadata["warnings"])


def test_dm_first_image_is_used_and_others_reported(tmp_path):
    data = _image(np.uint16, (12, 14))
    spectrum = np.arange(100, dtype=np.float32)
    second = np.ones((5, 5), dtype=np.uint8)
    path = write_dm(tmp_path / "multi.dm3", data, 0.3, extra_signals=[spectrum, second])
    m = read_rsciio(path)
    assert m.data.tobytes() == data.tobytes()  # not the thumbnail, not the extras
    (warning,) = m.metadata["warnings"]
    assert "3 signals" in warning and "spectrum 100" in warning and "image 5x5" in warning


def test_dm_image_after_spectrum_is_found(tmp_path):
    spectrum = np.arange(64, dtype=np.float32)
    image = _image(np.uint8, (9, 7))
    m = read_rsciio(write_dm(tmp_path / "late.dm4", spectrum, 1.0, extra_signals=[image]))
    assert m.data.tobytes() == image.tobytes()
    assert "using signal 2" in m.metadata["warnings"][0]


def test_dm_spectrum_only_is_invalid_image(tmp_path):
    path = write_dm(tmp_path / "eels.dm3", np.arange(256, dtype=np.float32), 0.5, units="eV")
    with pytest.raises(InvalidImageError, match=r"eels\.dm3.*no 2-D image.*spectrum 256"):
        read_rsciio(path)


def test_dm_image_stack_only_is_invalid_image(tmp_path):
    stack = np.zeros((3, 12, 10), dtype=np.uint16)
    with pytest.raises(InvalidImageError, match=r"image stack 3x12x10"):
        read_rsciio(write_dm(tmp_path / "stack.dm4", stack, 0.5, version=4))


@pytest.mark.parametrize("version", [3, 4])
def test_dm_truncated_is_corrupt(tmp_path, version):
    good = write_dm(tmp_path / f"good.dm{version}", _image(np.uint16), 0.25, version=version)
    bad = _truncate(good, tmp_path / f"cut.dm{version}")
    with pytest.raises(CorruptFileError, match=rf"cut\.dm{version}.*damaged or truncated"):
        read_rsciio(bad)


def test_not_a_dm_file_is_corrupt(tmp_path):
    path = tmp_path / "notes.dm3"
    path.write_bytes(b"this is a text file, not a micrograph\n" * 4)
    with pytest.raises(CorruptFileError, match=r"notes\.dm3"):
        read_rsciio(path)


def test_dm_lazy_gives_same_pixels(tmp_path):
    pytest.importorskip("dask")
    data = _image(np.int16, (32, 40))
    m = read_rsciio(write_dm(tmp_path / "lazy.dm4", data, 0.25, version=4), lazy=True)
    assert not isinstance(m.data, np.ndarray)
    assert np.asarray(m.data).tobytes() == data.tobytes()
    assert m.pixel_size.x_nm == pytest.approx(0.25)


# ---------------------------------------------------------------------- TIA SER


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int16])
def test_ser_round_trip(tmp_path, dtype):
    data = _image(dtype, (30, 44))  # non-square: catches x/y swaps and flips
    m = read_rsciio(write_ser(tmp_path / "scan_1.ser", data, 2.5e-10))
    assert m.data.dtype == np.dtype(dtype)
    assert m.data.shape == (30, 44)
    assert m.data.tobytes() == data.tobytes()
    assert m.pixel_size.y_nm == pytest.approx(0.25)
    assert m.pixel_size.x_nm == pytest.approx(0.25)
    assert m.pixel_size.source == "ser"
    assert m.metadata["format"] == "TIA SER"
    assert "accelerating_voltage_kv" not in m.metadata  # no .emi next to it


def test_ser_anisotropic(tmp_path):
    data = _image(np.uint16, (8, 10))
    m = read_rsciio(write_ser(tmp_path / "a_1.ser", data, (1e-9, 2e-9)))
    assert (m.pixel_size.y_nm, m.pixel_size.x_nm) == pytest.approx((1.0, 2.0))


def test_ser_reads_instrument_metadata_from_emi(tmp_path):
    data = _image(np.uint16, (16, 16))
    write_emi(tmp_path / "stem.emi", 300, 1.2e6, mode="STEM nP SA", microscope="Microscope Titan")
    m = read_rsciio(write_ser(tmp_path / "stem_1.ser", data, 1e-10))
    assert m.data.tobytes() == data.tobytes()
    assert m.pixel_size.x_nm == pytest.approx(0.1)
    md = m.metadata
    assert md["accelerating_voltage_kv"] == pytest.approx(300.0)
    assert md["magnification"] == pytest.approx(1.2e6)
    assert md["instrument"] == "Titan"
    assert md["signal"] == "STEM"
    assert md["original_metadata_excerpt"]["ExperimentalDescription"]["Mode"] == "STEM nP SA"


def test_ser_truncated_is_corrupt(tmp_path):
    good = write_ser(tmp_path / "ok_1.ser", _image(np.float32, (20, 20)), 1e-9)
    bad = _truncate(good, tmp_path / "broken_1.ser")
    with pytest.raises(CorruptFileError, match=r"broken_1\.ser.*damaged or truncated"):
        read_rsciio(bad)


# -------------------------------------------------------------------- Velox EMD


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_velox_emd_round_trip(tmp_path, dtype):
    pytest.importorskip("h5py")
    data = _image(dtype, (24, 36))
    path = write_velox_emd(tmp_path / "haadf.emd", data, 0.25, voltage_kv=300, magnification=2e6)
    m = read_rsciio(path)
    assert m.data.dtype == np.dtype(dtype)
    assert m.data.tobytes() == data.tobytes()
    assert (m.pixel_size.y_nm, m.pixel_size.x_nm) == pytest.approx((0.25, 0.25))
    assert m.pixel_size.source == "emd"
    md = m.metadata
    assert md["format"] == "Velox EMD"
    assert md["accelerating_voltage_kv"] == pytest.approx(300.0)
    assert md["magnification"] == pytest.approx(2e6)
    assert md["detector"] == "HAADF"
    assert md["signal"] == "HAADF"
    assert md["instrument"] == "FEI Company Titan Themis"
    json.dumps(md)


def test_velox_emd_anisotropic_and_micrometre_scale(tmp_path):
    pytest.importorskip("h5py")
    data = _image(np.uint16, (3, 3000))  # 2.25 µm wide field: rsciio reports µm
    m = read_rsciio(write_velox_emd(tmp_path / "wide.emd", data, (1.5, 0.75)))
    assert "µm" in m.pixel_size.detail
    assert m.pixel_size.y_nm == pytest.approx(1.5)
    assert m.pixel_size.x_nm == pytest.approx(0.75)


def test_emd_truncated_or_foreign_is_corrupt(tmp_path):
    path = tmp_path / "junk.emd"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises((CorruptFileError, UnsupportedFormatError), match=r"junk\.emd"):
        read_rsciio(path)
    pytest.importorskip("h5py")
    good = write_velox_emd(tmp_path / "good.emd", _image(np.uint16, (20, 20)), 0.5)
    bad = _truncate(good, tmp_path / "cut.emd")
    with pytest.raises(CorruptFileError, match=r"cut\.emd.*damaged or truncated"):
        read_rsciio(bad)


def test_emd_without_h5py_says_what_is_missing(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "rsciio.emd" or m.startswith("rsciio.emd.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    path = tmp_path / "velox.emd"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(UnsupportedFormatError, match=r"velox\.emd.*h5py"):
        read_rsciio(path)


# ---------------------------------------------------------------------- generic


def test_unknown_extension_is_unsupported(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(UnsupportedFormatError, match=r"image\.png"):
        read_rsciio(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.dm3"):
        read_rsciio(tmp_path / "absent.dm3")
