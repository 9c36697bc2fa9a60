"""Ready-made synthetic samples for napari's sample-data menu.

No napari import: each function returns a :class:`SyntheticSample`, and
:func:`layer_data` turns one into napari ``LayerData`` tuples.
"""

from __future__ import annotations

from .generator import SyntheticSample, generate


def tem_loops(seed: int = 0) -> SyntheticSample:
    """512 x 512 bright-field TEM of loops and black dots at 0.39 nm/px (316L-like)."""
    return generate("tem-loops", shape=(512, 512), pixel_size_nm=0.39, seed=seed)


def stem_loops(seed: int = 0) -> SyntheticSample:
    """1024 x 1024 BF-STEM of FeCrAl-like <111> loops at 1 nm/px."""
    return generate("stem-loops", shape=(1024, 1024), pixel_size_nm=1.0, seed=seed)


def sem_pits(seed: int = 0) -> SyntheticSample:
    """1024 x 1024 SEM of corrosion pits on a grainy surface at 20 nm/px."""
    return generate("sem-pits", shape=(1024, 1024), pixel_size_nm=20.0, seed=seed)


def tem_mixed(seed: int = 0) -> SyntheticSample:
    """512 x 512 bright-field TEM of loops, dots, voids and precipitates at 0.5 nm/px."""
    return generate("tem-mixed", shape=(512, 512), pixel_size_nm=0.5, seed=seed)


#: ``name -> (display name, callable returning a SyntheticSample)``.
SAMPLES = {
    "tem_loops": ("Synthetic BF-TEM loops (0.39 nm/px)", tem_loops),
    "stem_loops": ("Synthetic STEM <111> loops, FeCrAl-like (1 nm/px)", stem_loops),
    "sem_pits": ("Synthetic SEM corrosion pits (20 nm/px)", sem_pits),
    "tem_mixed": ("Synthetic BF-TEM loops, dots, voids, precipitates (0.5 nm/px)", tem_mixed),
}


def layer_data(sample: SyntheticSample, name: str | None = None) -> list[tuple]:
    """napari ``LayerData`` tuples: the image, then the ground-truth labels.

    Both layers carry ``scale`` = pixel size in nm and ``units`` nm; the labels'
    metadata holds the classes, the instance classes and the truth records.
    """
    name = name or f"synthetic {sample.kind}"
    scale = sample.pixel_size.scale
    common = {"pixel_size": sample.pixel_size.to_dict(), "kind": sample.kind, "seed": sample.seed}
    image_meta = {"name": name, "scale": scale, "units": ("nm", "nm"), "metadata": dict(common)}
    labels_meta = {
        "name": f"{name} truth",
        "scale": scale,
        "units": ("nm", "nm"),
        "metadata": dict(
            common,
            classes=sample.classes.to_list(),
            instance_classes=dict(sample.instance_classes),
            truth=sample.truth,
        ),
    }
    return [(sample.image, image_meta, "image"), (sample.labels, labels_meta, "labels")]
