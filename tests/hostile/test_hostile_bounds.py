"""Unbounded parameters are refused with one line, the same way through every entry point.

The CLI flags (``microseg predict``), recipe files (``microseg batch``, ``Recipe.load``),
:func:`postprocess`, :func:`measure_image`, tiled inference and the Predict dock all go
through the same validators (:mod:`napari_microseg.core.bounds`).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from napari_microseg.core.batch.recipe import RECIPE_FORMAT, Recipe, RecipeError
from napari_microseg.core.bounds import SettingsError
from napari_microseg.core.measure.pipeline import MeasureSettings, measure_image
from napari_microseg.core.models.postprocess import PostprocessSettings, postprocess

# -- microseg predict flags --------------------------------------------------------------

BAD_FLAGS = [
    ("--threshold", "nan"),
    ("--threshold", "1.5"),
    ("--threshold", "-0.1"),
    ("--min-size-px", "-5"),
    ("--min-size-px", "inf"),
    ("--min-size-nm2", "-1"),
    ("--open", "-1"),
    ("--open", "100000"),
    ("--close", "65"),
    ("--smooth", "1e6"),
    ("--smooth", "nan"),
    ("--min-distance", "1000000"),
    ("--min-distance", "-1"),
    ("--batch-size", "0"),
    ("--batch-size", "100000"),
    ("--tile", "4"),
    ("--tile", "1000000"),
    ("--halo", "-1"),
]


@pytest.mark.parametrize("flag, value", BAD_FLAGS)
def test_predict_refuses_out_of_range_flags_with_one_line(cli, tmp_path, flag, value):
    r = cli("predict", tmp_path / "a.tif", "--model", "any-model", "--out", tmp_path / "out",
            flag, value)
    assert r.rc != 0
    line = r.error_line()
    assert f"argument {flag}:" in line and "must be" in line, line
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_predict_refuses_a_tile_not_larger_than_twice_the_halo(cli, tmp_path, tiny_model):
    import tifffile

    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.zeros((32, 32), np.uint8))
    r = cli("predict", img, "--model", "tiny-seg", "--out", tmp_path / "out",
            "--tile", "16", "--halo", "8")
    assert r.rc == 1
    line = r.error_line()
    assert "--tile 16" in line and "--halo" in line, line
    assert not list(tmp_path.rglob("*_labels.tif"))


# -- recipes ---------------------------------------------------------------------------

BAD_RECIPE = [
    ("postprocess", "smooth_sigma", 1e6, "[0, 50]"),
    ("postprocess", "open_radius", 100000, "[0, 64]"),
    ("postprocess", "close_radius", -1, "[0, 64]"),
    ("postprocess", "min_distance", 1000000, "[0, 1000]"),
    ("postprocess", "thresholds", float("nan"), "[0, 1]"),
    ("postprocess", "min_size", float("inf"), ">= 0"),
    ("measure", "bins", 1000000000, "[2, 10000]"),
    ("measure", "guard", -3.0, ">= 0"),
    ("measure", "thickness_nm", 1e12, "nm"),
]


def _recipe_dict(section, field, value) -> dict:
    d = {"format": RECIPE_FORMAT, "format_version": 1, "model": {"name": "some-model"},
         "classes": [{"id": 1, "name": "loop", "color": "#3cb44b"}]}
    d[section] = {field: value}
    return d


@pytest.mark.parametrize("section, field, value, allowed", BAD_RECIPE)
def test_recipe_refuses_unbounded_values(tmp_path, section, field, value, allowed):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_recipe_dict(section, field, value)))  # NaN/Infinity as JS does
    with pytest.raises(RecipeError) as e:
        Recipe.load(path)
    msg = str(e.value)
    assert "\n" not in msg and "bad.json" in msg and f"{section}.{field}" in msg and allowed in msg


@pytest.mark.parametrize("section, field, value, allowed", BAD_RECIPE[:1] + BAD_RECIPE[6:7])
def test_batch_cli_refuses_unbounded_recipe_values(cli, tmp_path, section, field, value, allowed):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_recipe_dict(section, field, value)))
    r = cli("batch", path, tmp_path / "a.tif", "--out", tmp_path / "out")
    assert r.rc == 1
    line = r.error_line()
    assert f"{section}.{field}" in line and allowed in line, line


# -- the core calls themselves -------------------------------------------------------------

BAD_POST = [
    ({"smooth_sigma": 1e6}, "smooth_sigma"),
    ({"smooth_sigma": math.nan}, "smooth_sigma"),
    ({"open_radius": 100000}, "open_radius"),
    ({"open_radius": -1}, "open_radius"),
    ({"open_radius": 2.5}, "open_radius"),
    ({"close_radius": 65}, "close_radius"),
    ({"min_distance": 1000000, "instances": "watershed"}, "min_distance"),
    ({"min_distance": -1}, "min_distance"),
    ({"thresholds": math.nan}, "thresholds"),
    ({"thresholds": 1.5}, "thresholds"),
    ({"thresholds": [0.5, -1.0]}, "thresholds"),
    ({"thresholds": {1: math.inf}}, "thresholds"),
    ({"thresholds": "half"}, "thresholds"),
    ({"min_size": -5}, "min_size"),
    ({"min_size": math.nan}, "min_size"),
    ({"fill_holes": "yes"}, "fill_holes"),
    # larger than half the 64 px image: meaningless, and the cost grows as r²
    ({"open_radius": 40}, "half the image"),
    ({"smooth_sigma": 33.0}, "half the image"),
    ({"min_distance": 32, "instances": "watershed"}, "half the image"),
]


@pytest.mark.parametrize("changes, field", BAD_POST)
def test_postprocess_refuses_unbounded_settings(changes, field):
    prob = np.full((2, 64, 64), 0.1, np.float32)
    with pytest.raises(SettingsError, match=field) as e:
        postprocess(prob, settings=PostprocessSettings(**changes))
    assert "\n" not in str(e.value)


def test_postprocess_accepts_the_bounds_themselves():
    prob = np.zeros((1, 200, 200), np.float32)
    prob[0, 50:150, 50:150] = 0.9
    s = PostprocessSettings(thresholds=[1.0], open_radius=0, close_radius=2, smooth_sigma=1.5,
                            instances="watershed", min_distance=50, min_size=0.0)
    out = postprocess(prob, settings=s)
    assert out.labels.max() == 0  # threshold 1.0: nothing reaches it
    s.thresholds = np.float32(0.5)
    assert postprocess(prob, settings=s).labels.max() == 1
    PostprocessSettings(open_radius=64, close_radius=64, smooth_sigma=50, min_distance=1000).validate()


def test_min_distance_only_bounded_by_the_image_for_watershed():
    prob = np.zeros((1, 8, 8), np.float32)
    postprocess(prob, settings=PostprocessSettings(min_distance=5))  # cc: unused, default 5 is fine


@pytest.mark.parametrize("changes, field", [
    ({"bins": 1000000000}, "bins"), ({"bins": 1}, "bins"), ({"bins": 2.0}, "bins"),
    ({"guard": math.nan}, "guard"), ({"thickness_nm": -1.0}, "thickness_nm"),
    ({"edges": "sometimes"}, "edges"),
])
def test_measure_image_refuses_unbounded_settings(changes, field):
    labels = np.zeros((32, 32), np.int32)
    labels[4:10, 4:10] = 1
    with pytest.raises(SettingsError, match=field) as e:
        measure_image(labels, settings=MeasureSettings(**changes))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw, field", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 10**6}, "batch_size"),
    ({"tile": 4}, "tile"), ({"tile": 64, "halo": 32}, "twice"), ({"halo": -2}, "halo"),
])
def test_tiled_inference_refuses_bad_tiling_before_running(tiny_model, kw, field):
    from napari_microseg.core.models import load_model, predict_probabilities

    model, card = load_model("tiny-seg", device="cpu")

    with pytest.raises(SettingsError, match=field):
        predict_probabilities(model, card, np.zeros((32, 32), np.float32), **kw)


# -- the Predict dock ---------------------------------------------------------------------


@pytest.mark.gui
def test_predict_dock_shows_the_validators_message_instead_of_running(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari_microseg.core.models import ModelCard, build_model, register_model
    from napari_microseg.gui.widgets import predict as mod

    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(name="dark-is-loop", architecture="defectsegnet", activation="sigmoid",
                     params={"growth": 2, "depth": 2, "layers_per_block": 1},
                     classes=[{"id": 1, "name": "loop", "color": "#e6194b"}], tile=64, halo=8,
                     normalization={"method": "fixed", "range": [0, 255]})
    register_model(build_model(card), card)
    calls = []

    def fake_run(name, image, pixel_size, **kw):
        from napari_microseg.core.models.registry import load_model

        calls.append(kw)
        _, c = load_model(name)
        return c, (np.asarray(image) < 128).astype(np.float32)[None] * 0.8 + 0.1

    monkeypatch.setattr(mod, "run_model", fake_run)
    scene = np.full((30, 30), 220, np.uint8)
    scene[10:20, 10:20] = 20
    viewer = make_napari_viewer()
    image = viewer.add_image(scene, name="tem")
    w = mod.PredictWidget(viewer)
    w.reset_choices()
    w.image.value, w.model.value = image, "dark-is-loop"
    # a tile not larger than twice the halo: refused before the network runs
    w.tile.value, w.halo.value = 64, 40
    assert w.run() is None
    assert calls == [] and "tile" in w.status.text() and "twice" in w.status.text()
    # valid tiling runs
    w.tile.value, w.halo.value = 64, 8
    w.run()
    qtbot.waitUntil(lambda: w.run_button.enabled and w.card is not None and w.updates > 0
                    and not w._post_busy, timeout=60000)
    before = np.array(viewer.layers["tem dark-is-loop instances"].data)
    assert before.max() == 1 and len(calls) == 1
    updates = w.updates
    # an opening radius of 20 px on a 30 px image: the dock says why and keeps its layers
    w.open_r.value = 20
    qtbot.wait(200)
    assert not w._post_busy and w.updates == updates
    assert "opening radius 20" in w.status.text() and "half the image" in w.status.text()
    assert np.array_equal(viewer.layers["tem dark-is-loop instances"].data, before)


# -- the largest settings allowed stay cheap ------------------------------------------------


def test_largest_radii_are_exact_and_cheap():
    """Opening/closing by a distance transform: same pixels as scipy, cost independent of r."""
    import time

    from scipy import ndimage as ndi

    from napari_microseg.core.models.postprocess import _disk, clean_mask

    rng = np.random.default_rng(0)
    for r in (1, 5, 6, 9, 17):
        m = ndi.gaussian_filter(rng.random((70, 90)), 3) > 0.5
        assert np.array_equal(clean_mask(m, open_radius=r), ndi.binary_opening(m, _disk(r)))
        assert np.array_equal(clean_mask(m, close_radius=r),
                              ndi.binary_closing(np.pad(m, r), _disk(r))[r:-r, r:-r])
    prob = rng.random((1, 512, 512)).astype(np.float32)
    t0 = time.perf_counter()
    postprocess(prob, settings=PostprocessSettings(open_radius=64, close_radius=64,
                                                   smooth_sigma=50.0, fill_holes=True))
    assert time.perf_counter() - t0 < 10  # was ~50 s per class with a 129 x 129 disk



@pytest.mark.parametrize(
    "tile, halo, field, allowed",
    [(10**6, 8, "tile", "[8, 16384]"), (256, 10**5, "halo", "[0, 4096]"), (4, 0, "tile", "[8, 16384]")],
)
def test_recipe_inference_uses_the_predict_bounds(tmp_path, tile, halo, field, allowed):
    d = _recipe_dict("inference", "tile", tile)
    d["inference"]["halo"] = halo
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(RecipeError) as e:
        Recipe.load(path)
    assert f"inference.{field}" in str(e.value) and allowed in str(e.value), str(e.value)
