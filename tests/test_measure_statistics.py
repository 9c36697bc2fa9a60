"""Counting rules, densities and size distributions, checked against hand counts."""

import numpy as np
import pytest

from napari_microseg.core.calibration import PixelSize
from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.measure import (
    count_objects,
    inner_frame,
    measure_objects,
    size_distribution,
    size_distributions,
    summarize,
)

PS = PixelSize.isotropic(2.0, "user")  # 2 nm/px, 4 nm² per pixel
H, W = 100, 200

# 6 x 6 px squares: (top row, left column) -> centroid pixel (row + 3, col + 3)
SQUARES = {
    1: (10, 10),  # inside everything
    2: (0, 50),  # touches the top border
    3: (40, 194),  # touches the right border
    4: (76, 100),  # crosses into the excluded band (rows >= 80); centroid pixel row 79
    5: (90, 20),  # inside the excluded band
    6: (30, 3),  # centroid pixel column 6: inside a 5 px guard frame
    7: (60, 1),  # centroid pixel column 4: outside a 5 px guard frame, not touching
    8: (70, 150),  # centroid pixel row 73 < 75: inside the guard frame over the mask
    9: (72, 170),  # centroid pixel row 75: outside it, does not touch the band
}
CLASSES = {1: 1, 6: 1, 8: 3, 9: 3}


def _labels():
    lab = np.zeros((H, W), np.int32)
    for k, (r, c) in SQUARES.items():
        lab[r : r + 6, c : c + 6] = k
    return lab


def _mask():
    m = np.ones((H, W), bool)
    m[80:] = False
    return m


@pytest.fixture
def table():
    return measure_objects(_labels(), PS, instance_classes=CLASSES, analysis_mask=_mask())


def _counted(table, **kw):
    c = count_objects(table, analysis_mask=_mask(), **kw)
    return set(table["label"][c.counted]), c


def test_counting_rules_by_hand(table):
    inc, c_inc = _counted(table, edges="include")
    assert inc == {1, 2, 3, 4, 6, 7, 8, 9}
    assert c_inc.reference_area_px == 80 * 200
    exc, c_exc = _counted(table, edges="exclude")
    assert exc == {1, 6, 7, 8, 9}
    assert c_exc.reference_area_px == 80 * 200
    grd, c_grd = _counted(table, edges="guard", guard=10.0)  # 10 nm = 5 px
    assert grd == {1, 6, 8}
    # inner frame: rows 5..74 (5 px from the top and from the band), columns 5..194
    assert c_grd.reference_area_px == 70 * 190
    assert c_grd.reference_area == pytest.approx(70 * 190 * 4.0)


def test_densities_exact_with_analysis_mask(table):
    s = summarize(table, analysis_mask=_mask(), thickness_nm=80.0).set_index("class_name")
    area_nm2 = 80 * 200 * 4.0  # 64,000 nm² = 0.064 µm²
    row = s.loc["all"]
    assert row["count"] == 8
    assert row["reference_area_nm2"] == pytest.approx(area_nm2)
    assert row["density_per_nm2"] == pytest.approx(8 / area_nm2)
    assert row["density_per_um2"] == pytest.approx(8 / 0.064)
    assert row["area_fraction"] == pytest.approx(8 * 36 * 4.0 / area_nm2)
    assert row["density_per_m3"] == pytest.approx(8 / area_nm2 / 80.0 * 1e27)
    assert row["edge_mode"] == "include" and row["guard_nm"] == 0.0
    assert s.loc["<111> loop", "count"] == 2
    assert s.loc["black dot", "count"] == 2
    assert s.loc["unclassified", "count"] == 4
    eqd = 2 * np.sqrt(36 * 4.0 / np.pi)
    assert row["mean_equivalent_diameter_nm"] == pytest.approx(eqd)
    assert row["std_equivalent_diameter_nm"] == pytest.approx(0.0, abs=1e-9)
    # the same image without a mask: 9 objects over the whole image
    t_all = measure_objects(_labels(), PS)
    s_all = summarize(t_all).set_index("class_name")
    assert s_all.loc["all", "count"] == 9
    assert s_all.loc["all", "density_per_um2"] == pytest.approx(9 / (H * W * 4.0 / 1e6))


def test_edge_modes_change_counts_and_are_recorded(table):
    ex = summarize(table, edges="exclude", analysis_mask=_mask()).iloc[0]
    assert ex["count"] == 5 and ex["edge_mode"] == "exclude"
    assert ex["density_per_nm2"] == pytest.approx(5 / (80 * 200 * 4.0))
    g = summarize(table, edges="guard", guard=10.0, analysis_mask=_mask())
    assert g.iloc[0]["count"] == 3 and g.iloc[0]["guard_nm"] == 10.0
    assert g.iloc[0]["density_per_nm2"] == pytest.approx(3 / (70 * 190 * 4.0))
    assert g.attrs["settings"] == {"edge_mode": "guard", "guard_nm": 10.0, "thickness_nm": None}


def test_uncalibrated_summary_in_px():
    t = measure_objects(_labels())
    s = summarize(t, edges="guard", guard=5)
    assert "density_per_px2" in s and "density_per_um2" not in s and "guard_px" in s
    # no mask: inner frame rows 5..94, cols 5..194 holds the centroids of 1, 4, 5, 6, 8, 9
    assert s.iloc[0]["count"] == 6
    assert s.iloc[0]["reference_area_px2"] == (H - 10) * (W - 10)
    with pytest.raises(MicrosegError, match="calibrated"):
        summarize(t, thickness_nm=50.0)


def test_inner_frame_matches_rectangle_without_mask():
    f = inner_frame((20, 30), None, (2, 3))
    g = inner_frame((20, 30), np.ones((20, 30), bool), (2, 3))
    assert np.array_equal(f, g)
    assert f.sum() == 16 * 24


def test_bad_settings_are_refused(table):
    with pytest.raises(MicrosegError, match="edge"):
        count_objects(table, edges="sometimes")
    with pytest.raises(MicrosegError, match="leaves nothing"):
        count_objects(table, edges="guard", guard=1000.0)
    with pytest.raises(MicrosegError, match="non-negative"):
        count_objects(table, edges="guard", guard=-1.0)
    with pytest.raises(MicrosegError, match="thickness"):
        summarize(table, thickness_nm=0.0)


def test_size_distribution_by_hand():
    d = size_distribution([1.0, 2.0, 2.0, 3.0, 10.0], bins=[0.0, 2.5, 5.0, 10.0])
    assert list(d.counts) == [3, 1, 1]
    assert d.mean == pytest.approx(3.6)
    assert d.median == 2.0
    assert d.std == pytest.approx(np.sqrt(53.2 / 4))
    assert d.lognorm_shape is None
    empty = size_distribution([], bins=3)
    assert empty.n == 0 and np.isnan(empty.mean)


def test_lognormal_fit_is_the_log_moment_mle():
    rng = np.random.default_rng(5)
    x = np.exp(rng.normal(np.log(12.0), 0.4, 3000))
    d = size_distribution(x, bins=20, lognormal=True)
    # with the location fixed at 0 the MLE is closed-form
    assert d.lognorm_shape == pytest.approx(np.std(np.log(x)), rel=1e-3)
    assert d.lognorm_scale == pytest.approx(np.exp(np.mean(np.log(x))), rel=1e-3)
    assert d.lognorm_shape == pytest.approx(0.4, rel=0.05)
    assert d.to_dict()["counts"] == list(map(int, d.counts))


def test_size_distributions_share_bins_per_class(table):
    c = count_objects(table, analysis_mask=_mask())
    dists = size_distributions(table, bins=4, counting=c)
    assert set(dists) == {"all", "<111> loop", "black dot", "unclassified"}
    assert dists["all"].n == 8 and dists["black dot"].n == 2
    assert all(np.array_equal(v.edges, dists["all"].edges) for v in dists.values())
