"""Write the synthetic tuning set of find similar's score: 5 kinds x seeds 20, 21 at 384².

    python scripts/fewshot/make_synthetic_set.py OUT_FOLDER

``OUT_FOLDER/images/<kind>-<seed>.png`` and ``OUT_FOLDER/masks/<kind>-<seed>.png`` (uint16
instances), a dataset folder that ``dump_pool.py`` and ``microseg fewshot-eval`` read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from napari_microseg.core.synth.generator import generate

KINDS = ("sem-pits", "tem-loops", "tem-dots", "tem-voids", "stem-haadf-loops")
SEEDS = (20, 21)


def main(out: str) -> None:
    root = Path(out)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        for seed in SEEDS:
            s = generate(kind, shape=(384, 384), seed=seed)
            Image.fromarray(s.image).save(root / "images" / f"{kind}-{seed}.png")
            Image.fromarray(s.labels.astype(np.uint16)).save(root / "masks" / f"{kind}-{seed}.png")


if __name__ == "__main__":
    main(sys.argv[1])
