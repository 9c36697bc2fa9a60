"""Label dock: adapt the live promptable model to the objects committed so far.

"Adapt the model to my objects" fine-tunes the offline promptable model (or a
fine-tune of it) that the dock is prompting with, on the objects of the
current labels layer, in a worker, for a budget of seconds
(:func:`~napari_microseg.core.promptable.adaptation.adapt_to_objects`). The
live model is switched only when the adapted one is better on committed
objects held out of its fine-tune, never when it is worse; the undo steps, the
prompts and the target stay. With "adapt again after every N new objects"
ticked, a run starts by itself once the user has committed N more objects
since the last one. A running adaptation can be stopped; the live model then
stays.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, PushButton, SpinBox

from .workers import start_worker


def adapt_layers(image_layer, labels_layer, **kwargs):
    """:func:`adapt_to_objects` on one image layer and its labels (a copy taken here, in the worker)."""
    from ..core.promptable.adaptation import adapt_to_objects
    from ..core.prompting.eval_data import Sample

    data = image_layer.data[0] if getattr(image_layer, "multiscale", False) else image_layer.data
    sample = Sample(image_layer.name, np.asarray(data), np.array(labels_layer.data, copy=True))
    return adapt_to_objects([sample], **kwargs)


def object_count(labels_layer) -> int:
    """Objects in ``labels_layer`` (its features table has one row per object)."""
    features = getattr(labels_layer, "features", None)
    if features is not None and len(features):
        return int(len(features))
    return int(np.count_nonzero(np.unique(np.asarray(labels_layer.data))))


class AdaptationPanel:
    """The adaptation buttons of the Label dock and what they do.

    Parameters
    ----------
    controller : callable
        Returns the dock's live :class:`~napari_microseg.gui.labeling.LabelingController`
        (or ``None`` before Start).
    say : callable
        Shows one line in the dock's status.
    """

    def __init__(self, controller, say):
        self._controller = controller
        self._say = say
        self.adapt_button = PushButton(text="Adapt the model to my objects")
        self.stop_button = PushButton(text="Stop adapting", enabled=False)
        self.auto = CheckBox(text="adapt again after every N new objects", value=False)
        self.every = SpinBox(label="N (new objects)", min=4, max=1000, value=20)
        self.seconds = SpinBox(label="adaptation budget (s)", min=10, max=3600, value=120)
        self.widgets = [self.adapt_button, self.stop_button, self.auto, self.every, self.seconds]
        self.adapt_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.worker = None
        #: The last adaptation's result (an ``AdaptationResult``), for the user and for tests.
        self.result = None
        self._stop = False
        self._count_at_last_run = 0

    def start(self, *_):
        """Start an adaptation of the live model on the committed objects; the worker or ``None``."""
        from ..core.promptable.backend import PromptableBackend

        ctl = self._controller()
        if ctl is None or ctl.labels_layer is None:
            self._say("Press Start first.")
            return None
        if self.worker is not None:
            self._say("An adaptation is already running.")
            return None
        backend = ctl.session.backend
        init = getattr(backend, "source", None)
        if not isinstance(backend, PromptableBackend) or init is None:
            self._say(f"{backend.name} cannot be adapted here: choose microseg-promptable (or a "
                      "fine-tune of it) and press Start.")
            return None
        n = object_count(ctl.labels_layer)
        self._count_at_last_run = n
        self._stop = False
        self.stop_button.enabled = True
        self._say(f"Adapting {backend.name} to {n} committed objects (at most "
                  f"{self.seconds.value} s); keep labelling.")
        self.worker = start_worker(
            adapt_layers, ctl.image_layer, ctl.labels_layer, init=init,
            seconds=float(self.seconds.value), should_stop=lambda: self._stop,
            on_returned=lambda res: self._done(ctl, backend, res), on_finished=self._finished,
            progress_bar={"desc": "Adapting the model"},
        )
        return self.worker

    def stop(self, *_):
        """Ask the running adaptation to stop after its current step (the live model stays)."""
        self._stop = True
        self._say("Stopping the adaptation…")

    def _finished(self):
        self.worker = None
        self.stop_button.enabled = False

    def _done(self, ctl, old, res):
        from ..core.promptable.backend import PromptableBackend

        self.result = res
        if not res.accepted or ctl is not self._controller() or ctl.session.backend is not old:
            self._say(res.reason)
            return
        new = PromptableBackend.from_checkpoint(res.weights)
        base = old.name.removesuffix(" (adapted)")
        new.name = f"{base} (adapted)"
        self._say(f"{res.reason}; preparing it…")
        ctl.swap_backend(new, on_ready=lambda status: self._say(
            f"{res.reason}. Now prompting with {new.name} (weights: {res.weights})."))

    def reset(self, labels_layer) -> None:
        """Count new objects from now on (objects already in ``labels_layer`` do not trigger)."""
        self._count_at_last_run = object_count(labels_layer)

    def labels_changed(self):
        """Start an adaptation when automatic adaptation is on and N new objects were committed."""
        ctl = self._controller()
        if not self.auto.value or self.worker is not None or ctl is None:
            return
        if object_count(ctl.labels_layer) - self._count_at_last_run >= self.every.value:
            self.start()
