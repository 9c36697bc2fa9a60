"""Helpers for the hostile-input suite: run the CLI in process and read its one-line errors."""

from __future__ import annotations

import dataclasses

import pytest


@dataclasses.dataclass
class CliResult:
    """Exit code and captured output of one ``microseg`` call."""

    rc: int
    out: str
    err: str

    def error_line(self) -> str:
        """The single non-empty stderr line, asserting there is exactly one and no traceback."""
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        assert "Traceback" not in self.err, self.err
        # warnings may come before the error; the error is the last line and the only one
        # that starts with "microseg ... error:"
        errors = [ln for ln in lines if ": error:" in ln]
        assert len(errors) == 1, self.err
        return errors[0]


@pytest.fixture
def cli(capsys):
    """Call ``microseg ARGS...`` in process; return a :class:`CliResult` (never raises SystemExit)."""
    from napari_microseg.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse errors
            rc = e.code if isinstance(e.code, int) else 2
        cap = capsys.readouterr()
        return CliResult(int(rc), cap.out, cap.err)

    return run


@pytest.fixture
def pair(tmp_path):
    """A calibrated micrograph and a labels TIFF (+ sidecar) with 3 squares."""
    import numpy as np
    import tifffile

    from napari_microseg.core.calibration import PixelSize
    from napari_microseg.core.labels_io import write_labels

    img = np.random.default_rng(0).integers(0, 4000, (64, 80)).astype(np.uint16)
    ip = tmp_path / "img.tif"
    tifffile.imwrite(ip, img)
    lab = np.zeros(img.shape, np.uint16)
    lab[5:15, 5:15], lab[30:40, 30:42], lab[50:60, 60:70] = 1, 2, 3
    out = write_labels(tmp_path / "X.tif", lab, instance_classes={1: 1, 2: 1},
                       pixel_size=PixelSize.isotropic(0.5, "user"))
    return ip, out["labels"], out["sidecar"]


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    """A registered untrained 1-class semantic model (``tiny-seg``) with a 64 px tile."""
    from napari_microseg.core.models import ModelCard, build_model, register_model

    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    card = ModelCard(name="tiny-seg", architecture="defectsegnet", activation="sigmoid",
                     params={"growth": 2, "depth": 2, "layers_per_block": 1},
                     classes=[{"id": 1, "name": "loop", "color": "#3cb44b"}], tile=64, halo=8)
    register_model(build_model(card), card)
    return card
