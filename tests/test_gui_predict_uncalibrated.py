"""Predict dock: an image without a pixel size is run only with a visible warning."""

from __future__ import annotations

import pytest

from napari_microseg.core.calibration import PixelSize
from test_gui_predict import dark_model, scene, wait  # noqa: F401  (fixtures re-used)

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("calibrated", [False, True])
def test_uncalibrated_image_is_announced(make_napari_viewer, qtbot, dark_model, scene,  # noqa: F811
                                          monkeypatch, calibrated):
    from napari_microseg.gui.widgets import predict as mod

    warned = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warned.append)
    viewer = make_napari_viewer()
    kw = {}
    if calibrated:
        ps = PixelSize.isotropic(0.5, "user")
        kw = {"scale": ps.scale, "metadata": {"pixel_size": ps.to_dict()}}
    image = viewer.add_image(scene, name="tem", **kw)
    w = mod.PredictWidget(viewer)
    w.reset_choices()
    w.image.value, w.model.value = image, "dark-is-loop"
    w.run()
    wait(qtbot, w)
    if calibrated:
        assert not warned and w.uncalibrated_warning is None
        assert w.status.text().endswith("done.")
    else:
        assert len(warned) == 1 and "tem has no pixel size" in warned[0]
        assert "Calibration dock" in warned[0]
        assert "uncalibrated: sizes in px" in w.status.text()
