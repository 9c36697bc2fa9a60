"""Tiny U-Net and synthetic micrographs for the batch tests (and the batch benchmark)."""

from __future__ import annotations

from pathlib import Path

CLASSES = [
    {"id": 1, "name": "<111> loop", "color": "#e6194b"},
    {"id": 3, "name": "black dot", "color": "#4363d8"},
]
#: A very small U-Net: MobileNetV3-small x0.5 encoder, 3 levels, narrow decoder.
TINY_PARAMS = {
    "encoder_name": "tu-mobilenetv3_small_050",
    "encoder_depth": 3,
    "decoder_channels": [16, 8, 4],
}


def register_tiny_unet(name: str = "tiny-unet", seed: int = 0, tile: int = 128, halo: int = 16):
    """Register a random-initialised tiny U-Net in the current MICROSEG_MODELS_DIR; return its card."""
    import torch

    from napari_microseg.core.models import ModelCard, build_model, register_model

    card = ModelCard(
        name=name,
        architecture="unet",
        classes=CLASSES,
        activation="softmax",
        params=TINY_PARAMS,
        tile=tile,
        halo=halo,
    )
    torch.manual_seed(seed)
    register_model(build_model(card), card)
    return card


def write_micrographs(
    folder, n: int, size: int = 160, seed0: int = 0, prefix: str = "img"
) -> list[Path]:
    """``n`` synthetic TEM micrographs (ImageJ TIFF at 0.5 nm/px) named ``{prefix}NN.tif``."""
    import tifffile

    from napari_microseg.core.synth import generate

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        s = generate("tem-loops", shape=(size, size), seed=seed0 + i)
        path = folder / f"{prefix}{i:02d}.tif"
        nm = s.pixel_size.x_nm
        tifffile.imwrite(
            path, s.image, imagej=True, resolution=(1 / nm, 1 / nm), metadata={"unit": "nm"}
        )
        out.append(path)
    return out


def write_corrupt(path) -> Path:
    """A file with a TIFF header and garbage after it."""
    path = Path(path)
    path.write_bytes(b"II*\x00" + b"not an image " * 20)
    return path
