"""Colour objects by a measured property (vectorised, no plotting library needed).

:func:`property_colors` maps one column of a per-object table to RGBA colours
aligned with the table's rows, so a viewer can recolour all labels by another
property in a few milliseconds. Built-in colormaps are 17-point samples of
matplotlib's ``viridis``, ``magma`` and ``turbo`` (linearly interpolated) and
``gray``; other names are looked up in matplotlib when it is installed, and an
``(m, 3|4)`` array or a callable ``f(values in [0, 1]) -> (n, 4)`` is accepted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import MicrosegError

_BUILTIN = {
    "viridis": [
        [0.267, 0.0049, 0.3294],
        [0.2823, 0.095, 0.4173],
        [0.2788, 0.1755, 0.4834],
        [0.259, 0.2515, 0.5247],
        [0.2297, 0.3224, 0.5457],
        [0.1994, 0.3876, 0.5546],
        [0.1727, 0.4488, 0.5579],
        [0.149, 0.5081, 0.5572],
        [0.1276, 0.5669, 0.5506],
        [0.1206, 0.6258, 0.5335],
        [0.1579, 0.6838, 0.5017],
        [0.2461, 0.7389, 0.452],
        [0.3692, 0.7889, 0.3829],
        [0.516, 0.8312, 0.2943],
        [0.6785, 0.8637, 0.1895],
        [0.8456, 0.8873, 0.0997],
        [0.9932, 0.9062, 0.1439],
    ],
    "magma": [
        [0.0015, 0.0005, 0.0139],
        [0.0396, 0.0311, 0.1335],
        [0.1131, 0.0655, 0.2768],
        [0.2117, 0.062, 0.4186],
        [0.3167, 0.0717, 0.4854],
        [0.4147, 0.1104, 0.5047],
        [0.5128, 0.1482, 0.5076],
        [0.6136, 0.1818, 0.4985],
        [0.7164, 0.215, 0.4753],
        [0.8169, 0.2559, 0.4365],
        [0.9043, 0.3196, 0.3881],
        [0.9609, 0.4183, 0.3596],
        [0.9867, 0.5356, 0.3822],
        [0.9961, 0.6537, 0.4462],
        [0.9969, 0.7696, 0.5349],
        [0.9924, 0.8843, 0.6401],
        [0.9871, 0.9914, 0.7495],
    ],
    "turbo": [
        [0.19, 0.0718, 0.2322],
        [0.2511, 0.2524, 0.6337],
        [0.2763, 0.4212, 0.8912],
        [0.2586, 0.5796, 0.9988],
        [0.1584, 0.7355, 0.923],
        [0.0927, 0.8655, 0.7623],
        [0.1966, 0.949, 0.5947],
        [0.4278, 0.9942, 0.3858],
        [0.6436, 0.99, 0.2336],
        [0.8047, 0.9245, 0.2046],
        [0.933, 0.8124, 0.2267],
        [0.9931, 0.6741, 0.2035],
        [0.9836, 0.4929, 0.1285],
        [0.921, 0.3149, 0.0548],
        [0.8161, 0.1846, 0.0181],
        [0.6645, 0.0844, 0.0042],
        [0.4796, 0.0158, 0.0106],
    ],
    "gray": [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]],
}


def _lut(cmap) -> np.ndarray | None:
    """An (m, 4) float LUT for a name or array, or None for a callable."""
    if callable(cmap) and not isinstance(cmap, str):
        return None
    if isinstance(cmap, str):
        key = cmap.lower()
        if key == "grey":
            key = "gray"
        if key in _BUILTIN:
            arr = np.asarray(_BUILTIN[key], dtype=np.float64)
        else:
            try:
                import matplotlib  # optional
            except ImportError:
                raise MicrosegError(
                    f"Unknown colormap {cmap!r}; built in: {sorted(_BUILTIN)}."
                ) from None
            try:
                arr = matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))
            except KeyError:
                raise MicrosegError(f"Unknown colormap {cmap!r}.") from None
    else:
        arr = np.asarray(cmap, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (3, 4) or arr.shape[0] < 2:
        raise MicrosegError("A colormap array must have shape (m >= 2, 3 or 4).")
    if arr.shape[1] == 3:
        arr = np.concatenate([arr, np.ones((arr.shape[0], 1))], axis=1)
    return arr


def property_colors(
    table: pd.DataFrame,
    column: str,
    cmap="viridis",
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    nan_color=(0.5, 0.5, 0.5, 1.0),
) -> np.ndarray:
    """RGBA colour of each row of ``table`` from the values of ``column``.

    Parameters
    ----------
    table : pandas.DataFrame
        Per-object table (row ``i`` is label ``table["label"][i]``).
    column : str
        Numeric (or boolean) column to colour by.
    cmap : str, array or callable
        Colormap, see the module docstring.
    vmin, vmax : float, optional
        Value range mapped to the ends of the colormap (default: finite min/max).
    nan_color : tuple of float
        Colour of non-finite values.

    Returns
    -------
    ndarray of float, shape (n, 4)
        RGBA in [0, 1], aligned with the table's rows.
    """
    if column not in table:
        raise MicrosegError(f"No column {column!r} in the table.")
    v = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(v)
    lo = float(np.min(v[finite])) if vmin is None and finite.any() else (vmin or 0.0)
    hi = float(np.max(v[finite])) if vmax is None and finite.any() else (vmax or 1.0)
    span = hi - lo
    t = (v - lo) / span if span > 0 else np.full_like(v, 0.5)
    t = np.clip(np.where(finite, t, 0.0), 0.0, 1.0)
    lut = _lut(cmap)
    if lut is None:
        out = np.asarray(cmap(t), dtype=np.float64).reshape(len(t), -1)
        if out.shape[1] == 3:
            out = np.concatenate([out, np.ones((len(t), 1))], axis=1)
    else:
        x = t * (lut.shape[0] - 1)
        i0 = np.minimum(x.astype(np.intp), lut.shape[0] - 2)
        f = (x - i0)[:, None]
        out = lut[i0] * (1.0 - f) + lut[i0 + 1] * f
    out[~finite] = np.asarray(nan_color, dtype=np.float64)
    return out


#: Colour of objects that have no colour of their own yet (not measured, unclassified).
UNMEASURED_COLOR = (0.62, 0.62, 0.62, 1.0)


def label_color_dict(table: pd.DataFrame, colors: np.ndarray, other=None) -> dict:
    """``{label: rgba}`` for a viewer: background (0) transparent, other ids ``other``.

    The ``None`` key is the colour of every id not in the table, e.g. objects
    drawn after the measurement: it must stay visible (default
    :data:`UNMEASURED_COLOR`), or new objects would be invisible on the canvas
    until the next measurement.
    """
    d = dict(zip(table["label"].to_numpy().tolist(), colors, strict=True))
    d[0] = np.zeros(4)
    d[None] = np.asarray(UNMEASURED_COLOR if other is None else other, dtype=np.float64)
    return d


def hex_to_rgba(color: str, alpha: float = 1.0) -> np.ndarray:
    """``"#rrggbb"`` (or ``"#rrggbbaa"``) as float RGBA in [0, 1]."""
    text = str(color).lstrip("#")
    if len(text) not in (6, 8) or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        raise MicrosegError(f"Colour {color!r} is not '#rrggbb'.")
    rgba = [int(text[i:i + 2], 16) / 255.0 for i in range(0, len(text), 2)]
    if len(rgba) == 3:
        rgba.append(alpha)
    return np.asarray(rgba, dtype=np.float64)


def class_color_dict(ids, instance_classes: dict, class_colors: dict,
                     unclassified=UNMEASURED_COLOR) -> dict:
    """``{label: rgba}`` colouring each object by its class.

    Parameters
    ----------
    ids : iterable of int
        Object ids to colour (0 is background and stays transparent).
    instance_classes : dict
        ``{object id: class id}``; missing ids are unclassified.
    class_colors : dict
        ``{class id: "#rrggbb"}``.
    unclassified : tuple of float
        Colour of unclassified objects and of ids added later (the ``None`` key).

    Returns
    -------
    dict
        ``{label: float RGBA}`` with ``0`` transparent and ``None`` (any other id)
        ``unclassified``.
    """
    lut = {int(c): hex_to_rgba(col) for c, col in class_colors.items()}
    grey = np.asarray(unclassified, dtype=np.float64)
    out = {int(i): lut.get(int(instance_classes.get(int(i), 0)), grey) for i in ids if int(i) != 0}
    out[0] = np.zeros(4)
    out[None] = grey
    return out
