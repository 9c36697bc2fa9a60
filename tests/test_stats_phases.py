"""Phase fractions: pixel count against the ASTM E562 systematic point count, and their intervals."""

import numpy as np
import pytest
from scipy import ndimage

from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.stats import phase_fractions, pooled_phase_fractions


def digital_disc_area(radius) -> int:
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return int(np.count_nonzero(y * y + x * x <= radius * radius))


def true_fraction(radius, coverage) -> float:
    """Expected fraction of the union of digital discs (the lattice disc is not πr²)."""
    lam = -np.log(1 - coverage) / (np.pi * radius**2)
    return 1 - np.exp(-lam * digital_disc_area(radius))


def boolean_model(rng, shape=(240, 240), radius=6.0, coverage=0.3):
    """Class 1 = union of discs at Poisson centres (area fraction :func:`true_fraction`), else 0."""
    lam = -np.log(1 - coverage) / (np.pi * radius**2)  # centres per px²
    pad = int(radius) + 1
    big = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    centres = np.zeros(big, bool)
    n = rng.poisson(lam * big[0] * big[1])
    centres[rng.integers(0, big[0], n), rng.integers(0, big[1], n)] = True
    dist = ndimage.distance_transform_edt(~centres)
    return (dist <= radius)[pad:-pad, pad:-pad].astype(np.uint8)


def test_point_count_agrees_with_the_pixel_fraction():
    rng = np.random.default_rng(0)
    lab = boolean_model(rng, (480, 480), coverage=0.35)
    t = phase_fractions(lab, {0: "ferrite", 1: "martensite"}, grid_spacing_px=12).set_index("class_name")
    m = t.loc["martensite"]
    assert m["pixel_fraction"] == pytest.approx(lab.mean())
    assert m["points"] == 40 * 40 and m["point_hits"] <= m["points"]
    assert abs(m["point_fraction"] - m["pixel_fraction"]) < 2.5 * m["point_se"]
    assert m["point_ci_low"] < m["pixel_fraction"] < m["point_ci_high"]
    assert t["pixel_fraction"].sum() == pytest.approx(1.0)
    assert t["point_fraction"].sum() == pytest.approx(1.0)
    assert "E562" in m["point_interval"] and m["point_relative_accuracy_pct"] > 0


def test_e562_statistics_by_hand():
    """A 4 x 4 tile grid where tile i has a known share of points on class 1."""
    lab = np.zeros((40, 40), np.uint8)
    lab[:10, :] = 1  # the top row of tiles is all class 1, the rest class 0
    t = phase_fractions(lab, grid_spacing_px=2, subfields=4).set_index("class_id")
    tiles = np.array([1.0] * 4 + [0.0] * 12)
    from scipy import stats

    half = stats.t.ppf(0.975, 15) * tiles.std(ddof=1) / 4
    assert t.loc[1, "point_fraction"] == pytest.approx(0.25)
    assert t.loc[1, "point_ci_high"] - 0.25 == pytest.approx(half)
    assert t.loc[1, "point_relative_accuracy_pct"] == pytest.approx(100 * half / 0.25)


@pytest.mark.slow
def test_pixel_fraction_intervals_cover_the_true_fraction():
    """1,000 Boolean-model fields (true fraction ~0.31): the sub-field t intervals cover ~95 %."""
    rng = np.random.default_rng(1)
    hits_pix = hits_pts = 0
    n = 1000
    truth = true_fraction(3.0, 0.3)
    for _ in range(n):
        lab = boolean_model(rng, (160, 160), radius=3.0, coverage=0.3)
        r = phase_fractions(lab, grid_spacing_px=8, subfields=4).set_index("class_id").loc[1]
        hits_pix += r["pixel_ci_low"] <= truth <= r["pixel_ci_high"]
        hits_pts += r["point_ci_low"] <= truth <= r["point_ci_high"]
    assert 0.93 <= hits_pix / n <= 0.97
    assert 0.93 <= hits_pts / n <= 0.97


def test_analysis_mask_and_pooling():
    rng = np.random.default_rng(2)
    frames = []
    for _ in range(5):
        lab = boolean_model(rng, (200, 200), coverage=0.25)
        mask = np.ones(lab.shape, bool)
        mask[-20:] = False  # a scale bar
        frames.append(phase_fractions(lab, {0: "sound", 1: "corroded"}, analysis_mask=mask))
        assert frames[-1]["analysed_pixels"].iloc[0] == 180 * 200
    pooled = pooled_phase_fractions(frames).set_index("class_name")
    c = pooled.loc["corroded"]
    truth = true_fraction(6.0, 0.25)
    half = (c["pixel_ci_high"] - c["pixel_ci_low"]) / 2
    assert c["n_fields"] == 5 and 0 < half and abs(c["pixel_fraction"] - truth) < 3 * half
    assert c["pixel_fraction"] == pytest.approx(np.mean([f.iloc[1]["pixel_fraction"] for f in frames]))
    assert "images" in c["point_interval"]
    with pytest.raises(MicrosegError, match="mask"):
        phase_fractions(np.zeros((10, 10)), analysis_mask=np.zeros((10, 10), bool))
    with pytest.raises(MicrosegError, match="grid spacing"):
        phase_fractions(np.zeros((10, 10)), grid_spacing_px=50)
