"""Core label corrections: exact pixels, ids and classes on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.core import correct as C
from napari_microseg.core.errors import LabelsError


def applied(labels, change):
    """``labels`` with ``change`` written, checking the input was left alone."""
    before = labels.copy()
    out = C.apply_change(labels.copy(), change)
    np.testing.assert_array_equal(labels, before)
    return out


@pytest.fixture
def three():
    lab = np.zeros((8, 12), np.int32)
    lab[1:3, 1:3] = 4   # 4 px
    lab[1:4, 5:8] = 2   # 9 px
    lab[5:7, 1:11] = 9  # 20 px
    return lab


def test_ids_at_skips_background_repeats_and_outside(three):
    pts = [[1.4, 1.6], [2, 6], [0, 0], [1.2, 2.2], [-3, 4], [6, 20], [5.6, 9.7]]
    assert C.ids_at(three, pts) == [4, 2, 9]


def test_merge_into_smallest_id_with_class_of_largest_classified(three):
    ch = C.merge(three, [9, 4, 2, 77], {4: 5, 9: 3})
    out = applied(three, ch)
    expected = three.copy()
    expected[three > 0] = 2
    np.testing.assert_array_equal(out, expected)
    # id 2 had no class: it takes the class of the largest classified member (9: 20 px > 4: 4 px)
    assert ch.instance_classes == {2: 3}
    assert ch.mapping == {4: 2, 9: 2}
    assert ch.n_pixels == 24 and out.dtype == three.dtype


def test_merge_keeps_target_class_and_needs_two(three):
    assert C.merge(three, [2, 9], {2: 1, 9: 3, 4: 6}).instance_classes == {2: 1, 4: 6}
    with pytest.raises(LabelsError, match="at least two"):
        C.merge(three, [2, 55], {})


def test_delete_drops_pixels_and_classes(three):
    ch = C.delete(three, [4, 9], {4: 1, 2: 2, 9: 3})
    out = applied(three, ch)
    assert set(np.unique(out)) == {0, 2}
    np.testing.assert_array_equal(out == 2, three == 2)
    assert ch.instance_classes == {2: 2} and ch.mapping == {4: 0, 9: 0}
    with pytest.raises(LabelsError, match="Select"):
        C.delete(three, [], {})


def test_set_class():
    assert C.set_class({1: 2, 3: 4}, [3, 5], 6) == {1: 2, 3: 6, 5: 6}
    assert C.set_class({1: 2, 3: 4}, [1], 0) == {3: 4}


def test_rasterized_line_is_four_connected():
    m = C.rasterize_polyline((6, 6), [[0, 0], [5, 5]])
    from scipy import ndimage as ndi

    assert ndi.label(m)[1] == 1  # 4-connected by default structure
    assert m[0, 0] and m[5, 5] and m.sum() == 11
    closed = C.rasterize_polyline((6, 6), [[1, 1], [1, 4], [4, 4], [4, 1]], closed=True)
    ring = np.zeros((6, 6), bool)
    ring[1:5, 1:5] = True
    ring[2:4, 2:4] = False
    np.testing.assert_array_equal(closed, ring)


def test_split_along_vertical_line_exact():
    lab = np.zeros((7, 9), np.uint16)
    lab[1:6, 1:8] = 3
    lab[0, 0] = 1  # untouched neighbour
    ch = C.split_along_line(lab, [np.array([[-2.0, 4.2], [8.0, 3.8]])], {3: 2, 1: 5})
    out = applied(lab, ch)
    assert ch.created == [4]
    assert (out[1:6, 1:4] == 3).all() and (out[1:6, 5:8] == 4).all()
    # the line's own pixels went to one of the two sides, nowhere else
    assert set(np.unique(out[1:6, 4])) <= {3, 4}
    assert out[0, 0] == 1 and (out[lab == 0] == 0).all()
    assert ch.instance_classes == {3: 2, 4: 2, 1: 5}


def test_split_diagonal_line_does_not_leak_and_largest_keeps_id():
    lab = np.zeros((10, 10), np.int32)
    lab[1:9, 1:9] = 6
    ch = C.split_along_line(lab, [np.array([[0, 3], [9, 12]])], {})
    out = applied(lab, ch)
    assert set(np.unique(out)) == {0, 6, 7}
    # the lower-left part (below the diagonal) is larger and keeps 6
    assert out[8, 1] == 6 and out[1, 8] == 7
    assert np.count_nonzero(out == 6) > np.count_nonzero(out == 7)
    assert np.count_nonzero(out) == 64


def test_split_line_that_does_not_cross_is_an_error_and_keeps_disconnected_parts():
    lab = np.zeros((8, 12), np.int32)
    lab[1:7, 1:5] = 5
    lab[1:7, 8:11] = 5  # object 5 already in two pieces
    with pytest.raises(LabelsError, match="does not cut"):
        C.split_along_line(lab, [np.array([[0, 2], [3, 2]])], {})  # dead-ends inside
    ch = C.split_along_line(lab, [np.array([[3.0, 0.0], [3.0, 6.0]])], {5: 1})
    out = applied(lab, ch)
    # the cut piece on the left splits; the right piece (never touched) keeps id 5
    assert (out[1:7, 8:11] == 5).all()
    assert set(np.unique(out[1:7, 1:5])) == {5, 6}
    assert ch.created == [6] and ch.instance_classes == {5: 1, 6: 1}


def test_split_closed_polygon_cuts_inside_out():
    lab = np.zeros((12, 12), np.int32)
    lab[1:11, 1:11] = 2
    ch = C.split_along_line(lab, [np.array([[3, 3], [3, 8], [8, 8], [8, 3]])], {}, closed=True)
    out = applied(lab, ch)
    assert (out[4:8, 4:8] == 3).all() and out[1, 1] == 2 and out[10, 10] == 2


def dumbbell():
    from skimage.draw import disk

    d = np.zeros((9, 15), np.int32)
    d[disk((4, 3), 3.5)] = 1
    d[disk((4, 11), 3.5)] = 1
    d[3:6, 3:12] = 1
    return d


def test_watershed_distance_splits_at_the_neck():
    d = dumbbell()
    d[0, 14] = 8
    ch = C.split_by_seeds(d, [[4, 3], [4, 11], [0, 14]], {1: 5})
    out = applied(d, ch)
    assert ch.created == [9]
    left, right = out[:, :7], out[:, 8:]
    assert set(np.unique(left)) == {0, 1} and set(np.unique(right)) == {0, 8, 9}
    assert (out[d == 1] > 0).all() and out[0, 14] == 8
    assert ch.instance_classes == {1: 5, 9: 5}


def test_watershed_intensity_follows_the_bright_boundary():
    lab = np.zeros((6, 10), np.int32)
    lab[1:5, 1:9] = 3
    img = np.zeros(lab.shape)
    img[:, 6] = 10.0  # bright ridge at column 6: dark parts either side
    ch = C.split_by_seeds(lab, [[2, 2], [2, 8]], {}, elevation="intensity", image=img)
    out = applied(lab, ch)
    assert (out[1:5, 1:6] == 3).all() and (out[1:5, 7:9] == 4).all()
    with pytest.raises(LabelsError, match="image"):
        C.split_by_seeds(lab, [[2, 2], [2, 8]], {}, elevation="intensity")
    with pytest.raises(LabelsError, match="two or more"):
        C.split_by_seeds(lab, [[2, 2], [0, 0]], {})


def test_fill_holes_only_background_holes_and_size_limit():
    lab = np.zeros((12, 12), np.int32)
    lab[1:11, 1:11] = 1
    lab[3, 3] = 0                  # 1 px hole
    lab[6:9, 6:9] = 0              # 9 px hole ...
    lab[7, 7] = 2                  # ... holding another object: left alone
    lab[3:5, 7:9] = 0              # 4 px hole
    ch = C.fill_holes(lab, {1: 4})
    out = applied(lab, ch)
    assert out[3, 3] == 1 and (out[3:5, 7:9] == 1).all()
    assert (out[6:9, 6:9] == np.where(lab[6:9, 6:9] == 2, 2, 0)).all()
    assert ch.n_pixels == 5 and ch.instance_classes == {1: 4}
    small = applied(lab, C.fill_holes(lab, {}, [1], max_hole_area=2))
    assert small[3, 3] == 1 and (small[3:5, 7:9] == 0).all()
    assert C.fill_holes(lab, {}, [2]).n_pixels == 0


def test_remove_small_in_px_and_nm2(three):
    ch = C.remove_small(three, {4: 1, 2: 2}, 9)  # 4 px < 9; 9 px is kept
    assert set(np.unique(applied(three, ch))) == {0, 2, 9} and ch.instance_classes == {2: 2}
    # 0.5 nm pixels: 0.25 nm² each; 9 px = 2.25 nm², 20 px = 5 nm²
    ch = C.remove_small(three, {}, 3.0, pixel_area=0.25)
    assert set(np.unique(applied(three, ch))) == {0, 9}
    assert C.remove_small(three, {}, 1).n_pixels == 0


def test_renumber_maps_ids_and_classes(three):
    lab = three.astype(np.uint8)
    ch = C.renumber(lab, {4: 1, 9: 3, 55: 2})
    out = applied(lab, ch)
    assert out.dtype == np.uint8
    assert ch.mapping == {2: 1, 4: 2, 9: 3}
    np.testing.assert_array_equal(out, np.select([lab == 2, lab == 4, lab == 9], [1, 2, 3], 0))
    assert ch.instance_classes == {2: 1, 3: 3}
    assert C.renumber(out, ch.instance_classes).n_pixels == 0


def test_new_ids_that_do_not_fit_are_an_error():
    lab = np.zeros((4, 6), np.uint8)
    lab[:, :] = 255
    with pytest.raises(LabelsError, match="does not fit"):
        C.split_along_line(lab, [np.array([[0, 3], [3, 3]])], {})


def test_fingerprint_and_class_states():
    a = np.array([[0, 1, 1], [2, 0, 0]])
    b = np.array([[1, 1, 0], [0, 0, 2]])  # same ids and areas
    c = np.array([[0, 1, 1], [1, 0, 0]])
    assert C.fingerprint(a) == C.fingerprint(b) != C.fingerprint(c)
    assert C.fingerprint(np.array([[0, 10**9]])) != C.fingerprint(np.array([[0, 10**9 + 1]]))
    states = C.ClassStates(limit=2)
    states.remember(b"x", {1: 2})
    states.remember(b"y", {1: 3})
    got = states.recall(b"x")
    got[1] = 99  # a copy
    assert states.recall(b"x") == {1: 2}
    states.remember(b"z", {})
    assert states.recall(b"x") is None and states.recall(b"y") == {1: 3}  # oldest dropped
    assert len(states) == 2 and states.recall(b"z") == {}


def test_watershed_distance_seed_clicked_off_centre_still_gets_its_lobe():
    from skimage.draw import disk

    lab = np.zeros((40, 80), np.int32)
    big, small = disk((20, 15), 12), disk((20, 45), 6)
    lab[big] = 1
    lab[small] = 1
    lab[18:23, 15:45] = 1
    ch = C.split_by_seeds(lab, [[20, 5], [20, 45]], {})  # left seed near the big lobe's edge
    out = applied(lab, ch)
    # the big lobe's part is the larger one and keeps id 1; the small lobe becomes 2
    assert (out[small] == 2).all() and np.mean(out[big] == 1) > 0.95
    # without compactness the off-centre seed is starved by the deeper lobe
    starved = applied(lab, C.split_by_seeds(lab, [[20, 5], [20, 45]], {}, compactness=0))
    assert np.count_nonzero(starved == 2) < 30


def test_fill_holes_many_objects_uses_the_same_rules():
    lab = np.zeros((10, 60), np.int32)
    for k in range(6):
        lab[2:7, 10 * k + 1:10 * k + 6] = k + 3
        lab[4, 10 * k + 3] = 0
    ch = C.fill_holes(lab, {})
    out = applied(lab, ch)
    assert ch.n_pixels == 6
    assert [int(out[4, 10 * k + 3]) for k in range(6)] == [3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_id_counts_in_chunks_equal_a_whole_image_count(dtype):
    """Counted chunk by chunk (ids straddle chunk borders), the table is exact."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 200, (700, 1100)).astype(dtype)  # 770,000 pixels: three chunks
    assert labels.size > 2 * C._COUNT_CHUNK
    np.testing.assert_array_equal(C.id_counts(labels), np.bincount(labels.ravel().astype(np.int64)))
    np.testing.assert_array_equal(C.id_counts(labels[:, ::3]),  # a strided view
                                  np.bincount(labels[:, ::3].ravel().astype(np.int64)))
    assert C.id_counts(np.array([[-1, 2]])) is None and C.id_counts(np.zeros((0, 3), np.int32)) is None
    assert C.id_counts(np.array([[0.5]])) is None
