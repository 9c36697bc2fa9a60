"""Scribble and lasso prompts with the edge-following refinement (issue 16 item 4)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from napari_microseg.core.prompting.baselines import OtsuFloodBackend
from napari_microseg.core.prompting.session import PromptSession
from napari_microseg.core.prompting.strokes import (
    Strokes,
    polygon_mask,
    predict_with_strokes,
    rasterize_path,
    refine_to_edges,
    sample_stroke,
)


def iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def lobed_region(shape=(220, 220), centre=(110, 110)):
    """An irregular (five-lobed, not convex) region: what a corroded area looks like, not a blob."""
    rr, cc = np.indices(shape)
    th = np.arctan2(rr - centre[0], cc - centre[1])
    rad = np.hypot(rr - centre[0], cc - centre[1])
    return rad < 40 + 15 * np.sin(5 * th) + 6 * np.sin(3 * th + 1)


def loose_lasso(centre=(110, 110), radius=63, n=50):
    """A hand-drawn-like loop around the region (wobbly, far from its concave edges)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.sin(t) + 3 * np.sin(7 * t), centre[1] + radius * np.cos(t)], 1)


def disc_scene(shape, discs, *, bright=0.8, dark=0.3, noise=0.05, regions=()):
    """Dark objects on a bright noisy background and their exact instance truth.

    ``discs`` are ``(row, col, radius)``; ``regions`` extra boolean masks; ids follow that order.
    """
    truth = np.zeros(shape, np.int32)
    for i, (r, c, rad) in enumerate(discs, start=1):
        truth[disk((r, c), rad, shape=shape)] = i
    for i, region in enumerate(regions, start=len(discs) + 1):
        truth[region] = i
    img = np.where(truth > 0, dark, bright) + np.random.default_rng(0).normal(0, noise, shape)
    return img.astype(np.float32), truth


@pytest.fixture
def discs():
    """Dark discs on a bright noisy background: A and B touch, C stands alone."""
    return disc_scene((160, 200), [(60, 60, 20), (60, 98, 18), (120, 150, 15)])


def test_sample_stroke_spreads_points_by_arc_length():
    path = np.array([[0, 0], [0, 30], [40, 30]], float)  # 70 px long
    pts = sample_stroke(path, spacing=10, max_points=5)  # five pieces of 14 px, their middles
    assert len(pts) == 5
    np.testing.assert_allclose(pts[0], [0, 7])
    np.testing.assert_allclose(pts[2], [5, 30])  # half-way along the line, not at a vertex
    np.testing.assert_allclose(pts[-1], [33, 30])
    assert len(sample_stroke([[3, 4]])) == 1
    np.testing.assert_allclose(sample_stroke([[0, 0], [0, 5]], spacing=10), [[0, 2.5]])  # a short stroke: one click


def test_rasterized_path_and_polygon():
    m = rasterize_path([[2, 2], [2, 8], [6, 8]], (10, 10))
    assert m.sum() == 7 + 4 and m[2, 2] and m[6, 8]
    p = polygon_mask([[10, 10], [10, 20], [20, 20], [20, 10]], (30, 30), offset=(5, 5))
    assert p[5:16, 5:16].all() and p.sum() == 121


@pytest.mark.parametrize("noise,texture", [(0.06, False), (0.15, False), (0.06, True)])
def test_lasso_follows_the_region_edges_not_the_drawn_line(noise, texture):
    truth = lobed_region()
    rng = np.random.default_rng(1)
    img = np.where(truth, 0.25, 0.75) + rng.normal(0, noise, truth.shape)
    if texture:  # corroded: bright speckle inside the region
        img = np.where(truth & (rng.random(truth.shape) < 0.15), 0.6, img)
    img = img.astype(np.float32)
    lasso = loose_lasso()
    img_before, lasso_before = img.copy(), lasso.copy()
    s = PromptSession(OtsuFloodBackend())
    s.set_image(img)
    pred = predict_with_strokes(s, Strokes(lasso=lasso))
    poly_iou = iou(polygon_mask(lasso, truth.shape), truth)
    assert poly_iou < 0.5
    assert iou(pred.mask, truth) > 0.88 > poly_iou + 0.35
    np.testing.assert_array_equal(img, img_before)
    np.testing.assert_array_equal(lasso, lasso_before)


def test_refinement_snaps_any_rough_mask_to_the_edges(discs):
    img, truth = discs
    a = truth == 3
    for rough in (ndi.binary_dilation(a, iterations=4), ndi.binary_erosion(a, iterations=4)):
        rough_before = rough.copy()
        assert iou(rough, a) < 0.7
        out = refine_to_edges(img, rough)
        assert iou(out, a) > 0.95
        np.testing.assert_array_equal(rough, rough_before)


@pytest.mark.parametrize("backend", ["otsu-flood", "microseg-promptable"])
def test_scribble_inside_an_object_gives_the_object(discs, backend, torch_one_thread):
    from napari_microseg.core.prompting.registry import make_backend

    img, truth = discs
    s = PromptSession(make_backend(backend))
    s.set_image(img)
    pred = predict_with_strokes(s, Strokes(positive=[[[112, 145], [118, 149], [123, 152], [127, 158]]]))
    assert iou(pred.mask, truth == 3) > 0.93


@pytest.mark.parametrize("backend", ["otsu-flood", "microseg-promptable"])
def test_negative_stroke_removes_a_touching_neighbour(discs, backend, torch_one_thread):
    from napari_microseg.core.prompting.registry import make_backend

    img, truth = discs
    a, b = truth == 1, truth == 2
    s = PromptSession(make_backend(backend))
    s.set_image(img)
    positive = [[[50, 55], [60, 60], [70, 62]]]
    if backend == "otsu-flood":  # A and B touch: the flood alone takes part of B
        alone = predict_with_strokes(s, Strokes(positive=positive)).mask
        assert np.count_nonzero(alone & b) > 0.2 * b.sum()
        s.reset()
    pred = predict_with_strokes(s, Strokes(positive=positive, negative=[[[45, 100], [60, 98], [75, 96]]]))
    assert np.count_nonzero(pred.mask & b) < 0.05 * b.sum()
    assert iou(pred.mask, a) > 0.9


def test_strokes_become_labelled_points_and_clicks_still_count(discs):
    img, truth = discs
    st = Strokes(positive=[[[0, 0], [0, 40]]], negative=[[[10, 10], [10, 11]]])
    pts, labs = st.points(spacing=10, max_points=5)
    assert labs.tolist() == [1] * 4 + [0] and pts.shape == (5, 2)
    s = PromptSession(OtsuFloodBackend())
    s.set_image(img)
    # no stroke: exactly the session's own click prediction
    plain = predict_with_strokes(s, Strokes(), [[120, 150]], [1]).mask
    s.reset()
    np.testing.assert_array_equal(plain, s.predict([[120, 150]], [1]).mask)
    # a lasso around A and B takes both; a negative stroke across B pushes most of B out
    # (A and B touch with no edge between them: the walk splits the neck by distance)
    s.reset()
    a, b = truth == 1, truth == 2
    lasso = [[30, 25], [30, 125], [95, 125], [95, 25]]
    both = predict_with_strokes(s, Strokes(lasso=lasso)).mask
    assert both[a].mean() > 0.98 and both[b].mean() > 0.98
    pred = predict_with_strokes(s, Strokes(lasso=lasso, negative=[[[45, 100], [75, 96]]])).mask
    assert pred[a].mean() > 0.98 and pred[b].mean() < 0.5
