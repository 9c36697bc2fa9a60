"""Reader, writer, sample data and the foundation docks in a napari viewer."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_microseg.core.labels_io import read_labels
from tiff_samples import sem_with_bar, write_fei_tiff

pytestmark = pytest.mark.gui
PLUGIN = "napari-microseg"


def test_reader_gives_scale_in_nm_and_metadata(make_napari_viewer, tmp_path):
    p = tmp_path / "fei.tif"
    img = sem_with_bar(300, 256, bar=40)
    write_fei_tiff(p, img, pixel_m=1.5e-9, hv_v=10000)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(p), plugin=PLUGIN)
    assert tuple(layer.scale) == pytest.approx((1.5, 1.5))
    assert layer.metadata["pixel_size"]["source"] == "fei_metadata"
    assert layer.metadata["accelerating_voltage_kv"] == pytest.approx(10.0)
    assert layer.metadata["info_bar"]["start_row"] == 260
    assert layer.metadata["analysis_mask"].sum() == 260 * 256
    assert np.array_equal(layer.data, img)
    assert str(layer.units[0]) in ("nanometer", "nm")


def test_reader_bad_file_notifies_without_crashing(make_napari_viewer, tmp_path, monkeypatch):
    from napari_microseg.gui import reader

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    p = tmp_path / "broken.tif"
    p.write_bytes(b"II*\x00garbage")
    out = reader.read_path(str(p))
    assert out == [(None,)]
    assert shown and "broken.tif" in shown[0]
    viewer = make_napari_viewer()
    viewer.open(str(p), plugin=PLUGIN)  # must not raise
    assert len(viewer.layers) == 0


def test_uncalibrated_image_is_flagged_px(make_napari_viewer, tmp_path):
    from napari_microseg.gui.widgets.calibration import CalibrationWidget, describe_layer

    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(p), plugin=PLUGIN)
    assert tuple(layer.scale) == (1.0, 1.0)
    assert layer.metadata["unit"] == "px"
    assert describe_layer(layer).startswith("UNCALIBRATED")
    w = CalibrationWidget(viewer)
    w.image.reset_choices()
    w.image.value = layer
    w.pixel_size.value = 0.8
    w.set_button.clicked.emit()
    assert tuple(layer.scale) == pytest.approx((0.8, 0.8))
    assert layer.metadata["pixel_size"]["source"] == "user"
    assert "0.8 nm/px" in w.info.value


def test_calibration_widget_override_updates_labels_too(make_napari_viewer):
    from napari_microseg.gui.widgets.calibration import override_pixel_size

    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((50, 60)), metadata={})
    img.name = "tem"
    lab = viewer.add_labels(np.zeros((50, 60), np.int32), metadata={"source_image": "tem"})
    other = viewer.add_labels(np.zeros((10, 10), np.int32))
    same_shape = viewer.add_labels(np.zeros((50, 60), np.int32))  # not made on img: left alone
    changed = override_pixel_size(viewer, img, 2.5)
    assert img in changed and lab in changed and other not in changed and same_shape not in changed
    assert tuple(lab.scale) == pytest.approx((2.5, 2.5)) and tuple(other.scale) == (1.0, 1.0)


def test_info_bar_toggle_in_widget(make_napari_viewer):
    from napari_microseg.gui.widgets.calibration import CalibrationWidget

    viewer = make_napari_viewer()
    layer = viewer.add_image(sem_with_bar(400, 300, bar=50), name="sem")
    w = CalibrationWidget(viewer)
    w.image.reset_choices()
    w.image.value = layer
    w.bar_box.value = True
    assert layer.metadata["info_bar"]["start_row"] == 350
    assert "sem excluded area" in viewer.layers
    assert "Info bar excluded from row 350" in w.info.value
    w.bar_box.value = False
    assert "info_bar" not in layer.metadata and "sem excluded area" not in viewer.layers


def test_writer_round_trip_through_napari(make_napari_viewer, tmp_path):
    from napari_microseg.core.calibration import PixelSize
    from napari_microseg.gui.layer_data import labels_layer

    viewer = make_napari_viewer()
    lab = np.zeros((40, 40), np.int32)
    lab[5:10, 5:10] = 1
    lab[20:30, 20:25] = 2
    data, kwargs, _ = labels_layer(lab, instance_classes={1: 3, 2: 1}, pixel_size=PixelSize.isotropic(0.5, "user"))
    layer = viewer.add_labels(data, **kwargs)
    out = tmp_path / "saved.tif"
    layer.save(str(out), plugin=PLUGIN)
    rec = read_labels(out)
    assert np.array_equal(rec.labels, lab) and rec.instance_classes == {1: 3, 2: 1}
    assert rec.pixel_size.x_nm == pytest.approx(0.5)
    layer.save(str(tmp_path / "saved.json"), plugin=PLUGIN)
    assert (tmp_path / "saved.json").exists()
    # and it reads back as a Labels layer with classes as features
    (back,) = viewer.open(str(out), plugin=PLUGIN)
    assert back._type_string == "labels"
    feats = back.features.set_index("index")
    assert feats.loc[1, "class_name"] == "black dot" and feats.loc[2, "class_name"] == "<111> loop"


@pytest.mark.parametrize("key", ["tem_loops", "stem_loops", "sem_pits"])
def test_sample_data_opens_with_ground_truth(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, key)
    image, labels = viewer.layers
    assert image.metadata["pixel_size"]["source"] == "synthetic"
    assert labels.data.max() > 0 and labels.data.shape == image.data.shape
    assert set(labels.features["class_id"]) - {0}


def test_synthetic_widget_runs_in_worker(make_napari_viewer, qtbot):
    from napari_microseg.gui.widgets.synthetic import SyntheticWidget

    viewer = make_napari_viewer()
    w = SyntheticWidget(viewer)
    w.size.value = 256
    w.seed.value = 3
    assert w.run() is not None
    qtbot.waitUntil(lambda: len(viewer.layers) == 2 and w.button.enabled, timeout=60000)
    image, labels = viewer.layers
    assert image.data.shape == (256, 256)
    assert tuple(image.scale) == pytest.approx((0.39, 0.39))
    assert labels.data.max() > 0
    assert w.button.enabled
