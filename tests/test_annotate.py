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
