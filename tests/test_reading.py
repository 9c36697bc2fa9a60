"""Reading micrographs with their calibration, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_microseg.core.calibration import PixelSize, unit_to_nm
from napari_microseg.core.errors import (
    CalibrationError,
    CorruptFileError,
    InvalidImageError,
    UnsupportedFormatError,
)
from napari_microseg.core.micrograph import content_hash
from napari_microseg.core.reading import choose_pixel_size, read_micrograph
from tiff_samples import sem_with_bar, write_fei_tiff, write_zeiss_tiff


@pytest.fixture
def noise16():
    return np.random.default_rng(1).integers(0, 65535, (64, 96), dtype=np.uint16)


def test_imagej_resolution_in_nm(tmp_path, noise16):
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, noise16, imagej=True, resolution=(1 / 0.391, 1 / 0.391), metadata={"unit": "nm"})
    mg = read_micrograph(p)
    assert mg.pixel_size.source == "imagej"
    assert mg.pixel_size.x_nm == pytest.approx(0.391, rel=1e-6)
    assert mg.pixel_size.unit == "nm"
    assert mg.data.dtype == np.uint16 and np.array_equal(mg.data, noise16)


def test_imagej_resolution_in_escaped_micron(tmp_path, noise16):
    p = tmp_path / "ij_um.tif"
    tifffile.imwrite(p, noise16, imagej=True, resolution=(1000 / 2.5, 1000 / 2.5), metadata={"unit": "\\u00B5m"})
    assert read_micrograph(p).pixel_size.x_nm == pytest.approx(2.5, rel=1e-6)


def test_fei_metadata_pixel_size_voltage_detector(tmp_path):
    p = tmp_path / "fei.tif"
    data = np.random.default_rng(0).integers(0, 255, (128, 160), dtype=np.uint8)
    write_fei_tiff(p, data, pixel_m=1.171875e-9, hv_v=5000)
    mg = read_micrograph(p)
    assert mg.pixel_size.source == "fei_metadata"
    assert mg.pixel_size.x_nm == pytest.approx(1.171875, rel=1e-6)
    assert mg.metadata["accelerating_voltage_kv"] == pytest.approx(5.0)
    assert mg.metadata["detector"].startswith("TLD")
    assert "Helios" in mg.metadata["instrument"]


def test_zeiss_metadata(tmp_path):
    p = tmp_path / "zeiss.tif"
    write_zeiss_tiff(p, np.full((64, 64), 100, np.uint8) + np.eye(64, dtype=np.uint8), pixel_nm=2.481)
    mg = read_micrograph(p)
    assert mg.pixel_size.source == "sem_metadata"
    assert mg.pixel_size.x_nm == pytest.approx(2.481)
    assert mg.metadata["accelerating_voltage_kv"] == pytest.approx(20.0)
    assert mg.metadata["magnification"] == "10.00 K X"
    assert mg.metadata["detector"] == "SE2"


def test_ome_physical_size(tmp_path, noise16):
    p = tmp_path / "x.ome.tif"
    tifffile.imwrite(p, noise16, ome=True, metadata={"PhysicalSizeX": 0.0042, "PhysicalSizeY": 0.0042,
                                                     "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
    mg = read_micrograph(p)
    assert mg.pixel_size.source == "ome"
    assert mg.pixel_size.x_nm == pytest.approx(4.2)


def test_resolution_tags_in_cm_and_display_default_ignored(tmp_path, noise16):
    p = tmp_path / "cm.tif"
    tifffile.imwrite(p, noise16, resolution=(1e7 / 3.0, 1e7 / 3.0), resolutionunit="CENTIMETER")
    assert read_micrograph(p).pixel_size.x_nm == pytest.approx(3.0)
    q = tmp_path / "dpi.tif"
    tifffile.imwrite(q, noise16, resolution=(72, 72), resolutionunit="INCH")
    mg = read_micrograph(q)
    assert not mg.pixel_size.calibrated and mg.pixel_size.unit == "px"
    assert any("uncalibrated" in w for w in mg.warnings)


def test_contradictory_metadata_prefers_instrument_and_warns(tmp_path):
    p = tmp_path / "both.tif"
    data = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    ini = __import__("tiff_samples").fei_ini(2.0e-9)
    tifffile.imwrite(p, data, extratags=[(34682, "s", 0, ini, True)],
                     resolution=(1e7 / 5.0, 1e7 / 5.0), resolutionunit="CENTIMETER")
    mg = read_micrograph(p)
    assert mg.pixel_size.source == "fei_metadata" and mg.pixel_size.x_nm == pytest.approx(2.0)
    assert any("Contradictory" in w and "tiff_resolution" in w for w in mg.warnings)


def test_sidecar_and_override(tmp_path):
    p = tmp_path / "plain.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)).save(p)
    assert not read_micrograph(p).pixel_size.calibrated
    (tmp_path / "microseg.json").write_text(json.dumps({"patterns": {"*.png": 0.39}}))
    mg = read_micrograph(p)
    assert mg.pixel_size.source == "sidecar" and mg.pixel_size.x_nm == pytest.approx(0.39)
    (tmp_path / "plain.png.microseg.json").write_text(json.dumps({"pixel_size_nm": 0.5}))
    assert read_micrograph(p).pixel_size.x_nm == pytest.approx(0.5)
    mg = read_micrograph(p, pixel_size_nm=0.25)
    assert mg.pixel_size.source == "user" and mg.pixel_size.x_nm == pytest.approx(0.25)
    (tmp_path / "plain.png.microseg.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="plain.png.microseg.json"):
        read_micrograph(p)


def test_png_16bit_and_float_tiff_kept_as_is(tmp_path, noise16):
    p = tmp_path / "x16.png"
    Image.fromarray(noise16).save(p)
    mg = read_micrograph(p)
    assert mg.data.dtype == np.uint16 and np.array_equal(mg.data, noise16)
    f = noise16.astype(np.float32) / 7.0
    q = tmp_path / "f.tif"
    tifffile.imwrite(q, f)
    mg = read_micrograph(q)
    assert mg.data.dtype == np.float32 and np.array_equal(mg.data, f)


def test_rgb_grey_on_request_and_identical_channels(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)
    p = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(p)
    assert read_micrograph(p).data.shape == (32, 40, 3)
    grey = read_micrograph(p, as_grey=True).data
    assert grey.shape == (32, 40) and grey.dtype == np.uint8
    expect = np.round(rgb @ np.array([0.2125, 0.7154, 0.0721]))
    assert np.abs(grey.astype(float) - expect).max() <= 1
    same = np.repeat(rgb[..., :1], 3, axis=-1)
    q = tmp_path / "same.png"
    Image.fromarray(same).save(q)
    mg = read_micrograph(q)
    assert mg.data.shape == (32, 40) and np.array_equal(mg.data, rgb[..., 0])
    assert "lossless" in mg.metadata["converted_to_grey"]


def test_nan_pixels_are_masked_not_changed(tmp_path):
    f = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    f[3:5, 7:9] = np.nan
    p = tmp_path / "nan.tif"
    tifffile.imwrite(p, f)
    mg = read_micrograph(p)
    assert np.isnan(mg.data).sum() == 4
    assert mg.analysis_mask is not None and mg.analysed_area_px() == 32 * 32 - 4
    assert any("NaN" in w for w in mg.warnings)
    allnan = tmp_path / "allnan.tif"
    tifffile.imwrite(allnan, np.full((16, 16), np.nan, np.float32))
    with pytest.raises(InvalidImageError, match="every pixel"):
        read_micrograph(allnan)


@pytest.mark.parametrize("suffix", [".tif", ".png", ".jpg"])
def test_truncated_file_is_a_clear_error(tmp_path, suffix):
    data = np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)
    p = tmp_path / f"img{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(p, data)
    else:
        Image.fromarray(data).save(p)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(CorruptFileError, match=p.name):
        read_micrograph(p)


def test_bad_inputs(tmp_path):
    with pytest.raises(UnsupportedFormatError, match="unsupported format .xyz"):
        (tmp_path / "a.xyz").write_text("x")
        read_micrograph(tmp_path / "a.xyz")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        read_micrograph(tmp_path / "empty.tif")
    (tmp_path / "text.tif").write_text("this is not a tiff")
    with pytest.raises(CorruptFileError, match="text.tif"):
        read_micrograph(tmp_path / "text.tif")
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((1, 1), np.uint8))
    with pytest.raises(InvalidImageError, match="1 x 1 px"):
        read_micrograph(tmp_path / "one.tif")
    with pytest.raises(FileNotFoundError):
        read_micrograph(tmp_path / "missing.tif")


def test_huge_tiff_opens_lazily(tmp_path):
    """A 30,000 x 30,000 image opens without loading its 900 MB of pixels."""
    p = tmp_path / "huge.tif"
    tile = np.zeros((1024, 1024), np.uint8)

    def tiles():
        for _ in range(30 * 30):
            yield tile

    tifffile.imwrite(p, tiles(), shape=(30000, 30000), dtype=np.uint8, tile=(1024, 1024),
                     compression="zlib", resolution=(1e7 / 5, 1e7 / 5), resolutionunit="CENTIMETER")
    mg = read_micrograph(p)
    assert mg.shape == (30000, 30000)
    assert not isinstance(mg.data, np.ndarray)
    assert np.asarray(mg.data[29990:, 29990:]).sum() == 0
    assert mg.pixel_size.x_nm == pytest.approx(5.0)
    assert any("lazily" in w for w in mg.warnings)


def test_info_bar_excluded_only_for_sem(tmp_path):
    img = sem_with_bar(600, 512, bar=64)
    p = tmp_path / "sem.tif"
    write_fei_tiff(p, img, pixel_m=2e-9)
    mg = read_micrograph(p)
    assert mg.metadata["info_bar"] == {"start_row": 536, "source": "image"}
    assert mg.analysed_area_px() == 536 * 512
    assert np.array_equal(mg.data, img)  # raw data untouched
    p2 = tmp_path / "fei_rows.tif"
    write_fei_tiff(p2, img, pixel_m=2e-9, scan_rows=530)
    assert read_micrograph(p2).metadata["info_bar"]["source"] == "metadata"
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, img)
    assert "info_bar" not in read_micrograph(plain).metadata  # not an SEM file: no guess
    assert "info_bar" in read_micrograph(plain, detect_bar=True).metadata


def test_choose_pixel_size_priority():
    a = PixelSize.isotropic(1.0, "imagej")
    b = PixelSize.isotropic(1.005, "fei_metadata")
    chosen, warnings = choose_pixel_size([a, b])
    assert chosen is b and warnings == []  # within 1 %: agree
    chosen, warnings = choose_pixel_size([a, PixelSize.isotropic(2.0, "user")])
    assert chosen.source == "user" and len(warnings) == 1


def test_units_and_invalid_pixel_sizes():
    assert unit_to_nm("µm") == 1000 and unit_to_nm("Å") == pytest.approx(0.1) and unit_to_nm("m") == 1e9
    with pytest.raises(CalibrationError):
        unit_to_nm("furlong")
    with pytest.raises(CalibrationError):
        PixelSize.isotropic(-1.0, "user")
    with pytest.raises(CalibrationError):
        PixelSize.isotropic(float("nan"), "user")


def test_content_hash_changes_with_one_pixel():
    a = np.zeros((2000, 30), np.uint16)
    h = content_hash(a)
    b = a.copy()
    b[1500, 3] = 1
    assert content_hash(b) != h and content_hash(a.copy()) == h
    assert content_hash(a.astype(np.uint8)) != h
