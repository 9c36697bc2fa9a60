"""Unsupervised domain adaptation in output space (AdaptSegNet, Tsai et al. 2018).

Labelled source patches train the segmentation loss as usual; unlabelled
patches of target-domain micrographs (another etching, detector or
microscope) pass through the same network, and a small fully convolutional
discriminator learns to tell source from target class-probability maps. The
segmentation network gets an extra adversarial loss for making its target
outputs look like source outputs, so its predictions keep their
source-domain structure on the new images. The discriminator trains with its
own Adam optimiser on detached outputs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .augment import AugmentConfig, augment_patch
from .config import TrainingDataError

SOURCE, TARGET = 0.0, 1.0


def discriminator(in_channels: int, width: int = 32) -> nn.Module:
    """AdaptSegNet's discriminator: four 4x4 stride-2 convolutions with leaky ReLU, then one map."""
    layers, c = [], in_channels
    for w in (width, width * 2, width * 4, width * 8):
        layers += [nn.Conv2d(c, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c = w
    layers.append(nn.Conv2d(c, 1, 4, 2, 1))
    return nn.Sequential(*layers)


def read_targets(paths) -> list[np.ndarray]:
    """Target-domain images (grey, normalised as for training); clear error when unusable."""
    from ..errors import MicrosegError
    from ..reading import read_micrograph
    from .data import normalised

    out = []
    for p in paths:
        try:
            img = np.asarray(read_micrograph(p, as_grey=True).data)
        except (MicrosegError, OSError) as e:
            raise TrainingDataError(f"Domain-adaptation target {p}: {e}") from None
        out.append(normalised(img))
    if not out:
        raise TrainingDataError("Domain adaptation needs at least one target image.")
    return out


class OutputAdapter:
    """Adversarial output-space alignment attached to a training run.

    Parameters
    ----------
    cfg : TrainConfig
        Uses ``adapt_target`` (image paths), ``adapt_weight``, ``patch_size``,
        ``batch_size``.
    out_channels : int
        Channels of the segmentation output.
    device : torch.device
    targets : list of ndarray, optional
        Already-read target images (instead of reading ``cfg.adapt_target``).
    """

    def __init__(self, cfg, out_channels: int, device, targets=None):
        self.cfg = cfg
        self.device = device
        self.targets = targets if targets is not None else read_targets(cfg.adapt_target)
        small = [t.shape for t in self.targets if min(t.shape) < cfg.patch_size]
        if small:
            raise TrainingDataError(
                f"Target image(s) of shape {small[0]} are below the patch size."
            )
        self.disc = discriminator(out_channels).to(device)
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=1e-4, betas=(0.9, 0.99))
        self.augment = AugmentConfig(rotate_deg=0, shear_deg=0, scale=0, elastic=0)
        self._source = self._target = None
        self.last_losses: dict = {}

    def _target_batch(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        p = self.cfg.patch_size
        out = []
        for _ in range(n):
            t = self.targets[int(rng.integers(len(self.targets)))]
            centre = (
                rng.uniform(p / 2, t.shape[0] - p / 2),
                rng.uniform(p / 2, t.shape[1] - p / 2),
            )
            img, _ = augment_patch(t, np.zeros(t.shape, np.uint8), centre, p, rng, self.augment)
            out.append(img)
        return torch.from_numpy(np.stack(out)[:, None]).to(self.device)

    def generator_loss(self, model, source_logits: torch.Tensor, rng) -> torch.Tensor:
        """Adversarial loss of the segmentation network on a fresh target batch."""
        target_logits = model(self._target_batch(rng, source_logits.shape[0]))
        self._source = source_logits.detach().float().softmax(1)
        t_prob = target_logits.float().softmax(1)
        self._target = t_prob.detach()
        for p in self.disc.parameters():
            p.requires_grad_(False)
        d = self.disc(t_prob)
        loss = F.binary_cross_entropy_with_logits(d, torch.full_like(d, SOURCE))
        for p in self.disc.parameters():
            p.requires_grad_(True)
        self.last_losses["adversarial"] = float(loss.detach())
        return self.cfg.adapt_weight * loss

    def discriminator_step(self) -> None:
        """Train the discriminator on the last source and target outputs."""
        if self._source is None:
            return
        self.opt.zero_grad(set_to_none=True)
        d_s, d_t = self.disc(self._source), self.disc(self._target)
        loss = 0.5 * (
            F.binary_cross_entropy_with_logits(d_s, torch.full_like(d_s, SOURCE))
            + F.binary_cross_entropy_with_logits(d_t, torch.full_like(d_t, TARGET))
        )
        loss.backward()
        self.opt.step()
        self.last_losses["discriminator"] = float(loss.detach())
        self._source = self._target = None

    def state_dict(self) -> dict:
        return {"disc": self.disc.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.disc.load_state_dict(state["disc"])
        self.opt.load_state_dict(state["opt"])
