"""Patch augmentation for segmentation training, as the studies behind this plugin used.

One geometric resampling per patch combines the random crop, a dihedral
transform (90° rotations and flips), a small rotation, a shear, a mild scale
change and an optional elastic deformation; the image is interpolated
linearly and the instance labels by nearest neighbour, so objects keep their
ids. Intensity changes (brightness, exposure, noise) act on the normalised
image afterwards. Every switch and strength is recorded in the run's config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass
class AugmentConfig:
    """Augmentations and their strengths.

    Parameters
    ----------
    dihedral : bool
        Random 90° rotations and flips (the eightfold dihedral set).
    rotate_deg, shear_deg : float
        Largest small rotation and shear (uniform in ``[-x, x]``; 0: off).
    scale : float
        Largest relative zoom (uniform log-scale in ``[-x, x]``; 0: off).
    brightness : float
        Largest additive offset as a fraction of the [0, 1] range.
    exposure : float
        Largest relative contrast (gain) change around the patch mean.
    elastic : float
        Probability of an elastic deformation (smooth displacement field).
    elastic_alpha, elastic_sigma : float
        Its largest displacement (px) and smoothness (px).
    noise : float
        Largest extra Gaussian noise std (in [0, 1] units), drawn per patch.
    """

    dihedral: bool = True
    rotate_deg: float = 15.0
    shear_deg: float = 5.0
    scale: float = 0.1
    brightness: float = 0.25
    exposure: float = 0.25
    elastic: float = 0.3
    elastic_alpha: float = 6.0
    elastic_sigma: float = 8.0
    noise: float = 0.03

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all (crops only)."""
        return cls(False, 0, 0, 0, 0, 0, 0, 0, 1, 0)


def _matrix(rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """2 x 2 output->input matrix of the dihedral, rotation, shear and scale draws."""
    m = np.eye(2)
    if cfg.dihedral:
        k = int(rng.integers(4))
        c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k]
        m = np.array([[c, -s], [s, c]], float)
        if rng.random() < 0.5:
            m = m @ np.diag([1.0, -1.0])
    if cfg.rotate_deg:
        a = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
        m = m @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    if cfg.shear_deg:
        m = m @ np.array(
            [[1.0, np.tan(np.deg2rad(rng.uniform(-cfg.shear_deg, cfg.shear_deg)))], [0, 1]]
        )
    if cfg.scale:
        m = m * float(np.exp(rng.uniform(-cfg.scale, cfg.scale)))
    return m


def source_extent(cfg: AugmentConfig, patch: int) -> int:
    """Side of the source window that any augmented patch of side ``patch`` reads from."""
    if not (cfg.rotate_deg or cfg.shear_deg or cfg.scale):
        return patch
    grow = np.exp(cfg.scale) * (1 + np.tan(np.deg2rad(cfg.shear_deg))) * np.sqrt(2)
    return int(np.ceil(patch * grow)) + 2


def augment_patch(
    image: np.ndarray,
    labels: np.ndarray,
    centre: tuple[float, float],
    patch: int,
    rng: np.random.Generator,
    cfg: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """An augmented ``(patch, patch)`` crop of ``image``/``labels`` centred on ``centre``.

    Parameters
    ----------
    image : ndarray (H, W) float32
        Normalised image (values about [0, 1]).
    labels : ndarray (H, W) int
        Instance (or class) labels; resampled by nearest neighbour.
    centre : (row, col)
        Source point that lands in the middle of the patch.
    patch : int
    rng : numpy Generator
    cfg : AugmentConfig

    Returns
    -------
    image, labels : ndarray
        float32 and the labels' dtype; pixels mapped from outside the source are
        filled by reflection (image) and 0 (labels).
    """
    m = _matrix(rng, cfg)
    half = (patch - 1) / 2.0
    offset = np.asarray(centre, float) - m @ np.array([half, half])
    if cfg.elastic and rng.random() < cfg.elastic:
        coords = _elastic_coords(m, offset, patch, rng, cfg)
        img = ndi.map_coordinates(image, coords, order=1, mode="reflect").astype(np.float32)
        lab = ndi.map_coordinates(labels, coords, order=0, mode="constant", cval=0)
    else:
        img = ndi.affine_transform(
            image, m, offset, output_shape=(patch, patch), order=1, mode="reflect"
        ).astype(np.float32)
        lab = ndi.affine_transform(
            labels, m, offset, output_shape=(patch, patch), order=0, mode="constant", cval=0
        )
    return _intensity(img, rng, cfg), lab.astype(labels.dtype, copy=False)


def _elastic_coords(m, offset, patch, rng, cfg: AugmentConfig) -> np.ndarray:
    """Source coordinates of the affine map plus a smooth random displacement."""
    rr, cc = np.mgrid[0:patch, 0:patch].astype(np.float32)
    src = np.einsum("ij,jhw->ihw", m.astype(np.float32), np.stack([rr, cc])) + offset[:, None, None]
    coarse = max(2, int(round(patch / cfg.elastic_sigma / 2)))
    for axis in range(2):
        field = rng.uniform(-1, 1, (coarse, coarse)).astype(np.float32)
        field = ndi.zoom(field, patch / coarse, order=3)[:patch, :patch]
        src[axis] += cfg.elastic_alpha * field
    return src


def _intensity(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    if cfg.exposure:
        mean = float(img.mean())
        img = (img - mean) * float(1 + rng.uniform(-cfg.exposure, cfg.exposure)) + mean
    if cfg.brightness:
        img = img + float(rng.uniform(-cfg.brightness, cfg.brightness))
    if cfg.noise:
        img = img + rng.normal(0, rng.uniform(0, cfg.noise), img.shape).astype(np.float32)
    return np.asarray(img, np.float32)
