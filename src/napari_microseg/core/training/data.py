"""Training data: labelled images from layers or folders, checks, and the patch sampler.

A :class:`TrainImage` is one micrograph with its instance labels and the class
of each instance, whatever it came from (napari layers, an image/mask folder, a
COCO file, box files). :func:`check_training_data` says what is wrong before a
run starts; :class:`PatchSampler` draws augmented training patches, centred on
a random object with probability ``oversample`` (so sparse defects are seen
often) and uniformly otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.draw import ellipse

from ..prompting.normalize import apply_normalization, normalization_range
from .augment import AugmentConfig, augment_patch
from .config import TrainingDataError

#: Percentiles mapped to 0 and 1, the same default as model cards use at inference.
DEFAULT_PERCENTILES = (0.5, 99.5)


@dataclass
class TrainImage:
    """One labelled micrograph.

    Parameters
    ----------
    name : str
    image : ndarray (H, W)
        Any dtype (8-, 16-bit, float).
    labels : ndarray (H, W) int
        Instance ids, 0 background.
    instance_classes : dict
        ``{instance_id: class_id}``; instances not listed are class 1.
    pixel_size_nm : float, optional
    class_names : dict
        ``{class_id: (name, colour)}`` from the labels' own class table (a
        ``.labels.json`` sidecar, COCO categories); the model card takes its
        class names from here when the run does not list classes.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    instance_classes: dict = field(default_factory=dict)
    pixel_size_nm: float | None = None
    class_names: dict = field(default_factory=dict)

    def semantic(self) -> np.ndarray:
        """Class-id map (uint8/uint16) of the instances."""
        lab = np.asarray(self.labels)
        top = int(lab.max()) if lab.size else 0
        lut = np.zeros(top + 1, np.uint16)
        lut[1:] = 1
        for i, c in self.instance_classes.items():
            if 0 < int(i) <= top:
                lut[int(i)] = int(c)
        return lut[lab]

    def class_ids(self) -> set[int]:
        present = np.unique(self.labels)
        return {int(self.instance_classes.get(int(i), 1)) for i in present if i}


def class_names_of(table) -> dict:
    """``{class_id: (name, colour)}`` of a :class:`~..classes.ClassTable`."""
    return {int(c.id): (c.name, c.color) for c in table}


def normalised(image: np.ndarray, percentiles=DEFAULT_PERCENTILES) -> np.ndarray:
    """``image`` mapped to about [0, 1] as inference does (robust percentiles), float32."""
    lo, hi = normalization_range(np.asarray(image), percentiles=tuple(percentiles))
    return apply_normalization(np.asarray(image), lo, hi).astype(np.float32, copy=False)


# -- checks ---------------------------------------------------------------------------------


def check_training_data(images, patch_size: int, class_ids=None, *, what: str = "training") -> None:
    """Raise :class:`TrainingDataError` for data no run can learn from.

    Checks: at least one image; 2-D grey images; labels of the same shape;
    images at least ``patch_size`` on each side; labels that are not empty;
    classes in ``class_ids`` when given.
    """
    if not images:
        raise TrainingDataError(f"No {what} images were given.")
    n_objects = 0
    for im in images:
        img = np.asarray(im.image)
        if img.ndim != 2:
            raise TrainingDataError(
                f"{im.name}: image of shape {img.shape} is not a grey 2-D micrograph; open it as grey."
            )
        if np.shape(im.labels) != img.shape:
            raise TrainingDataError(
                f"{im.name}: labels {np.shape(im.labels)} and image {img.shape} differ in shape."
            )
        if min(img.shape) < patch_size:
            raise TrainingDataError(
                f"{im.name}: the image ({img.shape[0]} x {img.shape[1]} px) is smaller than the "
                f"patch size {patch_size}; choose a patch size of at most {min(img.shape)}."
            )
        n_objects += len(np.unique(im.labels)) - (1 if (np.asarray(im.labels) == 0).any() else 0)
        if class_ids is not None:
            unknown = im.class_ids() - set(class_ids)
            if unknown:
                raise TrainingDataError(
                    f"{im.name}: class id(s) {sorted(unknown)} are not in the model's classes "
                    f"{sorted(class_ids)}."
                )
        if (np.asarray(im.labels) > 0).all():
            raise TrainingDataError(f"{im.name}: every pixel is labelled; there is no background.")
    if n_objects == 0:
        raise TrainingDataError(
            f"The {what} labels are empty: label some objects first (no instance in "
            f"{len(images)} image(s))."
        )


def split_validation(images, val_fraction: float, kfold: int = 0, fold: int = 0, seed: int = 0):
    """``(train, val)``: a k-fold fold, or a held-out share (at least one image each)."""
    images = list(images)
    order = np.random.default_rng(seed).permutation(len(images))
    if kfold and kfold > 1:
        if len(images) < kfold:
            raise TrainingDataError(f"{kfold}-fold validation needs at least {kfold} images.")
        val_idx = set(order[fold::kfold].tolist())
    elif val_fraction > 0 and len(images) > 1:
        val_idx = set(order[: max(1, int(round(val_fraction * len(images))))].tolist())
    else:
        val_idx = set()
    train = [im for i, im in enumerate(images) if i not in val_idx]
    val = [im for i, im in enumerate(images) if i in val_idx]
    return train, val


# -- sampling -----------------------------------------------------------------------------


class PatchSampler:
    """Random augmented patches of a set of images.

    Parameters
    ----------
    images : list of TrainImage
    patch : int
    augment : AugmentConfig
    oversample : float
        Probability that a patch is centred on a random object pixel.
    target : str
        ``"semantic"``: the second output is the class map; ``"instance"``: the
        instance ids (with ``instance_classes`` looked up by the caller).
    """

    def __init__(
        self,
        images,
        patch: int,
        augment: AugmentConfig,
        oversample: float = 0.5,
        target: str = "semantic",
    ):
        self.images = list(images)
        self.patch = int(patch)
        self.augment = augment
        self.oversample = float(oversample)
        self._norm = [normalised(im.image) for im in self.images]
        self._target = [
            im.semantic() if target == "semantic" else np.asarray(im.labels, np.int32)
            for im in self.images
        ]
        self._objects = [np.flatnonzero(np.asarray(im.labels).ravel() > 0) for im in self.images]
        areas = np.array([im.image.size for im in self.images], float)
        self._weights = areas / areas.sum()

    def sample(self, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
        """``(image index, image patch float32, target patch)``."""
        k = int(rng.choice(len(self.images), p=self._weights))
        h, w = self._norm[k].shape
        if self._objects[k].size and rng.random() < self.oversample:
            flat = int(self._objects[k][rng.integers(self._objects[k].size)])
            centre = (flat // w, flat % w)
        else:
            r = self.patch / 2
            centre = (rng.uniform(r, max(r, h - r)), rng.uniform(r, max(r, w - r)))
        img, tgt = augment_patch(
            self._norm[k], self._target[k], centre, self.patch, rng, self.augment
        )
        return k, img, tgt

    def batch(self, rng: np.random.Generator, n: int) -> tuple[list[int], np.ndarray, np.ndarray]:
        """``n`` samples stacked: indices, images ``(n, 1, P, P)``, targets ``(n, P, P)``."""
        ks, imgs, tgts = [], [], []
        for _ in range(n):
            k, img, tgt = self.sample(rng)
            ks.append(k)
            imgs.append(img)
            tgts.append(tgt)
        return ks, np.stack(imgs)[:, None], np.stack(tgts)


# -- folders --------------------------------------------------------------------------------


def boxes_to_labels(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Instance labels of the ellipses inscribed in ``(n, 4)`` boxes ``ymin xmin ymax xmax``.

    Box-only datasets (e.g. loop detections) train segmentation models through
    these ellipses; the run's provenance records that the masks were derived.
    """
    lab = np.zeros(shape, np.int32)
    for i, (y0, x0, y1, x1) in enumerate(np.asarray(boxes, float), start=1):
        rr, cc = ellipse(
            (y0 + y1) / 2,
            (x0 + x1) / 2,
            max((y1 - y0) / 2, 0.5),
            max((x1 - x0) / 2, 0.5),
            shape=shape,
        )
        lab[rr, cc] = i
    return lab


def load_folder(root, names=None) -> tuple[list[TrainImage], dict]:
    """Labelled images from a dataset folder and a description of where they came from.

    Layouts: ``images/`` with ``masks/`` (binary or instance masks, same stems),
    with ``boxes/`` (``ymin xmin ymax xmax`` per line; ellipses inscribed in the
    boxes become the masks), or with a COCO ``*.json`` beside ``images/``.

    Parameters
    ----------
    root : path-like
    names : sequence of str or int, optional
        Image stems to use (e.g. ``[1, 2, 3]``).
    """
    from ..errors import MicrosegError
    from ..prompting import eval_data

    root = Path(root)
    try:
        cocos = sorted(p for p in root.glob("*.json"))
        if (root / "masks").is_dir():
            samples = eval_data.load_creme(root, names)
            source = {"layout": "masks", "root": str(root)}
            out = [TrainImage(s.name, s.image, s.target) for s in samples]
        elif (root / "boxes").is_dir():
            samples = eval_data.load_fecral_boxes(root, names)
            source = {"layout": "boxes (inscribed ellipses)", "root": str(root)}
            out = [
                TrainImage(s.name, s.image, boxes_to_labels(s.target, s.image.shape))
                for s in samples
            ]
        elif cocos and (root / "images").is_dir():
            out, source = _load_coco(root, cocos[0], names)
        else:
            raise TrainingDataError(
                f"{root}: expected images/ with masks/, boxes/ or a COCO .json beside it."
            )
    except TrainingDataError:
        raise
    except MicrosegError as e:
        raise TrainingDataError(str(e)) from None
    source["images"] = [im.name for im in out]
    return out, source


def _load_coco(root: Path, path: Path, names) -> tuple[list[TrainImage], dict]:
    from ..coco import coco_to_labels, read_coco
    from ..prompting.eval_data import _images_by_stem, _read_grey, _select

    coco = read_coco(path)
    by_stem = _images_by_stem(root)
    files = {Path(str(e["file_name"])).stem: e["file_name"] for e in coco["images"]}
    out = []
    for stem in _select([s for s in by_stem if s in files], names):
        labels, inst, table = coco_to_labels(coco, files[stem])
        out.append(TrainImage(stem, _read_grey(by_stem[stem]), labels, inst,
                              class_names=class_names_of(table)))
    return out, {"layout": f"COCO {path.name}", "root": str(root)}
