"""A viewer-level event that says the model registry changed.

Docks that list models (Predict, Label) connect to it; docks that add models
(Train, an import) emit it. The event lives on the viewer it concerns, so two
viewers never hear each other and nothing global is kept.
"""

from __future__ import annotations

#: Name of the event on ``viewer.events``.
MODELS_CHANGED = "microseg_models_changed"


def models_changed_event(viewer):
    """``viewer.events.microseg_models_changed``, added on first use.

    Emit it with ``name=`` the model that was added or replaced; connect a
    callback that re-reads the registry.
    """
    events = viewer.events
    if not hasattr(events, MODELS_CHANGED):
        events.add(**{MODELS_CHANGED: None})
    return getattr(events, MODELS_CHANGED)
