"""npe2 sample data: synthetic micrographs with their exact ground-truth labels."""

from __future__ import annotations

from ..core.synth.samples import SAMPLES
from .layer_data import sample_to_layers


def sample_layers(key: str) -> list[tuple]:
    """Image and ground-truth Labels layer data for the sample called ``key``.

    The synthetic truth is the answer, not the user's labels: it is named
    ``"<image> ground truth"``, marked ``metadata["ground_truth"]`` (no dock picks it
    as a default target; the Evaluate dock picks it as the truth) and hidden.
    """
    _, make = SAMPLES[key]
    image, labels = sample_to_layers(make(), key)
    labels[1]["name"] = f"{image[1]['name']} ground truth"
    labels[1]["opacity"] = 0.4  # the defects stay visible under the truth when it is shown
    labels[1]["visible"] = False
    labels[1]["metadata"] = {**labels[1].get("metadata", {}), "ground_truth": True}
    return [image, labels]


def tem_loops() -> list[tuple]:
    """Synthetic bright-field TEM: loops and black dots, 0.39 nm/px."""
    return sample_layers("tem_loops")


def stem_loops() -> list[tuple]:
    """Synthetic STEM of a0/2<111> loops in FeCrAl."""
    return sample_layers("stem_loops")


def sem_pits() -> list[tuple]:
    """Synthetic SEM of a corroded surface with pits."""
    return sample_layers("sem_pits")
