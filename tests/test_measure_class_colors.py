"""Colours for the canvas: unmeasured ids stay visible, objects by class."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_microseg.core.errors import MicrosegError
from napari_microseg.core.measure.colors import (
    UNMEASURED_COLOR,
    class_color_dict,
    hex_to_rgba,
    label_color_dict,
)


def test_ids_missing_from_the_table_get_a_visible_colour():
    t = pd.DataFrame({"label": [1, 2]})
    d = label_color_dict(t, np.ones((2, 4)))
    assert np.allclose(d[0], 0)  # background transparent
    assert d[None][3] == 1.0 and np.allclose(d[None], UNMEASURED_COLOR)  # a new object is drawn


def test_class_colours():
    d = class_color_dict([0, 1, 2, 3], {1: 5, 2: 6}, {5: "#ff0000", 6: "#00ff0080"})
    assert np.allclose(d[1], [1, 0, 0, 1])
    assert np.allclose(d[2], [0, 1, 0, 128 / 255])
    assert np.allclose(d[3], UNMEASURED_COLOR) and np.allclose(d[None], UNMEASURED_COLOR)
    assert np.allclose(d[0], 0)
    assert np.allclose(hex_to_rgba("#000000", alpha=0.5), [0, 0, 0, 0.5])
    with pytest.raises(MicrosegError, match="rrggbb"):
        hex_to_rgba("red")
