"""Tiled inference of a semantic model on an image of any size.

:func:`predict_probabilities` normalises the image as the model card says,
resamples it to the card's nm/px when both are calibrated and differ, runs the
network on overlapping tiles (:mod:`.tiles`) in batches and writes back each
tile's kept part. Tiles are read, normalised and predicted a batch at a time,
so memory stays at the output map plus one batch, whatever the image size.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import bounds
from ..calibration import PixelSize
from ..device import autocast
from ..errors import MicrosegError
from ..prompting.normalize import apply_normalization, normalization_range
from .architectures import input_multiple, to_probabilities
from .card import ModelCard, ModelError, check_tiling
from .tiles import Tile, batches, tile_grid

#: Relative pixel-size difference above which an image is resampled to the card's nm/px.
RESAMPLE_TOLERANCE = 0.01


class InferenceCancelled(MicrosegError):
    """The user cancelled a running prediction."""


def check_image(image, card: ModelCard):
    """``image`` as ``(H, W)`` or ``(H, W, C)`` that ``card``'s model can take."""
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == card.in_channels):
        return image
    if image.ndim == 3 and image.shape[-1] in (3, 4) and card.in_channels == 1:
        raise MicrosegError(
            f"Model {card.name!r} takes grey images but this image has {image.shape[-1]} "
            "channels; open it as grey."
        )
    raise MicrosegError(
        f"Model {card.name!r} takes {card.in_channels}-channel images, not an array of shape "
        f"{tuple(image.shape)}."
    )


def intensity_window(image, card: ModelCard) -> tuple[float, float]:
    """The ``(lo, hi)`` intensities mapped to 0 and 1, as the card says."""
    norm = card.normalization
    if norm["method"] == "fixed":
        lo, hi = (float(v) for v in norm["range"])
        return lo, hi
    return normalization_range(image, percentiles=tuple(norm["percentiles"]))


def resample_factors(pixel_size: PixelSize | None, card: ModelCard) -> tuple[float, float] | None:
    """Zoom ``(fy, fx)`` that brings the image to the card's nm/px, ``None`` when not needed."""
    if card.pixel_size_nm is None or pixel_size is None or not pixel_size.calibrated:
        return None
    f = (pixel_size.y_nm / card.pixel_size_nm, pixel_size.x_nm / card.pixel_size_nm)
    if all(abs(v - 1.0) <= RESAMPLE_TOLERANCE for v in f):
        return None
    return f


def read_tile(image, tile: Tile, window: tuple[float, float], in_channels: int, multiple: int):
    """The tile's window as normalised float32 ``(C, h', w')``, padded to ``multiple``."""
    a = apply_normalization(np.asarray(image[tile.window]), *window)
    a = a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)
    if a.shape[0] != in_channels:
        a = np.repeat(a[:1], in_channels, axis=0)
    h, w = a.shape[1:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        a = np.pad(a, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
    return np.ascontiguousarray(a)


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, k, (-2, -1)) if k else x


def _undo_dihedral(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    y = torch.rot90(y, -k, (-2, -1)) if k else y
    return y.flip(-1) if flip else y


def forward_batch(model, batch: np.ndarray, activation: str, tta: bool = False) -> np.ndarray:
    """Class probabilities ``(B, K, H, W)`` float32 of a normalised batch ``(B, C, H, W)``."""
    device = next(model.parameters(), torch.empty(0)).device
    x = torch.from_numpy(batch).to(device)
    transforms = [(k, f) for f in (False, True) for k in range(4)] if tta else [(0, False)]
    total = None
    with torch.inference_mode(), autocast(device):
        for k, flip in transforms:
            p = to_probabilities(model(_dihedral(x, k, flip)), activation)
            p = _undo_dihedral(p, k, flip)
            total = p if total is None else total + p
    if len(transforms) > 1:
        total = total / len(transforms)
    return total.float().cpu().numpy()


def check_inference_args(tile=None, halo=None, batch_size=None, names=None) -> None:
    """Raise :class:`~napari_microseg.core.bounds.SettingsError` for an unusable tile, halo or batch size.

    ``None`` means "the card's" (tile, halo) or "not given" (batch size). The
    Predict dock, ``microseg predict`` and :func:`predict_probabilities` call it.

    Parameters
    ----------
    tile, halo, batch_size : int, optional
        Tile side (px, ``TILE_RANGE``), halo (px, ``HALO_RANGE``; less than half
        the tile) and tiles per forward pass (``BATCH_SIZE_RANGE``).
    names : dict, optional
        Display names, e.g. ``{"tile": "--tile"}``; default ``inference.tile`` etc.
    """
    names = {"tile": "inference.tile", "halo": "inference.halo",
             "batch_size": "inference.batch_size", **(names or {})}
    if tile is not None:
        bounds.check_int(names["tile"], tile, *bounds.TILE_RANGE, "px")
    if halo is not None:
        bounds.check_int(names["halo"], halo, *bounds.HALO_RANGE, "px")
    if tile is not None and halo is not None and tile <= 2 * halo:
        raise bounds.SettingsError(
            f"{names['tile']} {tile} px must be larger than twice {names['halo']} ({halo} px)."
        )
    if batch_size is not None:
        bounds.check_int(names["batch_size"], batch_size, *bounds.BATCH_SIZE_RANGE)


def effective_tiling(model, card: ModelCard, tile=None, halo=None) -> tuple[int, int, int]:
    """``(tile, halo, multiple)``: tile rounded up to the network's input multiple."""
    multiple = input_multiple(model)
    tile = int(card.tile if tile is None else tile)
    halo = int(card.halo if halo is None else halo)
    tile = int(math.ceil(tile / multiple) * multiple)
    check_tiling(tile, halo, f"model {card.name!r}")
    return tile, halo, multiple


def _tiled(model, card, image, window, tile, halo, multiple, batch_size, tta, progress, cancel):
    h, w = image.shape[:2]
    k = card.n_classes
    out = np.zeros((k, h, w), np.float32)
    tiles = tile_grid((h, w), tile, halo)
    done = 0
    for group in batches(tiles, batch_size):
        if cancel is not None and cancel():
            raise InferenceCancelled("Prediction cancelled.")
        arr = np.stack([read_tile(image, t, window, card.in_channels, multiple) for t in group])
        prob = forward_batch(model, arr, card.activation, tta)
        if prob.shape[1] != k or prob.shape[2:] != arr.shape[2:]:
            raise ModelError(
                f"Model {card.name!r} returned shape {prob.shape[1:]} for an input of "
                f"{arr.shape[1:]}; expected {k} class maps of the input's size."
            )
        for t, p in zip(group, prob, strict=True):
            out[(slice(None), *t.kept)] = p[(slice(None), *t.kept_local)]
        done += len(group)
        if progress is not None:
            progress(done, len(tiles))
    return out


def predict_probabilities(
    model,
    card: ModelCard,
    image,
    *,
    pixel_size: PixelSize | None = None,
    tile: int | None = None,
    halo: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    progress=None,
    cancel=None,
    window: tuple[float, float] | None = None,
) -> np.ndarray:
    """Per-class probability maps of a semantic model over a whole image.

    Parameters
    ----------
    model : torch.nn.Module
        The network in eval mode (on the device it should run on).
    card : ModelCard
        Its card: normalisation, activation, classes, nm/px, tile and halo.
    image : array-like
        ``(H, W)`` or ``(H, W, C)``, any numeric dtype; may be lazy (memmap, zarr).
    pixel_size : PixelSize, optional
        The image's pixel size; with a calibrated card at another nm/px the
        image is resampled to the card's scale and the maps back.
    tile, halo : int, optional
        Override the card's tile side and halo (px at the model's scale).
    batch_size : int
        Tiles per forward pass.
    tta : bool
        Average over the 8 flips/90-degree rotations.
    progress : callable, optional
        ``progress(done_tiles, total_tiles)`` after every batch.
    cancel : callable, optional
        Checked before every batch; when it returns True,
        :class:`InferenceCancelled` is raised.
    window : (float, float), optional
        Intensity window mapped to [0, 1] instead of the card's normalisation of
        ``image`` (blockwise prediction passes the whole image's window).

    Returns
    -------
    ndarray of float32, shape (K, H, W)
        Probability of each of the card's classes (channel order of
        ``card.classes``), at the image's own size.
    """
    if card.task != "semantic":
        raise ModelError(f"Model {card.name!r} is an {card.task} model; use predict_instances.")
    check_inference_args(tile, halo, batch_size)
    image = check_image(image, card)
    tile, halo, multiple = effective_tiling(model, card, tile, halo)
    window = intensity_window(image, card) if window is None else window
    factors = resample_factors(pixel_size, card)
    if factors is None:
        return _tiled(model, card, image, window, tile, halo, multiple, batch_size, tta, progress,
                      cancel)
    small = resample(apply_normalization(np.asarray(image), *window), factors)
    prob = _tiled(model, card, small, (0.0, 1.0), tile, halo, multiple, batch_size, tta,
                  progress, cancel)
    del small
    out = np.empty((prob.shape[0], *image.shape[:2]), np.float32)
    for c in range(prob.shape[0]):
        out[c] = resize_to(prob[c], image.shape[:2], order=1)
    return out


def resample(image: np.ndarray, factors: tuple[float, float], order: int = 1) -> np.ndarray:
    """Zoom a 2-D (or ``(H, W, C)``) float image by ``factors``, anti-aliased when shrinking."""
    from skimage.transform import rescale

    scale = tuple(factors) + ((1.0,) if image.ndim == 3 else ())
    shape = [max(1, round(n * f)) for n, f in zip(image.shape, scale, strict=True)]
    if min(shape[:2]) < 8:
        raise MicrosegError(f"The image is too small to resample to the model's scale ({shape}).")
    out = rescale(image, factors, order=order, anti_aliasing=min(factors) < 1, preserve_range=True,
                  channel_axis=-1 if image.ndim == 3 else None)
    return out.astype(np.float32, copy=False)


def resize_to(arr: np.ndarray, shape, order: int = 1) -> np.ndarray:
    """Resize a 2-D map to ``shape`` (linear for probabilities, nearest for labels)."""
    from skimage.transform import resize

    return resize(arr, tuple(shape), order=order, anti_aliasing=False, preserve_range=True,
                  mode="edge").astype(arr.dtype, copy=False)
