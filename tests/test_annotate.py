"""Core label editing: commit/undo, box files, segment-everything de-duplication."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from napari_microseg.core.annotate import commit_mask, next_label, read_box_file, undo_edit
from napari_microseg.core.errors import LabelsError
from napari_microseg.core.prompting.base import Prediction, PromptBackend
from napari_microseg.core.prompting.everything import point_grid, segment_everything
from napari_microseg.core.prompting.session import PromptSession


def test_commit_and_undo_restore_exactly():
    lab = np.zeros((20, 20), np.uint16)
    lab[2:6, 2:6] = 4
    inst = {4: 2}
    before = lab.copy()
    m = np.zeros_like(lab, bool)
    m[4:10, 4:10] = True
    e = commit_mask(lab, m, inst, class_id=1)
    assert e.label == 5 == next_label(before)
    assert (lab == 4).sum() == 16 and (lab == 5).sum() == 36 - 4  # existing pixels kept
    assert inst == {4: 2, 5: 1}
    undo_edit(lab, inst, e)
    assert np.array_equal(lab, before) and inst == {4: 2}
    # overwrite: object 4 painted over completely loses its class, undo brings it back
    m2 = np.zeros_like(m)
    m2[0:8, 0:8] = True
    e = commit_mask(lab, m2, inst, class_id=3, overwrite=True)
    assert 4 not in np.unique(lab) and inst == {5: 3}
    undo_edit(lab, inst, e)
    assert np.array_equal(lab, before) and inst == {4: 2}


def test_commit_nothing_and_dtype_limits():
    lab = np.ones((5, 5), np.uint8)
    assert commit_mask(lab, np.ones((5, 5), bool), {}) is None  # all covered, no overwrite
    assert commit_mask(lab, np.zeros((5, 5), bool), {}, overwrite=True) is None
    lab[:] = 255
    with pytest.raises(LabelsError, match="does not fit"):
        commit_mask(lab, np.ones((5, 5), bool), {}, overwrite=True)
    with pytest.raises(LabelsError, match="shape"):
        commit_mask(lab, np.ones((4, 5), bool), {})


def test_read_box_file(tmp_path):
    f = tmp_path / "b.txt"
    f.write_text("# comment\n1 2 10 20\n\n5,6,7,8\n0 -3 400 10\n")
    boxes = read_box_file(f, shape=(100, 100))
    assert boxes.tolist() == [[1, 2, 10, 20], [5, 6, 7, 8], [0, 0, 99, 10]]
    f.write_text("1 2 3\n")
    with pytest.raises(LabelsError, match="line 1"):
        read_box_file(f)
    f.write_text("10 10 2 20\n")
    with pytest.raises(LabelsError, match="max < min"):
        read_box_file(f)


class DiscBackend(PromptBackend):
    """Returns the disc under a click (from known discs), else a background blob."""

    name = "discs"

    def __init__(self, truth):
        self.truth = truth

    def set_image(self, image, *, progress=None):
        pass

    def predict(self, prompts):
        r, c = np.round(prompts.points[0]).astype(int)
        i = self.truth[r, c]
        mask = self.truth == i if i else np.zeros_like(self.truth, bool)
        return Prediction(mask=mask, score=0.9 if i else 0.1)


def test_segment_everything_keeps_each_object_once():
    truth = np.zeros((120, 120), np.int32)
    for i, (r, c) in enumerate([(30, 30), (30, 90), (90, 60)], start=1):
        truth[disk((r, c), 14)] = i
    session = PromptSession(DiscBackend(truth))
    session.set_image(np.zeros((120, 120), np.float32))
    cand = segment_everything(session, spacing=8, min_area_px=10)
    assert cand.max() == 3  # many grid clicks per disc, one candidate each
    for i in (1, 2, 3):
        (j,) = set(np.unique(cand[truth == i]))
        assert np.array_equal(cand == j, truth == i)
    assert len(point_grid((120, 120), 8)) == 15 * 15


def _commit_reference(labels, mask, inst, class_id, overwrite):
    """commit_mask as first written (whole-image operations), to check the windowed one against."""
    mask = mask & (labels == 0) if not overwrite else mask
    if not mask.any():
        return None
    label = int(labels.max()) + 1
    index = np.nonzero(mask)
    previous = labels[index].copy()
    labels[index] = label
    prev = {label: inst[label]} if label in inst else {}
    for g in set(np.unique(previous)) - {0} - set(np.unique(labels)):
        if int(g) in inst:
            prev[int(g)] = inst.pop(int(g))
    if class_id:
        inst[label] = class_id
    return label, index, previous, prev


@pytest.mark.parametrize("overwrite", [False, True])
def test_commit_mask_works_on_the_window_with_the_same_result(overwrite):
    """The mask's bounding box is all commit_mask reads: same pixels, order, previous values and classes."""
    from napari_microseg.core.annotate import mask_window

    rng = np.random.default_rng(3)
    for _trial in range(20):
        lab = np.zeros((64, 80), np.int32)
        for i in range(1, 8):
            r, c = rng.integers(0, 56), rng.integers(0, 72)
            lab[r:r + rng.integers(2, 9), c:c + rng.integers(2, 9)] = i
        inst = {i: 1 + i % 2 for i in range(1, 8)}
        mask = np.zeros(lab.shape, bool)
        r, c = rng.integers(0, 50), rng.integers(0, 66)
        mask[r:r + rng.integers(1, 15), c:c + rng.integers(1, 15)] = True
        mask &= rng.random(lab.shape) < 0.9
        ref_lab, ref_inst = lab.copy(), dict(inst)
        want = _commit_reference(ref_lab, mask, ref_inst, 5, overwrite)
        e = commit_mask(lab, mask, inst, class_id=5, overwrite=overwrite)
        np.testing.assert_array_equal(lab, ref_lab)
        assert inst == ref_inst
        if want is None:
            assert e is None
            continue
        assert e.label == want[0] and e.previous_class == want[3]
        for a, b in zip(e.index, want[1], strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(e.previous, want[2])
    assert mask_window(np.zeros((4, 4), bool)) is None
    m3 = np.zeros((3, 5, 6), bool)
    m3[1, 2:4, 3] = True
    assert mask_window(m3) == (slice(1, 2), slice(2, 4), slice(3, 4))
