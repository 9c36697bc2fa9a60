"""Measurements of synthetic micrographs agree with the generator's exact truth."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microseg.core.measure import MeasureSettings, measure_image
from napari_microseg.core.synth import generate


@pytest.mark.parametrize("kind", ["tem-loops", "tem-voids", "stem-loops", "sem-pits"])
@pytest.mark.parametrize("seed", [0, 1])
def test_diameters_and_density_match_truth(kind, seed):
    s = generate(kind, shape=(384, 384), seed=seed)
    result = measure_image(s.labels, s.pixel_size, intensity=s.image,
                           instance_classes=s.instance_classes, classes=s.classes)
    table = result.table.set_index("label")
    truth = {t["id"]: t for t in s.truth}
    assert set(table.index) == set(truth)
    nm = s.pixel_size.x_nm
    checked = 0
    for i, t in truth.items():
        if t["touches_edge"]:
            continue
        got = table.loc[i, "equivalent_diameter_nm"]
        tol = max(0.02 * t["equivalent_diameter_nm"], nm)  # 2 % or 1 px
        assert abs(got - t["equivalent_diameter_nm"]) <= tol, (i, got, t["equivalent_diameter_nm"])
        assert table.loc[i, "class_name"] == t["class_name"]
        checked += 1
    assert checked >= 5
    # Densities are exact: count over the analysed area.
    all_row = result.summary.set_index("class_name").loc["all"]
    area_nm2 = s.labels.size * s.pixel_size.area_nm2
    assert all_row["count"] == len(truth)
    assert all_row["density_per_nm2"] == pytest.approx(len(truth) / area_nm2, rel=1e-12)
    assert all_row["density_per_um2"] == pytest.approx(len(truth) / area_nm2 * 1e6, rel=1e-12)


def test_heywood_of_filled_discs_near_one():
    """Near-round voids (axis ratio >= 0.93, so their exact Heywood is < 1.001):
    measured Heywood circularity within 5 % of 1 for radii of 5 px and more."""
    s = generate("tem-voids", shape=(512, 512), seed=3, pixel_size_nm=0.2)
    table = measure_image(s.labels, s.pixel_size).table.set_index("label")
    discs = [t["id"] for t in s.truth if not t["touches_edge"]
             and t["semi_minor_nm"] / s.pixel_size.x_nm >= 5
             and t["semi_minor_nm"] >= 0.93 * t["semi_major_nm"]]
    assert len(discs) >= 3
    h = table.loc[discs, "heywood_circularity"].to_numpy()
    assert np.all(np.abs(h - 1.0) <= 0.05), h


def test_edge_exclusion_drops_exactly_the_edge_objects():
    s = generate("tem-loops", shape=(300, 300), seed=5)
    result = measure_image(s.labels, s.pixel_size, settings=MeasureSettings(edges="exclude"))
    n_edge = sum(t["touches_edge"] for t in s.truth)
    assert result.summary.set_index("class_name").loc["all", "count"] == len(s.truth) - n_edge
