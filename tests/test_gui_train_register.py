"""Train dock: typable spin boxes, no silent registration of a blind model, partial model on Stop."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from test_gui_train import add_sample, dirs, tiny_settings  # noqa: F401  (fixture re-used)

pytestmark = pytest.mark.gui


def type_into(box, text: str) -> None:
    """Select all, delete, type ``text`` and press Enter, as a user does."""
    native = box.native
    native.setFocus()
    native.lineEdit().selectAll()
    QTest.keyClick(native, Qt.Key_Delete)
    QTest.keyClicks(native, text)
    QTest.keyClick(native, Qt.Key_Return)


def test_patch_size_can_be_typed(make_napari_viewer, dirs):  # noqa: F811
    from napari_microseg.gui.widgets.train import TrainWidget

    w = TrainWidget(make_napari_viewer())
    w.show()
    type_into(w.patch, "128")
    assert w.patch.value == 128  # was 3228: every keystroke committed and appended
    type_into(w.epochs, "7")
    assert w.epochs.value == 7
    type_into(w.batch, "16")
    assert w.batch.value == 16


def test_blind_model_is_not_registered_until_the_user_insists(
    make_napari_viewer, qtbot, dirs, monkeypatch  # noqa: F811
):
    from napari_microseg.core.models.registry import list_models
    from napari_microseg.gui.widgets import train as mod

    warned = []
    monkeypatch.setattr(mod, "show_warning", warned.append)
    monkeypatch.setattr(
        "napari_microseg.core.training.engine.score_images",
        lambda *a, **k: {"f1": 0.0, "miou": 0.2},
    )
    viewer = make_napari_viewer()
    img, lab = add_sample(viewer, 0, "a")
    vimg, vlab = add_sample(viewer, 1, "b")
    w = mod.TrainWidget(viewer)
    w.in_process = True  # the patched validation lives in this process
    w.reset_choices()
    w.image.value, w.labels.value = img, lab
    w.add_pair("train")
    w.image.value, w.labels.value = vimg, vlab
    w.add_pair("validation")
    tiny_settings(w, "blind", epochs=1, steps=2)
    assert w.start() is not None
    qtbot.waitUntil(lambda: not w.running, timeout=180000)
    assert w.error is None, w.error
    assert w.result.model_name is None and "blind" not in [e.name for e in list_models()]
    assert warned and "none of the validation objects" in warned[0]
    assert w.status.text().startswith("Not registered") and (not w.register_anyway.native.isHidden())
    w.register_anyway.native.click()
    qtbot.waitUntil(lambda: w.result.model_name == "blind", timeout=60000)
    assert "blind" in [e.name for e in list_models()]
    assert w.register_anyway.native.isHidden() and "Registered model 'blind'" in w.status.text()


def test_stop_can_register_the_best_so_far_as_partial(make_napari_viewer, qtbot, dirs):  # noqa: F811
    from napari_microseg.core.models.registry import list_models
    from napari_microseg.gui.widgets.predict import PredictWidget
    from napari_microseg.gui.widgets.train import TrainWidget

    viewer = make_napari_viewer()
    img, lab = add_sample(viewer, 2, "c")
    predict = PredictWidget(viewer)
    w = TrainWidget(viewer)
    w.reset_choices()
    w.image.value, w.labels.value = img, lab
    tiny_settings(w, "cut", epochs=20, steps=1)
    w.register_on_stop.value = True
    assert w.start() is not None
    qtbot.waitUntil(lambda: len(w.steps) >= 2, timeout=180000)
    w.stop_button.native.click()
    qtbot.waitUntil(lambda: not w.running, timeout=180000)
    assert w.error is None, w.error
    assert w.result.stopped and w.result.model_name == "cut-partial"
    assert "partial model 'cut-partial'" in w.status.text()
    assert [e.name for e in list_models()] == ["cut-partial"]
    assert "cut-partial" in predict.model.choices
    assert w.resume_button.enabled


def test_removing_a_layer_drops_its_pairs(make_napari_viewer, dirs):  # noqa: F811
    from napari_microseg.gui.widgets.train import TrainWidget

    viewer = make_napari_viewer()
    img, lab = add_sample(viewer, 0, "a")
    vimg, vlab = add_sample(viewer, 1, "b")
    w = TrainWidget(viewer)
    w.reset_choices()
    w.image.value, w.labels.value = img, lab
    w.add_pair("train")
    w.image.value, w.labels.value = vimg, vlab
    w.add_pair("validation")
    assert w.source_list.count() == 2 and not w.source_list.isHidden()
    viewer.layers.remove(lab)
    assert w.source_list.count() == 1 and w.data.sources[0]["labels"] is vlab
    viewer.layers.remove(vimg)
    assert w.source_list.count() == 0 and w.source_list.isHidden()
    assert not w.data.source_hint.isHidden()
