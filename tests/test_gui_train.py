"""Train dock: a tiny model trained from viewer layers, stop and resume, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gui

TINY = {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 4]}


@pytest.fixture
def dirs(tmp_path, monkeypatch, torch_one_thread):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MICROSEG_RUNS_DIR", str(tmp_path / "runs"))
    # one torch thread for the run as for the test (2 shared cores)
    monkeypatch.setattr("napari_microseg.gui.widgets.train.training_threads", lambda: 1)
    return tmp_path


def add_sample(viewer, seed: int, name: str):
    from napari_microseg.core.synth import generate
    from napari_microseg.gui.layer_data import sample_to_layers

    s = generate("tem-loops", shape=(128, 128), seed=seed)
    (img, img_kw, _), (lab, lab_kw, _) = sample_to_layers(s, name)
    return viewer.add_image(img, **img_kw), viewer.add_labels(lab, **lab_kw)


def tiny_settings(w, name: str, epochs: int = 2, steps: int = 2):
    w.name.value = name
    w.params.value = json.dumps(TINY)
    w.patch.value, w.batch.value = 64, 2
    w.epochs.value, w.steps_per_epoch.value = epochs, steps
    w.augment.value = False
    w.device.value = "cpu"


def test_train_from_layers_registers_and_predict_lists_it(make_napari_viewer, qtbot, dirs):
    from napari_microseg.core.models.registry import list_models, load_model
    from napari_microseg.gui.layer_data import is_helper_layer
    from napari_microseg.gui.widgets.predict import PredictWidget
    from napari_microseg.gui.widgets.train import PREVIEW_LAYER, TrainWidget

    viewer = make_napari_viewer()
    img, lab = add_sample(viewer, 0, "a")
    vimg, vlab = add_sample(viewer, 1, "b")
    predict = PredictWidget(viewer)
    assert "tiny-unet" not in predict.model.choices
    w = TrainWidget(viewer)
    w.reset_choices()
    w.image.value, w.labels.value = img, lab
    w.add_pair("train")
    w.image.value, w.labels.value = vimg, vlab
    w.add_pair("validation")
    assert w.source_list.count() == 2
    tiny_settings(w, "tiny-unet")
    w.preview_every.value = 1
    assert w.start() is not None
    qtbot.waitUntil(lambda: not w.running, timeout=180000)
    assert w.error is None, w.error
    assert w.result is not None and not w.result.stopped
    if w.result.not_registered:  # 4 steps may learn nothing: the user is told, then insists
        assert "Not registered" in w.status.text() and (not w.register_anyway.native.isHidden())
        w.register_anyway.native.click()
        qtbot.waitUntil(lambda: w.result.model_name is not None, timeout=60000)
    assert w.result.model_name == "tiny-unet"
    # in the registry, loadable, with the classes of the labels layer
    names = [e.name for e in list_models()]
    assert "tiny-unet" in names
    _, card = load_model("tiny-unet")
    ids = {c["id"] for c in card.classes}
    assert {int(c) for c in lab.features["class_id"] if c > 0} <= ids
    # the Predict dock heard of it without being asked
    assert "tiny-unet" in predict.model.choices
    # progress: every step seen, validation curves have a point per epoch, preview layer shown
    assert w.steps == [1, 2, 3, 4]
    assert len(w._series["miou"]) == 2 and all(np.isfinite(w._series["miou"]))
    assert PREVIEW_LAYER in viewer.layers
    assert viewer.layers[PREVIEW_LAYER].data.shape == vimg.data.shape
    assert is_helper_layer(viewer.layers[PREVIEW_LAYER])  # never offered as data
    hist = json.loads((w.result.run_dir / "history.json").read_text())
    assert [h["step"] for h in hist] == [2, 4]
    assert "Registered model" in w.status.text()
    assert w.register_anyway.native.isHidden()
    # the name is taken now: a second start is refused before anything runs
    assert w.start() is None and "exists" in w.status.text()


def test_stop_then_resume_continues_the_run(make_napari_viewer, qtbot, dirs):
    import torch

    from napari_microseg.gui.widgets.train import TrainWidget

    viewer = make_napari_viewer()
    img, lab = add_sample(viewer, 2, "c")
    w = TrainWidget(viewer)
    w.reset_choices()
    w.image.value, w.labels.value = img, lab  # no pair added: the chosen layers train
    tiny_settings(w, "resumed", epochs=3, steps=2)
    assert w.start() is not None
    w.stop()  # polled after the first step
    qtbot.waitUntil(lambda: not w.running, timeout=180000)
    assert w.error is None, w.error
    assert w.result.stopped and w.result.model_name is None
    run_dir = w.result.run_dir
    stopped_at = torch.load(run_dir / "last.pt", weights_only=False)["step"]
    assert 1 <= stopped_at < 6
    assert w.resume_button.enabled and "Resume" in w.status.text()

    # settings changed after the stop do not change the resumed run
    w.epochs.value = 50
    assert w.resume() is not None
    qtbot.waitUntil(lambda: not w.running, timeout=180000)
    assert w.error is None, w.error
    assert not w.result.stopped and w.result.run_dir == run_dir
    # the run continued (the curves too): steps after the checkpoint follow on, none repeats,
    # and it ended at 3 epochs x 2 steps
    assert w.steps == list(range(1, 7))
    assert torch.load(run_dir / "last.pt", weights_only=False)["step"] == 6
    hist = json.loads((run_dir / "history.json").read_text())
    assert [h["step"] for h in hist] == [2, 4, 6]
    assert w.result.model_name == "resumed"
    assert not w.resume_button.enabled


def test_empty_labels_refused_before_anything_starts(make_napari_viewer, qtbot, dirs, monkeypatch):
    from napari_microseg.gui.widgets import train as mod

    shown = []
    monkeypatch.setattr(mod, "show_error", shown.append)
    viewer = make_napari_viewer()
    img = viewer.add_image(np.random.default_rng(0).random((96, 96)).astype(np.float32), name="img")
    lab = viewer.add_labels(np.zeros((96, 96), np.int32), name="empty")
    w = mod.TrainWidget(viewer)
    w.reset_choices()
    w.image.value, w.labels.value = img, lab
    tiny_settings(w, "never")
    assert w.start() is None
    assert shown and "empty" in shown[0] and "label some objects" in shown[0]
    assert w.status.text() == shown[0]
    assert w.run is None and not w.running and w.start_button.enabled
    assert not (dirs / "runs").exists()
    # mismatched shapes and a patch larger than the image are refused the same way
    lab.data = np.pad(np.ones((10, 10), np.int32), ((0, 20), (0, 20)))
    w.reset_choices()
    w.image.value, w.labels.value = img, lab
    assert w.start() is None and "differ in shape" in shown[-1]
    lab2 = viewer.add_labels(np.pad(np.ones((10, 10), np.int32), 43), name="one object")
    w.labels.value = lab2
    w.patch.value = 128
    assert w.start() is None and "smaller than the patch size" in shown[-1]
    assert w.run is None and not (dirs / "runs").exists()


def test_one_class_id_named_two_ways_is_refused_before_anything_starts(make_napari_viewer, dirs,
                                                                        monkeypatch):
    """Two labels layers whose class 1 is 'loop' in one and 'void' in the other: the model would merge them."""
    from napari_microseg.gui.widgets import train as mod

    shown = []
    monkeypatch.setattr(mod, "show_error", shown.append)
    viewer = make_napari_viewer()
    img, lab = add_sample(viewer, 0, "a")
    vimg, vlab = add_sample(viewer, 1, "b")
    classes = [dict(c) for c in vlab.metadata["classes"]]
    used = {int(c) for c in vlab.features["class_id"] if c > 0}
    first = next(c for c in classes if int(c["id"]) in used)
    before = first["name"]
    first["name"] = "not a loop"
    vlab.metadata = {**vlab.metadata, "classes": classes}
    w = mod.TrainWidget(viewer)
    w.reset_choices()
    w.image.value, w.labels.value = img, lab
    w.add_pair("train")
    w.image.value, w.labels.value = vimg, vlab
    w.add_pair("validation")
    tiny_settings(w, "merged")
    assert w.start() is None
    assert shown and f"'{before}'" in shown[-1] and "'not a loop'" in shown[-1], shown
    assert w.run is None and not (dirs / "runs").exists()
