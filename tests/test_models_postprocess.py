"""Post-processing of probability maps on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.errors import CalibrationError, MicrosegError
from napari_microseg.core.models import (
    PostprocessSettings,
    clean_mask,
    instance_classes_from_semantic,
    instance_labels,
    min_area_px,
    postprocess,
    remove_small,
    semantic_labels,
    watershed_split,
)


def disc(shape, r, c, rad):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - r) ** 2 + (xx - c) ** 2 <= rad**2


def test_semantic_labels_take_the_most_probable_class_above_its_threshold():
    prob = np.zeros((2, 1, 4), np.float32)
    prob[:, 0, 0] = [0.6, 0.4]  # class A below its 0.7, B above its 0.3 -> B
    prob[:, 0, 1] = [0.8, 0.9]  # both above -> the more probable, B
    prob[:, 0, 2] = [0.8, 0.2]  # only A
    prob[:, 0, 3] = [0.1, 0.2]  # none
    out = semantic_labels(prob, {4: 0.7, 6: 0.3}, class_ids=[4, 6])
    assert out.tolist() == [[6, 6, 4, 0]]
    assert semantic_labels(prob, 0.5).tolist() == [[1, 2, 1, 0]]
    assert semantic_labels(prob, [0.9, 0.95]).tolist() == [[0, 0, 0, 0]]
    with pytest.raises(MicrosegError, match="3 thresholds for 2 classes"):
        semantic_labels(prob, [0.1, 0.2, 0.3])


def test_watershed_splits_two_touching_discs():
    mask = disc((60, 90), 30, 28, 16) | disc((60, 90), 30, 58, 16)
    assert instance_labels(mask, "cc").max() == 1
    lab = watershed_split(mask, min_distance=5)
    assert lab.max() == 2
    a, b = lab[30, 20], lab[30, 66]
    assert a != b and a > 0 and b > 0
    assert np.array_equal(lab > 0, mask)
    # each part is essentially one disc
    for rc, part in (((30, 28), a), ((30, 58), b)):
        d = disc(mask.shape, *rc, 16)
        assert (lab == part)[d].mean() > 0.9
    # a single disc is not over-split, an isolated pixel keeps a marker
    single = disc((40, 40), 20, 20, 12)
    single[2, 2] = True
    assert watershed_split(single, 5).max() == 2
    with pytest.raises(MicrosegError, match="not one of"):
        instance_labels(mask, "slic")


def test_minimum_size_in_nm2_needs_and_uses_the_pixel_size():
    ps = PixelSize.isotropic(2.0, "user")  # 4 nm² per pixel
    assert min_area_px(100, "nm2", ps) == 25
    assert min_area_px(7, "px") == 7
    with pytest.raises(CalibrationError, match="calibrated"):
        min_area_px(100, "nm2", PixelSize.uncalibrated())
    prob = np.zeros((1, 40, 40), np.float32)
    prob[0, 2:6, 2:7] = 1  # 20 px = 80 nm²
    prob[0, 20:26, 20:25] = 1  # 30 px = 120 nm²
    s = PostprocessSettings(min_size=100, min_size_unit="nm2")
    res = postprocess(prob, [3], s, pixel_size=ps)
    assert res.labels.max() == 1 and res.labels[22, 22] == 1 and res.labels[3, 3] == 0
    assert res.instance_classes == {1: 3}


def test_fill_holes_open_close_and_smoothing():
    ring = disc((40, 40), 20, 20, 12) & ~disc((40, 40), 20, 20, 5)
    assert not clean_mask(ring)[20, 20]
    filled = clean_mask(ring, fill_holes=True)
    assert np.array_equal(filled, disc((40, 40), 20, 20, 12))
    line = np.zeros((30, 30), bool)
    line[15, 2:28] = True
    block = np.zeros((30, 30), bool)
    block[5:12, 5:12] = True
    opened = clean_mask(line | block, open_radius=1)
    assert not opened[15].any() and opened[8, 8]
    gap = np.zeros((20, 30), bool)
    gap[5:15, 3:14] = True
    gap[5:15, 15:27] = True
    closed = clean_mask(gap, close_radius=2)
    assert closed[10, 14] and not closed[0, 0] and instance_labels(closed).max() == 1
    jag = disc((40, 40), 20, 20, 10)
    jag[10, 20] = jag[9, 20] = True  # one-pixel spike
    smooth = clean_mask(jag, smooth_sigma=1.5)
    assert not smooth[9, 20] and smooth[20, 20]


def test_postprocess_separates_classes_and_splits_touching_objects():
    shape = (60, 120)
    a = disc(shape, 30, 20, 12) | disc(shape, 30, 42, 12)  # two touching discs, class 1
    b = disc(shape, 30, 90, 12)  # class 5, touching nothing
    prob = np.zeros((2, *shape), np.float32)
    prob[0][a] = 0.9
    prob[1][b] = 0.8
    prob[1][30, 55:79] = 0.6  # thin bridge to a, class 5
    cc = postprocess(prob, [1, 5], PostprocessSettings())
    assert cc.labels.max() == 2  # a (merged), b+bridge
    ws = postprocess(prob, [1, 5], PostprocessSettings(instances="watershed", open_radius=1))
    assert ws.labels.max() == 3
    assert sorted(ws.instance_classes.values()) == [1, 1, 5]
    assert ws.semantic[30, 60] == 0 and ws.semantic[30, 90] == 5  # bridge opened away
    assert instance_classes_from_semantic(ws.labels, ws.semantic) == ws.instance_classes
    high = postprocess(prob, [1, 5], PostprocessSettings(thresholds={1: 0.95, 5: 0.5}))
    assert set(high.instance_classes.values()) == {5}


def test_majority_class_and_remove_small_relabels():
    labels = np.array([[1, 1, 1, 0, 2, 2], [1, 1, 3, 0, 2, 0]])
    sem = np.array([[4, 4, 2, 0, 0, 0], [4, 0, 2, 0, 0, 0]])
    assert instance_classes_from_semantic(labels, sem) == {1: 4, 3: 2}
    small = remove_small(labels, 2)
    assert small.max() == 2 and small[1, 2] == 0 and small[0, 4] == 2
