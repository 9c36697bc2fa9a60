"""Datasets for the simulated-user evaluation of prompt backends.

Two folder layouts are understood, both read in place:

* *mask style* (e.g. ``creme-316L-loops``): ``images/N.png`` and ``masks/N.png``,
  a binary mask whose 8-connected components are the instances (an integer
  mask with more than two values is taken as instance labels as is);
* *box style* (e.g. ``uwcmg-fecral-111loops``): ``images/NAME.jpg`` and
  ``boxes/NAME.txt``, one box per line ``ymin xmin ymax xmax`` in pixels, no masks.

A sample is a :class:`Sample` ``(name, image, target)``: ``image`` as stored
(uint8, 2-D) and ``target`` the instance labels (mask style) or an ``(n, 4)``
float array of boxes (box style).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from ..errors import MicrosegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class Sample(NamedTuple):
    """One evaluation image: ``name`` (file stem), ``image`` and ``target``."""

    name: str
    image: np.ndarray
    target: np.ndarray


def _read_grey(path: Path) -> np.ndarray:
    """Read an image file as a 2-D array (colour is converted to grey)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "I", "I;16", "F", "1"):
            im = im.convert("L")
        return np.asarray(im)


def _sort_key(stem: str):
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _select(stems: list[str], images) -> list[str]:
    """``stems`` in natural order, restricted to ``images`` (names or numbers) if given."""
    stems = sorted(stems, key=_sort_key)
    if images is None:
        return stems
    wanted = [Path(str(i)).stem for i in images]
    missing = [w for w in wanted if w not in stems]
    if missing:
        raise MicrosegError(f"No such image(s) in the dataset: {', '.join(missing)}")
    return [s for s in stems if s in wanted]


def _images_by_stem(root: Path) -> dict[str, Path]:
    folder = root / "images"
    if not folder.is_dir():
        raise MicrosegError(f"{root} has no images/ folder.")
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}


def detect_layout(root) -> str:
    """``"masks"`` or ``"boxes"``: which style the dataset folder ``root`` is in."""
    root = Path(root)
    if not (root / "images").is_dir():
        raise MicrosegError(f"{root} is not a dataset folder: it has no images/ folder.")
    if (root / "masks").is_dir():
        return "masks"
    if (root / "boxes").is_dir():
        return "boxes"
    raise MicrosegError(f"{root} has neither masks/ nor boxes/ beside images/.")


def mask_to_instances(mask: np.ndarray) -> np.ndarray:
    """Instance labels (int32) from a binary mask (8-connected) or an instance image."""
    mask = np.asarray(mask)
    values = np.unique(mask)
    if len(values) <= 2:
        lab, _ = ndi.label(mask > 0, structure=np.ones((3, 3), bool))
        return lab.astype(np.int32)
    return mask.astype(np.int32)


def load_creme(root, images=None) -> list[Sample]:
    """Mask-style dataset: samples with instance labels as the target.

    Parameters
    ----------
    root : path-like
        Folder holding ``images/`` and ``masks/`` with matching file names.
    images : sequence of str or int, optional
        Image names (stems) to load, e.g. ``[10, 11]``; all by default.

    Returns
    -------
    list of Sample
    """
    root = Path(root)
    by_stem = _images_by_stem(root)
    masks = {p.stem: p for p in (root / "masks").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    out = []
    for stem in _select([s for s in by_stem if s in masks], images):
        image = _read_grey(by_stem[stem])
        labels = mask_to_instances(_read_grey(masks[stem]))
        if labels.shape != image.shape:
            raise MicrosegError(f"{stem}: mask {labels.shape} and image {image.shape} differ")
        out.append(Sample(stem, image, labels))
    if not out:
        raise MicrosegError(f"No image in {root}/images has a mask in {root}/masks.")
    return out


def read_boxes(path) -> np.ndarray:
    """Boxes ``(n, 4)`` as ``ymin xmin ymax xmax`` from a text file (one per line)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 4:
            raise MicrosegError(f"{path}: expected 4 numbers per line, got {line!r}")
        rows.append([float(p) for p in parts])
    return np.asarray(rows, dtype=float).reshape(-1, 4)


def load_fecral_boxes(root, images=None, limit=None) -> list[Sample]:
    """Box-style dataset: samples with an ``(n, 4)`` array of boxes as the target.

    Parameters
    ----------
    root : path-like
        Folder holding ``images/`` and ``boxes/`` (``NAME.txt`` per image).
    images : sequence of str, optional
        Image names (stems) to load; all by default.
    limit : int, optional
        Load only the first ``limit`` images (in name order).

    Returns
    -------
    list of Sample
    """
    root = Path(root)
    by_stem = _images_by_stem(root)
    boxes = {p.stem: p for p in (root / "boxes").glob("*.txt")}
    stems = _select([s for s in by_stem if s in boxes], images)
    if limit is not None:
        stems = stems[: int(limit)]
    out = [Sample(s, _read_grey(by_stem[s]), read_boxes(boxes[s])) for s in stems]
    if not out:
        raise MicrosegError(f"No image in {root}/images has a box file in {root}/boxes.")
    return out


def load_dataset(root, images=None, limit=None) -> tuple[str, list[Sample]]:
    """``(layout, samples)`` for a folder in either layout (see :func:`detect_layout`)."""
    layout = detect_layout(root)
    if layout == "masks":
        samples = load_creme(root, images)
        return layout, samples[:limit] if limit is not None else samples
    return layout, load_fecral_boxes(root, images, limit)


def to_unit_float(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """``image`` as float32 in [0, 1] between robust percentiles.

    Uses :mod:`napari_microseg.core.prompting.normalize` when it is available so
    the evaluation sees the same input as the interactive session.
    """
    try:
        from .normalize import normalize_image
    except ImportError:
        normalize_image = None
    if normalize_image is not None:
        return np.asarray(normalize_image(image), dtype=np.float32)
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [low, high])
    if hi <= lo:
        return np.zeros(img.shape, np.float32)
    return np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32)


def divide_objects(samples, first_count, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Per image, a seeded draw of ``first_count(n)`` objects and the rest, as two samples lists.

    Works on both layouts: instance labels (ids drawn) and ``(n, 4)`` boxes (rows drawn).
    """
    rng = np.random.default_rng(seed)
    first, second = [], []
    for s in samples:
        labels = np.asarray(s.target)
        if _is_boxes(labels):
            order = rng.permutation(len(labels))
            k = first_count(len(labels))
            first.append(Sample(s.name, s.image, labels[np.sort(order[:k])]))
            second.append(Sample(s.name, s.image, labels[np.sort(order[k:])]))
            continue
        ids = np.unique(labels)
        ids = rng.permutation(ids[ids > 0])
        k = first_count(len(ids))
        for out, part in ((first, ids[:k]), (second, ids[k:])):
            out.append(Sample(s.name, s.image, np.where(np.isin(labels, part), labels, 0)))
    return first, second


def _is_boxes(target: np.ndarray) -> bool:
    """A box-style target: ``(n, 4)`` floats (instance labels are integers)."""
    return target.ndim == 2 and target.shape[1:] == (4,) and target.dtype.kind == "f"
