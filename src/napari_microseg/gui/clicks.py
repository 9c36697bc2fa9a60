"""Mouse clicks (press and release without a drag) as napari layer callbacks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def click_callback(on_click: Callable) -> Callable:
    """A ``layer.mouse_drag_callbacks`` entry calling ``on_click(layer, rowcol, event)`` on a click.

    A press that moves before its release is a pan or a drag, not a click, and is
    ignored. ``rowcol`` is the release position in the layer's data pixels.
    """

    def callback(layer, event):
        start = np.asarray(event.position)
        yield
        moved = False
        while event.type == "mouse_move":
            moved = moved or bool(np.linalg.norm(np.asarray(event.position) - start) > 0)
            yield
        if not moved:
            on_click(layer, layer.world_to_data(event.position)[-2:], event)

    return callback
