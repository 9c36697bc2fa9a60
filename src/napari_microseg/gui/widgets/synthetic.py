"""Synthetic-micrograph dock: generate images with exact ground truth as layers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, PushButton, SpinBox

from ...core.synth import KINDS, generate
from ..layer_data import sample_to_layers
from ..workers import start_worker

if TYPE_CHECKING:
    import napari


def add_layer_data(viewer, layer_data: list[tuple]) -> list:
    """Add ``LayerDataTuple`` items to ``viewer``; return the new layers."""
    added = []
    for data, kwargs, kind in layer_data:
        added.append(getattr(viewer, f"add_{kind}")(data, **kwargs))
    return added


class SyntheticWidget(Container):
    """Dock widget: make a synthetic TEM/STEM/SEM micrograph and its labels."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self._worker = None
        self.kind = ComboBox(label="kind", choices=list(KINDS), value="tem-loops")
        self.size = SpinBox(label="size (px)", min=64, max=8192, step=64, value=512)
        self.pixel_size = FloatSpinBox(label="pixel size (nm/px)", min=0.01, max=1000.0, step=0.01, value=0.39)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.nuisances = CheckBox(text="noise, background, bend contours", value=True)
        self.button = PushButton(text="Generate")
        self.extend([self.kind, self.size, self.pixel_size, self.seed, self.nuisances, self.button])
        self.button.changed.connect(self.run)

    def parameters(self) -> dict:
        """The generator arguments gathered from the widgets."""
        return dict(
            kind=self.kind.value,
            shape=(self.size.value, self.size.value),
            pixel_size_nm=self.pixel_size.value,
            seed=self.seed.value,
            nuisances=self.nuisances.value,
        )

    def run(self, *_):
        """Generate in a worker thread and add the layers when done."""
        params = self.parameters()
        name = f"{params['kind']} seed {params['seed']}"
        self.button.enabled = False

        def done(sample):
            add_layer_data(self._viewer, sample_to_layers(sample, name))

        def finished():
            self.button.enabled = True

        self._worker = start_worker(generate, on_returned=done, on_finished=finished, **params)
        return self._worker
