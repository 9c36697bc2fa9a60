"""The committed objects' size hints a first click: the rule, the session, the backend, the eval."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_microseg.core.promptable import CropConfig, PromptableBackend
from napari_microseg.core.promptable.crops import HINT_SIDES, hinted_side
from napari_microseg.core.prompting.base import Prediction, PromptBackend, Prompts
from napari_microseg.core.prompting.eval_data import Sample, divide_objects
from napari_microseg.core.prompting.session import PromptSession
from napari_microseg.core.prompting.size_prior import (
    MIN_HINT_OBJECTS,
    evaluate_size_prior,
    object_areas,
    size_hint,
)


class Inside(torch.nn.Module):
    """Stand-in network: the object is wherever the image channel is above zero."""

    def forward(self, x):
        return 10.0 * x[:, :1]


def test_hinted_side_is_three_object_sides_snapped_to_the_grid():
    assert hinted_side(100) == 32  # 3 x 10 = 30 px
    assert hinted_side(25) == 24  # 15 px: the smallest window
    assert hinted_side(440) == 64  # 63 px
    assert hinted_side(1e6) == 128  # 3000 px: the largest
    assert hinted_side(0) == 24
    assert all(hinted_side(a) in HINT_SIDES for a in np.geomspace(1, 1e5, 50))


def test_size_hint_needs_enough_objects_and_is_their_median():
    assert size_hint([10.0] * (MIN_HINT_OBJECTS - 1)) is None
    assert size_hint([10, 20, 30, 40, 1000]) == 30.0
    assert size_hint([0, 0, 10, 20, 30, 40]) is None  # empty objects do not count


def test_backend_sizes_only_a_first_click_by_the_hint():
    from napari_microseg.core.prompting.baselines import OtsuFloodBackend

    assert PromptableBackend.uses_size_hint and not OtsuFloodBackend.uses_size_hint
    be = PromptableBackend(Inside(), CropConfig())
    image = -np.ones((400, 400), np.float32)
    image[195:206, 195:206] = 1.0  # an 11 x 11 object
    be.set_image(image)
    be.predict(Prompts([[200, 200]], [1]))
    assert [w.side for w in be.last_windows] == [64]
    be.predict(Prompts([[200, 200]], [1], size_hint=121.0))
    assert [w.side for w in be.last_windows] == [hinted_side(121.0)] == [32]
    be.predict(Prompts([[200, 200]], [1], size_hint=1e5))
    assert [w.side for w in be.last_windows] == [128]
    # a refinement (previous logits) or a box is sized as before
    prev = be.predict(Prompts([[200, 200]], [1])).logits
    be.predict(Prompts([[200, 200], [150, 150]], [1, 0], mask_logits=prev, size_hint=1e5))
    assert be.last_windows[0].side < 128
    be.predict(Prompts(box=[195, 195, 205, 205], size_hint=1e5))
    assert be.last_windows[0].side == 25  # 1.5 x 11 + 8, the box rule


class Recorder(PromptBackend):
    name = "recorder"
    needs_embedding = False

    def __init__(self):
        self.seen = []

    def set_image(self, image, *, progress=None):
        self.shape = np.shape(image)

    def predict(self, prompts):
        self.seen.append(prompts.size_hint)
        return Prediction(np.zeros(self.shape, bool), 0.0, None)


def test_session_hints_after_enough_commits_of_the_same_kind_and_forgets():
    rec = Recorder()
    s = PromptSession(rec)
    s.set_image(np.zeros((50, 50), np.uint8))
    for a in (10, 20, 30, 40):
        s.note_committed(a, key=1)
    s.size_key = 1
    s.predict([[5, 5]], [1])
    assert rec.seen[-1] is None  # four objects: no hint yet
    s.note_committed(50, key=1)
    s.note_committed(5000, key=2)  # another class does not count
    s.predict([[5, 5]], [1])
    assert rec.seen[-1] == 30.0 and s.size_hint == 30.0
    s.size_key = 2
    assert s.size_hint is None
    s.size_key = 1
    s.forget_committed(2)  # undo the last two commits (the class-2 one and the 50 px one)
    assert s.size_hint is None
    s.note_committed(50)  # the current key
    assert s.size_hint == 30.0
    s.size_prior = False
    s.predict([[5, 5]], [1])
    assert rec.seen[-1] is None
    s.size_prior = True
    s.set_image(np.zeros((50, 50), np.uint8))  # a new image starts afresh
    assert s.size_hint is None


def test_divide_objects_and_areas_for_labels_and_boxes():
    labels = np.zeros((20, 20), np.int32)
    for i in range(1, 7):
        labels[i * 3 - 2 : i * 3, 0:i] = i  # object i: 2 x i pixels
    boxes = np.array([[0, 0, 1, 1], [5, 5, 8, 6], [10, 10, 19, 19]], float)
    img = np.zeros((20, 20), np.uint8)
    (a,), (b,) = divide_objects([Sample("x", img, labels)], lambda n: 4, seed=1)
    assert len(np.unique(a.target)) - 1 == 4 and len(np.unique(b.target)) - 1 == 2
    assert not np.any((a.target > 0) & (b.target > 0))
    assert sorted(object_areas(labels)) == [2, 4, 6, 8, 10, 12]
    (a,), (b,) = divide_objects([Sample("y", img, boxes)], lambda n: 2, seed=1)
    assert len(a.target) == 2 and len(b.target) == 1
    assert sorted(map(tuple, np.vstack([a.target, b.target]))) == sorted(map(tuple, boxes))
    np.testing.assert_allclose(object_areas(boxes), np.pi / 4 * np.array([4, 8, 100]))


def test_evaluate_size_prior_scores_the_remaining_objects_with_and_without():
    """'with' is exactly the first click through the hinted window; 'without' the fixed one."""
    import dataclasses

    from napari_microseg.core.prompting.evaluation import evaluate_clicks

    img = np.full((200, 200), -1.0, np.float32)
    labels = np.zeros((200, 200), np.int32)
    k = 0
    for r in range(10, 200, 20):
        for c in range(10, 200, 20):
            k += 1
            img[r - 2 : r + 3, c - 2 : c + 3] = 1.0
            labels[r - 2 : r + 3, c - 2 : c + 3] = k
    be = PromptableBackend(Inside(), CropConfig())
    r = evaluate_size_prior(be, [Sample("grid", img, labels)], 10, n_corrective=0)
    assert r["hints"] == {"grid": 25.0}
    assert r["without"]["n_objects"] == r["with"]["n_objects"] == k - 10
    _, rest = divide_objects([Sample("grid", img, labels)], lambda n: 10, seed=0)
    fixed = evaluate_clicks(be, rest, n_corrective=0)["mean_iou"][0]
    assert r["without"]["mean_iou"][0] == pytest.approx(fixed)
    be24 = PromptableBackend(Inside(), dataclasses.replace(CropConfig(), min_side=24))
    hinted = evaluate_clicks(be24, rest, n_corrective=0)["mean_iou"][0]
    assert r["with"]["mean_iou"][0] == pytest.approx(hinted)
    assert hinted != pytest.approx(fixed)  # the window matters for this stand-in
