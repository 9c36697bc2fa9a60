"""Labels-layer colourmaps built fast (no napari validation of every colour).

Kept apart from the docks so that recolouring a layer does not import a dock's
plotting and measuring code the first time it happens.
"""

from __future__ import annotations

import numpy as np


def direct_colormap(mapping: dict):
    """A napari ``DirectLabelColormap`` from ``{label: float32 RGBA}``, built fast.

    napari validates every colour of a colour dict one by one (about 0.1 s for
    10,000 labels). Our colours are already normalised float32 RGBA arrays, so
    the model is built with pydantic's ``model_construct`` (no validation); if
    that ever fails, the validated constructor is used.
    """
    from napari.utils.colormaps import DirectLabelColormap

    try:
        template = DirectLabelColormap(color_dict={0: np.zeros(4, np.float32), None: np.zeros(4, np.float32)})
        fields = {k: getattr(template, k) for k in type(template).model_fields if k != "color_dict"}
        cmap = DirectLabelColormap.model_construct(color_dict=mapping, **fields)
        cmap.map(np.array([0], dtype=np.int64))  # fails early if napari's internals changed
        return cmap
    except Exception:
        return DirectLabelColormap(color_dict=mapping)
