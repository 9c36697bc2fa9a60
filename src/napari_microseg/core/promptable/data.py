"""Training examples for the promptable network: patches, augmentation, simulated prompts.

An example is one object of one labelled image: a patch around it, augmented
(scale jitter, dihedral flips/rotations, gamma/contrast/offset, blur, noise,
occasional inversion), and the prompts a simulated user would give. Prompts
follow the evaluation protocol (:mod:`..prompting.evaluation`): the first is a
click at the object's interior point farthest from its border (sometimes
jittered) or its bounding box; corrective clicks come from
:func:`~..prompting.evaluation.next_click` on the model's own predictions
(see :mod:`.training`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.nn import functional as F

from ..prompting.eval_data import to_unit_float
from ..prompting.evaluation import interior_point, mask_bbox


@dataclass
class Augment:
    """Augmentation strengths (probabilities and ranges).

    Parameters
    ----------
    scale : (float, float)
        Range of the scale factor (log-uniform).
    gamma : float
        ``log(gamma)`` is drawn from ``[-gamma, gamma]``.
    contrast : (float, float)
        Multiplier of the deviation from the mean.
    noise : float
        Largest extra Gaussian noise std (in [0, 1] units), applied with probability 0.5.
    blur : float
        Largest Gaussian blur sigma (px), applied with probability 0.3.
    invert : float
        Probability of inverting the contrast (bright objects on dark).
    jitter_click : float
        Probability that the first click is a random interior pixel rather than the
        interior point farthest from the border.
    jitter_box : float
        Probability that the box is perturbed by up to 10 % of its size.
    """

    scale: tuple[float, float] = (0.6, 1.6)
    gamma: float = 0.5
    contrast: tuple[float, float] = (0.6, 1.5)
    noise: float = 0.08
    blur: float = 1.5
    invert: float = 0.1
    jitter_click: float = 0.3
    jitter_box: float = 0.5


@dataclass
class ObjectBank:
    """Labelled images and the objects to draw examples from.

    Parameters
    ----------
    samples : list of (image, labels)
        Images (any dtype; normalised with
        :func:`~..prompting.eval_data.to_unit_float`) and instance labels.
    weights : list of float, optional
        Relative probability of drawing from each image (default: by object count).
    min_area : int
        Objects smaller than this many pixels are skipped.
    invert : list of bool, optional
        Per image: may be contrast-inverted by augmentation (default all True).
    """

    samples: list
    weights: list | None = None
    min_area: int = 6
    invert: list | None = None
    images: list = field(init=False, default_factory=list)
    objects: list = field(init=False, default_factory=list)
    p: np.ndarray = field(init=False, default=None)

    def __post_init__(self):
        probs = []
        for i, (image, labels) in enumerate(self.samples):
            labels = np.asarray(labels)
            img = np.asarray(image)
            if img.shape != labels.shape:
                raise ValueError(f"sample {i}: image {img.shape} and labels {labels.shape} differ")
            self.images.append((to_unit_float(img), labels))
            found = ndi.find_objects(labels)
            areas = np.bincount(labels.ravel(), minlength=len(found) + 1)
            objs = [(k + 1, sl) for k, sl in enumerate(found)
                    if sl is not None and areas[k + 1] >= self.min_area]
            self.objects.append(objs)
            w = len(objs) if self.weights is None else float(self.weights[i]) * bool(objs)
            probs.append(w)
        p = np.asarray(probs, float)
        if p.sum() <= 0:
            raise ValueError("no object to train on (all images empty or objects too small)")
        self.p = p / p.sum()
        if self.invert is None:
            self.invert = [True] * len(self.samples)

    def draw(self, rng: np.random.Generator):
        """``(image index, label id, slices)`` of a random object."""
        i = int(rng.choice(len(self.p), p=self.p))
        k, sl = self.objects[i][int(rng.integers(len(self.objects[i])))]
        return i, k, sl


def _resize_to(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(arr, np.float32))[None, None]
    anti = shape[0] < arr.shape[0]
    out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=anti)
    return out[0, 0].numpy()


def make_patch(bank: ObjectBank, rng: np.random.Generator, aug: Augment):
    """An augmented patch around a random object: ``(image float32, object mask bool)``.

    The patch is the part of the image around the object that a grown window
    could look at (clipped to the image, so real image borders stay borders),
    rescaled by the scale jitter and then flipped, rotated and recoloured.
    """
    i, k, sl = bank.draw(rng)
    image, labels = bank.images[i]
    h, w = labels.shape
    s = math.exp(rng.uniform(math.log(aug.scale[0]), math.log(aug.scale[1])))
    ext = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
    half = max(100.0, 1.6 * ext * s + 48) / s  # native half-size of the patch
    cr = (sl[0].start + sl[0].stop - 1) / 2 + rng.uniform(-0.25, 0.25) * ext
    cc = (sl[1].start + sl[1].stop - 1) / 2 + rng.uniform(-0.25, 0.25) * ext
    r0, r1 = max(int(cr - half), 0), min(int(cr + half) + 1, h)
    c0, c1 = max(int(cc - half), 0), min(int(cc + half) + 1, w)
    img = image[r0:r1, c0:c1]
    gt = (labels[r0:r1, c0:c1] == k).astype(np.float32)
    out_shape = (max(int(round(img.shape[0] * s)), 8), max(int(round(img.shape[1] * s)), 8))
    if abs(s - 1) > 0.02:
        img = _resize_to(img, out_shape)
        gt = _resize_to(gt, out_shape)
    gt = gt > 0.5
    if not gt.any():  # a sliver lost in the shrink: keep the native patch
        img, gt = image[r0:r1, c0:c1], labels[r0:r1, c0:c1] == k
    t = int(rng.integers(8))
    img, gt = _dihedral(img, t), _dihedral(gt, t)
    return _recolour(np.asarray(img, np.float32), rng, aug, bank.invert[i]), gt


def _dihedral(a: np.ndarray, t: int) -> np.ndarray:
    a = np.rot90(a, t % 4)
    return np.ascontiguousarray(a[:, ::-1] if t >= 4 else a)


def _recolour(img: np.ndarray, rng, aug: Augment, may_invert: bool) -> np.ndarray:
    img = np.clip(img, 0, 1) ** math.exp(rng.uniform(-aug.gamma, aug.gamma))
    mean = float(img.mean())
    img = (img - mean) * rng.uniform(*aug.contrast) + mean + rng.uniform(-0.1, 0.1)
    if aug.blur and rng.random() < 0.3:
        img = ndi.gaussian_filter(img, rng.uniform(0.3, aug.blur))
    if aug.noise and rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(0, aug.noise), img.shape)
    if may_invert and rng.random() < aug.invert:
        img = 1 - img
    return np.clip(img, 0, 1).astype(np.float32)


def first_prompt(gt: np.ndarray, rng: np.random.Generator, aug: Augment, p_box: float):
    """``(points, labels, box)``: the simulated user's first prompt for ``gt``."""
    if rng.random() < p_box:
        box = np.asarray(mask_bbox(gt), float)
        if rng.random() < aug.jitter_box:
            size = np.r_[box[2] - box[0], box[3] - box[1]] + 1
            box = box + rng.uniform(-0.1, 0.1, 4) * np.r_[size, size]
            box = np.clip(box, 0, [gt.shape[0] - 1, gt.shape[1] - 1] * 2)
            box[2:] = np.maximum(box[2:], box[:2])
        return np.zeros((0, 2)), np.zeros(0, int), box
    if rng.random() < aug.jitter_click:
        dist = ndi.distance_transform_edt(np.pad(gt, 1))[1:-1, 1:-1]
        cand = np.argwhere(dist >= 0.5 * dist.max())
        rc = cand[int(rng.integers(len(cand)))]
    else:
        rc = interior_point(gt)
    return np.asarray([rc], float), np.ones(1, int), None


#: Synthetic kinds and their share of the synthetic training images.
SYNTH_MIX = {
    "tem-loops": 0.30, "tem-dots": 0.08, "tem-voids": 0.08, "tem-precipitates": 0.08,
    "tem-mixed": 0.14, "stem-loops": 0.20, "stem-haadf-loops": 0.06, "sem-pits": 0.06,
}


def synthetic_samples(n: int, seed: int = 0, size: int = 320, mix: dict | None = None):
    """``n`` synthetic micrographs as ``(image, labels, kind)`` for training.

    Kinds are drawn from ``mix`` (default :data:`SYNTH_MIX`), the pixel size is
    the kind's default times a log-uniform factor in [0.5, 1.6] (object sizes
    vary about threefold), and every image uses the generator's default noise
    and nuisances. Seeds are ``seed * 100003 + i``, so the set is reproducible.
    """
    from ..synth import generate
    from ..synth.recipes import KIND_SPECS

    mix = mix or SYNTH_MIX
    kinds, p = list(mix), np.asarray(list(mix.values()), float)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(int(n)):
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        ps = KIND_SPECS[kind].pixel_size_nm * math.exp(rng.uniform(math.log(0.5), math.log(1.6)))
        s = generate(kind, (size, size), ps, seed=seed * 100003 + i)
        out.append((s.image, s.labels, kind))
    return out
