"""Layer pickers that follow the layer the user works on.

Every dock that works on an image and/or a Labels layer (Measure, Correct,
Predict, Evaluate, Train) builds its pickers with :func:`layer_picker` (helper
layers are never offered) and hands them to a :class:`LayerFollower`:

* when the user makes an Image or Labels layer active in the layer list, the
  pickers follow it (the image picker takes an image, the labels picker a
  Labels layer of the same size, and the other way round);
* a picker the user (or code) set explicitly is *pinned* and no longer
  follows, until its layer is removed;
* a ground-truth layer (``metadata["ground_truth"]``, e.g. the sample data's
  synthetic truth) is never the default of a target picker; only a picker of
  role ``"truth"`` (the Evaluate dock's) prefers it.
"""

from __future__ import annotations

from contextlib import contextmanager

from .layer_data import is_ground_truth, is_helper_layer, layer_choices
from .units import keep_units_consistent

#: Roles a picker can play.
ROLES = ("image", "labels", "truth")


def is_output_image(layer) -> bool:
    """Whether ``layer`` is a model output image (probabilities), not a micrograph to work on."""
    return bool((getattr(layer, "metadata", None) or {}).get("probability"))


def layer_picker(viewer, kind: str, label: str, *, nullable: bool = False):
    """A magicgui layer combo box of ``kind`` ("Image" or "Labels") without helper layers."""
    import napari
    from magicgui.widgets import create_widget

    cls = getattr(napari.layers, kind)
    options = {"choices": layer_choices(viewer, cls)}
    if nullable:
        options["nullable"] = True
    return create_widget(annotation=f"napari.layers.{kind}", label=label, options=options)


def _yx(layer) -> tuple:
    shape = getattr(layer, "data", None)
    shape = getattr(shape, "shape", ())
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    return tuple(shape[-2:])


class LayerFollower:
    """Keep a dock's layer pickers on the layer the user works on.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose layer selection is followed.
    image, labels, truth : magicgui ComboBox, optional
        The dock's image picker, target Labels picker, ground-truth picker.
    truth_ok : bool
        Whether the ``labels`` picker may default to a ground-truth layer
        (the Train dock's labels are annotations, so truth is fine there).
    """

    def __init__(self, viewer, *, image=None, labels=None, truth=None, truth_ok: bool = False):
        self._viewer = viewer
        self._truth_ok = truth_ok
        self.combos = {r: c for r, c in zip(ROLES, (image, labels, truth), strict=True) if c is not None}
        #: Roles whose picker the user set; they do not follow the active layer.
        self.pinned: set[str] = set()
        self._auto = 0
        for role, combo in self.combos.items():
            combo.changed.connect(lambda *_, role=role: self._on_changed(role))
        viewer.layers.selection.events.active.connect(self._on_active)
        # a dock's image and labels must share a unit, or napari cannot fit them together
        keep_units_consistent(viewer)
        self.reset_choices()

    @contextmanager
    def _programmatic(self):
        self._auto += 1
        try:
            yield
        finally:
            self._auto -= 1

    def _on_changed(self, role: str) -> None:
        if not self._auto:
            self.pinned.add(role)

    def _on_active(self, *_):
        self.reset_choices()

    def reset_choices(self, *_):
        """Refresh the pickers' choices, unpin removed layers, follow the active layer."""
        with self._programmatic():
            for role, combo in self.combos.items():
                old = combo.value
                combo.reset_choices()
                if role in self.pinned and (old is None or old not in self._viewer.layers):
                    self.pinned.discard(role)
            self._follow()

    # -- choosing ------------------------------------------------------------------------

    def _layers(self, kind: str) -> list:
        import napari

        cls = getattr(napari.layers, kind)
        return [lyr for lyr in self._viewer.layers
                if isinstance(lyr, cls) and not is_helper_layer(lyr) and not is_output_image(lyr)]

    def _is(self, layer, kind: str) -> bool:
        import napari

        return isinstance(layer, getattr(napari.layers, kind)) and not is_helper_layer(layer)

    def _pick(self, candidates: list, like=None, prefer_truth: bool = False):
        """The topmost candidate, preferring the size of ``like`` and (not) ground truth."""
        if not candidates:
            return None

        def rank(lyr):
            same = like is not None and _yx(lyr) == _yx(like)
            truth = is_ground_truth(lyr) == prefer_truth
            return (same, truth)

        return max(reversed(candidates), key=rank)  # max keeps the first best: the topmost layer

    def _want(self, role: str, active):
        combo = self.combos[role]
        current = combo.value
        if role == "image":
            if self._is(active, "Image") and not is_output_image(active):
                return active
            if self._is(active, "Labels"):  # an image of the labels' size, never one that does not fit
                if current is not None and _yx(current) == _yx(active):
                    return current
                fits = [lyr for lyr in self._layers("Image") if _yx(lyr) == _yx(active)]
                return self._pick(fits) if fits else (None if self._nullable(combo) else current)
            return current if current is not None else self._pick(self._layers("Image"))
        labels = self._layers("Labels")
        if role == "labels":
            if self._is(active, "Labels") and (self._truth_ok or not is_ground_truth(active)):
                return active
            like = active if self._is(active, "Image") and not is_output_image(active) else None
            ok = [lyr for lyr in labels if (self._truth_ok or not is_ground_truth(lyr))
                  and (like is None or _yx(lyr) == _yx(like))]  # an image's labels have its size
            if current is not None and current in ok:
                return current
            return self._pick(ok) if ok else (None if self._nullable(combo) else current)
        # truth: prefer ground-truth layers the size of the prediction, never the prediction itself
        pred = self.combos["labels"].value if "labels" in self.combos else None
        others = [lyr for lyr in labels if lyr is not pred]
        if current is not None and current is not pred and (is_ground_truth(current) or
                                                            not any(map(is_ground_truth, others))):
            return current
        return self._pick(others, like=pred, prefer_truth=True) or current

    @staticmethod
    def _nullable(combo) -> bool:
        return None in combo.choices

    def _follow(self) -> None:
        active = self._viewer.layers.selection.active
        for role in ("labels", "image", "truth"):  # truth looks at the chosen prediction
            if role not in self.combos or role in self.pinned:
                continue
            combo = self.combos[role]
            want = self._want(role, active)
            if want is combo.value:
                continue
            if want is None and not self._nullable(combo):
                continue
            if want is None or any(c is want for c in combo.choices):
                combo.value = want
