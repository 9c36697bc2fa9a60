"""Tiling of large images for promptable backends, driven through PromptSession with fakes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.core.prompting.base import Prediction, PromptBackend
from napari_microseg.core.prompting.session import EmbeddingCancelled, PromptSession
from napari_microseg.core.prompting.tiling import TileGrid


class BoxEchoBackend(PromptBackend):
    """Fake embedding backend: the mask is the box (or a 5x5 square per positive click)."""

    name = "box-echo"
    needs_embedding = True

    def __init__(self):
        self.n_embed = 0
        self.shape = None
        self.calls = []

    def set_image(self, image, *, progress=None):
        self.n_embed += 1
        self.shape = image.shape
        self.mean = float(image.mean())

    def get_embedding(self):
        return {"shape": np.array(self.shape), "mean": np.array([self.mean])}

    def load_embedding(self, emb):
        self.shape = tuple(int(v) for v in emb["shape"])
        self.mean = float(emb["mean"][0])

    def predict(self, prompts):
        self.calls.append(prompts)
        m = np.zeros(self.shape, bool)
        if prompts.box is not None:
            r0, c0, r1, c1 = np.round(prompts.box).astype(int)
            m[r0 : r1 + 1, c0 : c1 + 1] = True
        for (r, c), lab in zip(np.round(prompts.points).astype(int), prompts.labels, strict=True):
            if lab:
                m[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3] = True
        return Prediction(mask=m, score=0.5, logits=np.full((1, 4, 4), len(self.calls), np.float32))


def _box_mask(shape, box):
    m = np.zeros(shape, bool)
    r0, c0, r1, c1 = box
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


@pytest.mark.parametrize(
    "shape", [(2048, 2048), (1500, 900), (500, 700), (1025, 1024), (10000, 7000)]
)
def test_grid_interiors_cover_image_and_tiles_stay_inside(shape):
    g = TileGrid(shape, tile=1024, halo=128)
    cover = np.zeros(shape, bool)
    for t in g.tiles:
        assert 0 <= t.r0 < t.r1 <= shape[0] and 0 <= t.c0 < t.c1 <= shape[1]
        assert t.shape == (min(1024, shape[0]), min(1024, shape[1]))
        ir0, ic0, ir1, ic1 = t.interior
        cover[ir0:ir1, ic0:ic1] = True
    assert cover.all()
    starts_r = sorted({t.r0 for t in g.tiles})
    for a, b in zip(starts_r, starts_r[1:], strict=False):
        assert (a + 1024) - b >= 2 * 128  # overlap of consecutive windows


def test_small_image_is_one_tile_and_bad_halo_rejected():
    g = TileGrid((300, 400))
    assert len(g) == 1 and g.tiles[0].interior == (0, 0, 300, 400)
    with pytest.raises(ValueError):
        TileGrid((2048, 2048), tile=256, halo=128)


def test_click_near_a_tile_border_goes_to_the_tile_with_margin():
    g = TileGrid((2048, 2048), tile=1024, halo=128)
    click = (1000.0, 500.0, 1000.0, 500.0)  # 23 px above the first row of tiles' bottom edge
    t = g.tile_for(click)
    assert not t.on_demand
    assert t.r0 <= 1000 < t.r1 and t.c0 <= 500 < t.c1
    assert t.margin(click, g.shape) >= 128
    assert (t.r0, t.r1) == (512, 1536)
    # every pixel on a coarse lattice is served with at least `halo` px of context
    for r in range(0, 2048, 97):
        for c in range(0, 2048, 89):
            b = (r, c, r, c)
            assert g.tile_for(b).margin(b, g.shape) >= 128


def test_box_spanning_two_tiles_gets_a_centred_tile():
    g = TileGrid((2048, 2048), tile=1024, halo=128)
    box = (100.0, 600.0, 300.0, 1450.0)  # 851 px wide: no interior holds it
    assert not any(t.contains(box) for t in g.tiles)
    t = g.tile_for(box)
    assert t.on_demand and t.contains(box)
    assert t.c0 <= 600 - 128 and t.c1 >= 1450 + 128
    centre = (t.c0 + t.c1) / 2
    assert abs(centre - (600 + 1451) / 2) <= 1


def test_session_places_box_mask_exactly_in_grid_and_on_demand_tiles():
    be = BoxEchoBackend()
    img = np.random.default_rng(0).random((2048, 3000)).astype(np.float32)
    s = PromptSession(be, tile_size=1024, halo=128)
    assert s.set_image(img, image_hash="x").startswith("deferred")
    assert be.n_embed == 0
    box = (1500, 2600, 1600, 2750)  # inside the bottom-right tile's interior
    pred = s.predict(box=box)
    assert pred.mask.shape == img.shape
    assert np.array_equal(pred.mask, _box_mask(img.shape, box))
    assert not s.last_tile.on_demand and s.last_tile.r0 > 0 and s.last_tile.c0 > 0
    s.reset()
    wide = (100, 600, 300, 1450)
    pred = s.predict(box=wide)
    assert s.last_tile.on_demand
    assert np.array_equal(pred.mask, _box_mask(img.shape, wide))
    assert be.n_embed == 2


def test_click_coordinates_are_shifted_into_the_tile_row_col_order_kept():
    be = BoxEchoBackend()
    s = PromptSession(be)
    s.set_image(np.zeros((2048, 3000), np.uint16), image_hash="y")
    pred = s.predict([[1700.0, 2900.0]], [1])
    t = s.last_tile
    local = be.calls[-1].points[0]
    assert local.tolist() == [1700.0 - t.r0, 2900.0 - t.c0]
    rows, cols = np.nonzero(pred.mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (1698, 1702, 2898, 2902)


def test_lazy_tiles_are_embedded_once_and_embed_all_reports_progress():
    be = BoxEchoBackend()
    s = PromptSession(be)
    s.set_image(np.ones((2048, 2048), np.uint8), image_hash="z")
    s.predict([[200, 200]], [1])
    s.predict([[210, 220]], [1])
    assert be.n_embed == 1
    seen = []
    status = s.embed_all(progress=seen.append)
    assert status == "computed" and be.n_embed == 9
    assert seen[-1] == pytest.approx(1.0) and all(
        b >= a for a, b in zip(seen, seen[1:], strict=False)
    )
    s.predict([[1900, 1900]], [1])
    assert be.n_embed == 9


def test_cancel_stops_between_tiles():
    be = BoxEchoBackend()
    s = PromptSession(be)
    s.set_image(np.ones((2048, 2048), np.uint8), image_hash="c")
    with pytest.raises(EmbeddingCancelled, match="2 of 9"):
        s.embed_all(cancel=lambda: be.n_embed >= 2)
    assert be.n_embed == 2
    with pytest.raises(EmbeddingCancelled):
        s.set_image(
            np.ones((2048, 2048), np.uint8), image_hash="c", eager=True, cancel=lambda: True
        )


def test_refinement_feeds_previous_logits_on_the_same_tile_only():
    be = BoxEchoBackend()
    s = PromptSession(be)
    s.set_image(np.ones((2048, 2048), np.uint8), image_hash="r")
    first = s.predict([[500, 500]], [1])
    assert be.calls[-1].mask_logits is None
    s.predict([[500, 500], [520, 530]], [1, 0])
    assert be.calls[-1].mask_logits is first.logits
    s.predict([[500, 500], [520, 530]], [1, 0], use_previous=False)
    assert be.calls[-1].mask_logits is None
    s.reset()
    s.predict([[500, 500]], [1])
    assert be.calls[-1].mask_logits is None


def test_refinement_stays_on_previous_tile_while_it_holds_the_prompts():
    be = BoxEchoBackend()
    s = PromptSession(be)
    s.set_image(np.ones((2048, 2048), np.uint8), image_hash="k")
    s.predict([[700, 700]], [1])
    t1 = s.last_tile
    s.predict([[700, 700], [760, 760]], [1, 1])
    assert s.last_tile == t1 and be.calls[-1].mask_logits is not None


def test_untiled_backend_gets_full_image_and_previous_logits():
    class Plain(BoxEchoBackend):
        needs_embedding = False

    be = Plain()
    s = PromptSession(be)
    assert s.set_image(np.ones((3000, 3000), np.uint8)) == "computed"
    assert be.shape == (3000, 3000)
    p1 = s.predict([[2990, 10]], [1])
    assert p1.mask[2990, 10] and p1.mask.shape == (3000, 3000)
    s.predict([[2990, 10]], [1])
    assert be.calls[-1].mask_logits is p1.logits


def test_prompts_outside_the_image_are_rejected_and_boxes_clipped():
    be = BoxEchoBackend()
    s = PromptSession(be)
    s.set_image(np.ones((600, 800), np.uint8), image_hash="o")
    with pytest.raises(ValueError, match="outside"):
        s.predict([[600.5, 10]], [1])
    with pytest.raises(ValueError, match="outside"):
        s.predict(box=(700, 900, 800, 1000))
    pred = s.predict(box=(-5, 700, 50, 850))
    assert np.array_equal(pred.mask, _box_mask((600, 800), (0, 700, 50, 799)))


def test_embed_all_stops_when_another_image_is_set_meanwhile():
    be = BoxEchoBackend()
    s = PromptSession(be)
    s.set_image(np.ones((2048, 2048), np.uint8), image_hash="a")

    def cancel():  # a GUI thread switching image while the worker embeds
        if be.n_embed == 3:
            s.set_image(np.ones((500, 500), np.uint8), image_hash="b", eager=False)
        return False

    with pytest.raises(EmbeddingCancelled, match="another image"):
        s.embed_all(cancel=cancel)
    assert s.image_shape == (500, 500) and be.n_embed == 3
