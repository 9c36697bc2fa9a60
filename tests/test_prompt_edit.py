"""Editing an existing object: its mask is the start, corrective clicks change it (issue 16 item 3)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.core.prompting.base import Prediction, PromptBackend, Prompts, RegionMask
from napari_microseg.core.prompting.baselines import OtsuFloodBackend, edit_start_mask
from napari_microseg.core.prompting.object_edit import object_region, replace_object
from napari_microseg.core.prompting.session import PromptSession
from test_prompt_strokes import disc_scene


def iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


@pytest.fixture
def scene():
    """Dark discs on a bright, noisy background: A and B touch, C stands alone."""
    return disc_scene((160, 200), [(60, 60, 20), (60, 97, 17), (120, 150, 15)], noise=0.04)


def test_region_mask_roundtrip_and_window_crop():
    full = np.zeros((50, 60), bool)
    full[10:20, 30:35] = True
    reg = RegionMask.from_full(full, pad=2)
    assert reg.offset == (8, 28) and reg.mask.shape == (14, 9)
    assert reg.bbox() == (10, 30, 19, 34)
    np.testing.assert_array_equal(reg.full(full.shape), full)
    np.testing.assert_array_equal(reg.crop(slice(15, 25), slice(0, 60)), full[15:25])
    assert reg.shifted(-8, -28).offset == (0, 0)
    assert not RegionMask.from_full(np.zeros((4, 4), bool)).any()


def test_otsu_edit_negative_click_cuts_a_merged_neighbour(scene):
    img, truth = scene
    start = (truth == 1) | (truth == 2)  # a model merged A and B
    start_before, img_before = start.copy(), img.copy()
    s = PromptSession(OtsuFloodBackend())
    s.set_image(img)
    s.start_from(start)
    pred = s.predict([[60, 100]], [0])  # one negative click on B
    assert pred.mask.sum() < start.sum()
    assert iou(pred.mask, truth == 1) > 0.9
    assert np.count_nonzero(pred.mask & (truth == 2)) < 0.1 * np.count_nonzero(truth == 2)
    np.testing.assert_array_equal(start, start_before)
    np.testing.assert_array_equal(img, img_before)


def test_otsu_edit_cuts_overshoot_and_adds_a_component(scene):
    img, truth = scene
    from scipy import ndimage as ndi

    grown = ndi.binary_dilation(truth == 3, iterations=5)  # overshoots into background
    s = PromptSession(OtsuFloodBackend())
    s.set_image(img)
    s.start_from(grown)
    assert iou(s.predict([[120, 150 + 18]], [0]).mask, truth == 3) > 0.9
    s.start_from(truth == 3)
    both = s.predict([[60, 60]], [1]).mask  # a positive click adds A's component
    assert both[truth == 3].all() and both[truth == 1].all()


def test_edit_start_mask_without_other_core_drops_the_component():
    start = np.zeros((30, 30), bool)
    start[10:20, 10:20] = True
    out = edit_start_mask(start, start.copy(), np.zeros((0, 2), int), np.array([[15, 15]]))
    assert not out.any() and start.sum() == 100


class Recorder(PromptBackend):
    """Echoes the start mask (minus a 3x3 square at each negative click) and records prompts."""

    name = "recorder"

    def __init__(self):
        self.seen = []

    def set_image(self, image, *, progress=None):
        self.shape = image.shape

    def mask_prior(self, start, shape):
        return ("prior", start.bbox(), tuple(shape))

    def predict(self, prompts):
        self.seen.append(prompts)
        m = np.zeros(self.shape, bool) if prompts.start_mask is None else prompts.start_mask.full(self.shape)
        for (r, c), lab in zip(np.rint(prompts.points).astype(int), prompts.labels, strict=True):
            if not lab:
                m[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = False
        return Prediction(m, 1.0, ("logits", len(self.seen)))


def test_session_feeds_the_start_mask_as_prior_then_refines_from_previous_logits():
    be = Recorder()
    s = PromptSession(be)
    s.set_image(np.zeros((40, 50), np.float32))
    start = np.zeros((40, 50), bool)
    start[5:15, 20:30] = True
    s.start_from(start)
    a = s.predict([[10, 25]], [0])
    assert be.seen[-1].mask_logits == ("prior", (5, 20, 14, 29), (40, 50))
    assert be.seen[-1].start_mask.bbox() == (5, 20, 14, 29)
    assert a.mask.sum() == 100 - 9
    s.predict([[10, 25], [6, 21]], [0, 0])
    assert be.seen[-1].mask_logits == ("logits", 1)  # refinement, start mask still known
    assert be.seen[-1].start_mask is not None
    s.predict([[10, 25]], [0], use_previous=False)  # e.g. a fresh box: the prior comes back
    assert be.seen[-1].mask_logits[0] == "prior"
    s.reset()
    s.predict([[10, 25]], [1])
    assert be.seen[-1].start_mask is None and be.seen[-1].mask_logits is None
    with pytest.raises(ValueError):
        s.start_from(np.zeros((40, 50), bool))
    with pytest.raises(ValueError):
        s.start_from(np.zeros((4, 5), bool))


def test_tiled_session_shifts_the_start_mask_into_the_tile():
    from test_tiling import BoxEchoBackend

    be = BoxEchoBackend()
    s = PromptSession(be, tile_size=256, halo=32)
    s.set_image(np.zeros((600, 600), np.float32))
    start = np.zeros((600, 600), bool)
    start[400:420, 430:450] = True
    s.start_from(start)
    s.predict([[410, 440]], [0])
    tile = s.last_tile
    assert tile.r0 > 0 and be.calls[-1].start_mask.bbox() == (400 - tile.r0, 430 - tile.c0,
                                                             419 - tile.r0, 449 - tile.c0)


def test_promptable_model_negative_click_shrinks_a_merged_mask(scene, torch_one_thread):
    from napari_microseg.core.promptable import load_default

    img, truth = scene
    be = load_default()
    s = PromptSession(be)
    s.set_image(img)
    start = (truth == 1) | (truth == 2)
    prior = be.mask_prior(RegionMask.from_full(start), img.shape)
    assert (prior.logits > 0).sum() == start.sum()  # the prior is exactly the object
    s.start_from(start)
    pred = s.predict([[60, 102]], [0])  # negative click on B
    b = truth == 2
    assert pred.mask.sum() < start.sum()
    assert np.count_nonzero(pred.mask & b) < 0.5 * b.sum()
    assert np.count_nonzero(pred.mask & (truth == 1)) > 0.5 * np.count_nonzero(truth == 1)
    assert np.count_nonzero(pred.mask & (truth == 0)) < 50  # nothing new outside the objects


def test_replace_object_is_one_undoable_edit_keeping_id_and_class():
    from napari_microseg.core.annotate import undo_edit

    labels = np.zeros((30, 30), np.int32)
    labels[5:15, 5:15] = 4
    labels[5:15, 15:20] = 2
    inst = {4: 3, 2: 1}
    before, inst_before = labels.copy(), dict(inst)
    reg = object_region(labels, 4)
    assert reg.bbox() == (5, 5, 14, 14) and reg.mask.all()
    new = np.zeros((30, 30), bool)
    new[8:20, 8:22] = True  # shrinks on one side, grows over object 2 and background
    edit = replace_object(labels, new, inst, label=4, class_id=3)
    assert edit.label == 4 and inst == {4: 3, 2: 1}
    assert (labels == 4).sum() == (new & (before != 2)).sum()  # object 2 kept without overwrite
    assert labels[5, 5] == 0 and labels[19, 21] == 4 and (labels == 2).sum() == (before == 2).sum()
    undo_edit(labels, inst, edit)
    np.testing.assert_array_equal(labels, before)
    assert inst == inst_before
    edit = replace_object(labels, new, inst, label=4, class_id=5, overwrite=True)
    assert inst[4] == 5 and labels[10, 17] == 4
    undo_edit(labels, inst, edit)
    np.testing.assert_array_equal(labels, before)
    assert inst == inst_before
    assert replace_object(labels, np.zeros((30, 30), bool), inst, label=4) is None


@pytest.mark.slow
def test_sam2_gets_the_start_mask_as_mask_input(tmp_path, monkeypatch):
    pytest.importorskip("sam2")
    from napari_microseg.core.prompting.sam2_backend import Sam2Backend
    from napari_microseg.core.weights import ENV_CHECKPOINT, ENV_WEIGHTS_DIR

    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)
    be = Sam2Backend("sam2.1-tiny", device="cpu", allow_random_weights=True)
    seen = {}
    original = be.predictor._predict

    def recording(point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True, **kw):
        seen["mask_input"] = None if mask_input is None else mask_input.numpy().copy()
        return original(point_coords, point_labels, boxes, mask_input, multimask_output, **kw)

    monkeypatch.setattr(be.predictor, "_predict", recording)
    s = PromptSession(be)
    s.set_image(np.random.default_rng(0).random((512, 512)).astype(np.float32))
    start = np.zeros((512, 512), bool)
    start[100:300, 200:400] = True
    s.start_from(start)
    s.predict([[200, 300]], [0])
    m = seen["mask_input"]
    assert m.shape == (1, 1, 256, 256)
    assert m[0, 0, 75, 150] > 5 and m[0, 0, 10, 10] < -5  # inside / outside the object
    assert Prompts([[1, 1]], [0]).start_mask is None
