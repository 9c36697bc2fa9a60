"""Simulated napari input for GUI tests: clicks through napari's mouse dispatch, key bindings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MouseEvent:
    """The fields napari's mouse dispatch hands to layer callbacks."""

    type: str
    position: tuple
    button: int = 1
    modifiers: list = field(default_factory=list)
    is_dragging: bool = False
    pos: np.ndarray = field(default_factory=lambda: np.zeros(2))
    view_direction: tuple | None = None
    up_direction: tuple | None = None
    dims_displayed: list = field(default_factory=lambda: [0, 1])
    handled: bool = False


def click(layer, world_yx, button=1, modifiers=()):
    """Press and release at a world position through napari's callback dispatch."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    event = MouseEvent("mouse_press", tuple(world_yx), button, list(modifiers))
    mouse_press_callbacks(layer, ReadOnlyWrapper(event, exceptions=("handled",)))
    event.type = "mouse_release"
    mouse_release_callbacks(layer, ReadOnlyWrapper(event, exceptions=("handled",)))


def press(layer, key):
    """Run ``layer``'s binding for ``key`` (its own, else its class's) as napari would."""
    bindings = {str(k): f for k, f in type(layer).class_keymap.items()}
    bindings.update({str(k): f for k, f in layer.keymap.items()})
    bindings[key](layer)
