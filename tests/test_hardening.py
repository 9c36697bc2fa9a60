"""Dispersed-barrier hardening against hand calculations."""

import math

import numpy as np
import pandas as pd
import pytest

from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.measure import (
    Counting,
    HardeningParameters,
    dispersed_barrier_hardening,
)


def _table(rows):
    """A minimal calibrated table: (class_name, equivalent diameter in nm)."""
    return pd.DataFrame(
        {
            "label": np.arange(1, len(rows) + 1),
            "class_name": [r[0] for r in rows],
            "equivalent_diameter_nm": [float(r[1]) for r in rows],
        }
    )


def _counting(n, area_nm2=1e6):
    # 1 µm² reference area as 1e6 pixels of 1 nm²
    return Counting(np.ones(n, bool), int(area_nm2), "include", 0.0, "nm", 1.0)


def test_single_class_hand_calculation():
    t = _table([("<111> loop", 10.0), ("<111> loop", 20.0)])
    r = dispersed_barrier_hardening(t, 100.0, counting=_counting(2))
    # V = 1 µm² x 100 nm = 1e-12 m² x 1e-7 m = 1e-19 m³; N = 2e19 m⁻³; d = 15 nm
    n_v = 2 / 1e-19
    expected_pa = 3.06 * 0.11 * 82e9 * 0.249e-9 * math.sqrt(n_v * 15e-9)
    row = r.per_class.iloc[0]
    assert row["number_density_m3"] == pytest.approx(2e19)
    assert row["sum_nd_per_m2"] == pytest.approx(3e11)
    assert row["delta_sigma_mpa"] == pytest.approx(expected_pa / 1e6)
    assert row["delta_sigma_mpa"] == pytest.approx(3.7643, rel=1e-4)  # worked by hand
    # bins with per-bin means give the same Σ N_i d_i: 1e19·10e-9 + 1e19·20e-9
    rb = dispersed_barrier_hardening(t, 100.0, counting=_counting(2), bins=[0, 15, 25])
    assert rb.per_class.iloc[0]["sum_nd_per_m2"] == pytest.approx(1e11 + 2e11)
    assert list(rb.per_bin["count"]) == [1, 1]
    assert list(rb.per_bin["mean_diameter_nm"]) == [10.0, 20.0]


def test_classes_linear_and_rss_totals_and_custom_constants():
    t = _table(
        [
            ("<111> loop", 8.0),
            ("<100> loop", 12.0),
            ("<100> loop", 16.0),
            ("black dot", 3.0),
            ("void", 20.0),
        ]
    )
    p = HardeningParameters(
        taylor_factor=3.0,
        shear_modulus_gpa=80.0,
        burgers_vector_nm=0.25,
        alpha={"<111> loop": 0.2, "<100> loop": 0.4, "black dot": 0.1},
    )
    r = dispersed_barrier_hardening(t, 50.0, counting=_counting(5), params=p)
    vol = 1e-12 * 50e-9

    def ds(alpha, diams):
        nd = sum(d * 1e-9 for d in diams) / vol
        return 3.0 * alpha * 80e9 * 0.25e-9 * math.sqrt(nd) / 1e6

    e111, e100, ebd = ds(0.2, [8.0]), ds(0.4, [12.0, 16.0]), ds(0.1, [3.0])
    pc = r.per_class.set_index("class_name")
    assert pc.loc["<111> loop", "delta_sigma_mpa"] == pytest.approx(e111)
    assert pc.loc["<100> loop", "delta_sigma_mpa"] == pytest.approx(e100)
    assert pc.loc["black dot", "delta_sigma_mpa"] == pytest.approx(ebd)
    assert np.isnan(pc.loc["void", "delta_sigma_mpa"])  # no α for voids: left out
    assert r.total_linear_mpa == pytest.approx(e111 + e100 + ebd)
    assert r.total_rss_mpa == pytest.approx(math.sqrt(e111**2 + e100**2 + ebd**2))
    assert r.parameters["taylor_factor"] == 3.0 and r.parameters["thickness_nm"] == 50.0
    assert r.to_dict()["total_rss_mpa"] == r.total_rss_mpa


def test_defaults_are_the_fecral_constants():
    p = HardeningParameters()
    assert (p.taylor_factor, p.shear_modulus_gpa, p.burgers_vector_nm) == (3.06, 82.0, 0.249)
    assert p.alpha == {"<111> loop": 0.11, "<100> loop": 0.32, "black dot": 0.10}


def test_only_counted_objects_contribute():
    t = _table([("black dot", 4.0), ("black dot", 100.0)])
    c = Counting(np.array([True, False]), 10**6, "exclude", 0.0, "nm", 1.0)
    r = dispersed_barrier_hardening(t, 100.0, counting=c)
    assert r.per_class.iloc[0]["count"] == 1
    assert r.per_class.iloc[0]["mean_diameter_nm"] == 4.0


def test_needs_calibration_and_thickness():
    with pytest.raises(MicrosegError, match="calibrated"):
        dispersed_barrier_hardening(pd.DataFrame({"equivalent_diameter_px": [1.0]}), 10.0)
    with pytest.raises(MicrosegError, match="thickness"):
        dispersed_barrier_hardening(_table([("black dot", 2.0)]), 0.0, counting=_counting(1))
