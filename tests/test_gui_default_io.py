"""The plugin's reader and writer are napari's defaults once it is active (File > Open / Save).

The preference is set when napari activates the plugin (npe2 ``on_activate``),
never over a reader the user chose, and a removed association is not re-added.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image as PILImage

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.labels_io import read_labels, sidecar_path
from napari_microseg.gui.layer_data import labels_layer
from tiff_samples import write_fei_tiff

pytestmark = pytest.mark.gui
PLUGIN = "napari-microseg"


@pytest.fixture
def activate(monkeypatch, tmp_path):
    """Activate the plugin the way napari does, with a fresh preference record."""
    from npe2 import PluginManager

    from napari_microseg.gui import reader

    record = tmp_path / "config" / "reader_preferences.json"
    monkeypatch.setattr(reader, "preference_record", lambda: record)
    pm = PluginManager.instance()

    def run():
        pm.deactivate(PLUGIN)
        pm.activate(PLUGIN)
        return record

    yield run
    pm.activate(PLUGIN)


@pytest.fixture
def micrographs(tmp_path):
    tif = tmp_path / "fei.tif"
    write_fei_tiff(tif, np.random.default_rng(0).integers(0, 255, (64, 80), dtype=np.uint8), pixel_m=0.390625e-9)
    png = tmp_path / "camera.png"
    PILImage.fromarray(np.random.default_rng(1).integers(0, 255, (48, 40), dtype=np.uint8)).save(png)
    (tmp_path / "camera.png.microseg.json").write_text(json.dumps({"pixel_size_nm": 0.478516}))
    return tif, png


def test_open_without_plugin_uses_the_calibrated_reader(make_napari_viewer, activate, micrographs):
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    assert get_settings().plugins.extension2reader == {}
    activate()
    prefs = get_settings().plugins.extension2reader
    assert prefs["*.tif"] == PLUGIN and prefs["*.png"] == PLUGIN
    tif, png = micrographs
    # plugin=None is File > Open's call: the reader comes from the preferences (before
    # the fix: MultipleReaderError, i.e. napari's chooser with its builtins preselected)
    (a,) = viewer.open(str(tif), plugin=None)
    assert a.source.reader_plugin == PLUGIN
    assert tuple(a.scale) == pytest.approx((0.390625, 0.390625))
    assert a.metadata["pixel_size"]["source"] == "fei_metadata"
    viewer.window._qt_viewer._qt_open([str(png)], stack=False)  # File > Open / drag and drop
    b = viewer.layers["camera"]
    assert b.source.reader_plugin == PLUGIN
    assert tuple(b.scale) == (0.478516, 0.478516) and b.metadata["pixel_size"]["x_nm"] == 0.478516


def test_a_users_reader_choice_is_never_overridden(make_napari_viewer, activate):
    from napari.settings import get_settings

    make_napari_viewer()
    settings = get_settings()
    settings.plugins.extension2reader = {"*.tif": "napari", "*.dm?": "other-plugin"}
    record = activate()
    prefs = settings.plugins.extension2reader
    assert prefs["*.tif"] == "napari" and "*.dm3" not in prefs and "*.dm4" not in prefs
    assert prefs["*.png"] == PLUGIN
    # the user removes the association in Preferences: it stays removed
    settings.plugins.extension2reader = {k: v for k, v in prefs.items() if k != "*.png"}
    activate()
    assert "*.png" not in settings.plugins.extension2reader
    assert "*.png" in json.loads(record.read_text())


def test_saving_labels_without_plugin_writes_the_sidecar_readable(make_napari_viewer, activate, tmp_path):
    viewer = make_napari_viewer()
    activate()
    lab = np.zeros((40, 40), np.int32)
    lab[5:10, 5:10] = 1
    lab[20:30, 20:25] = 2
    data, kw, _ = labels_layer(lab, instance_classes={1: 3, 2: 1}, pixel_size=PixelSize.isotropic(0.390625, "user"))
    layer = viewer.add_labels(data, **kw)
    from napari.plugins._npe2 import file_extensions_string_for_layers

    filters, writers = file_extensions_string_for_layers([layer])  # the Save dialog's file types
    assert writers[0].command == "napari-microseg.write_labels_tiff"
    assert filters.split(";;")[0].startswith("napari-microseg instance labels + class sidecar")
    old = os.umask(0o022)
    try:
        written = layer.save(str(tmp_path / "one.tif"))  # what Save does by default
        viewer.layers.selection = {layer}
        written += viewer.layers.save(str(tmp_path / "two.tif"), selected=True)
    finally:
        os.umask(old)
    for name in ("one.tif", "two.tif"):
        out = tmp_path / name
        assert str(sidecar_path(out)) in written
        rec = read_labels(out)
        assert rec.instance_classes == {1: 3, 2: 1} and rec.pixel_size.x_nm == 0.390625
        for f in (out, sidecar_path(out)):
            assert f.stat().st_mode & 0o777 == 0o644  # readable by others, as the umask asks


def test_labels_the_sidecar_cannot_describe_go_to_naparis_writer(make_napari_viewer, activate, tmp_path):
    viewer = make_napari_viewer()
    activate()
    stack = viewer.add_labels(np.ones((3, 20, 20), np.int32))
    (written,) = stack.save(str(tmp_path / "stack.tif"))
    assert written.endswith("stack.tif") and not sidecar_path(tmp_path / "stack.tif").exists()


def test_opening_any_dock_activates_the_defaults(make_napari_viewer, activate):
    from napari.settings import get_settings
    from npe2 import PluginManager

    viewer = make_napari_viewer()  # activate: its record is a fresh temporary file
    PluginManager.instance().deactivate(PLUGIN)
    assert get_settings().plugins.extension2reader == {}
    viewer.window.add_plugin_dock_widget(PLUGIN, "Calibration")  # Plugins > napari-microseg > Calibration
    assert get_settings().plugins.extension2reader.get("*.tif") == PLUGIN
