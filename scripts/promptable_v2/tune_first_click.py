"""Choose the v2 model's first-click threshold and first window on its TRAINING images only.

Grid: first-click logit threshold x smallest click window (``CropConfig.min_side``);
score: mean first-click IoU, averaged over Ti frames 433 and 743 (150 objects each, seed 0)
and creme 1-9 (all objects). The validation images (Ti 896, 974; creme 10-12) are not read.

    python scripts/promptable_v2/tune_first_click.py WEIGHTS.pt [OUT.json]
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from napari_microseg.core.promptable.backend import PromptableBackend
from napari_microseg.core.prompting.eval_data import load_dataset
from napari_microseg.core.prompting.evaluation import evaluate_clicks

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SETS = {
    "ti_433_743": (DATA / "ti-insitu-tem-defects", ["Chip-4-Heat-1-Frame-433", "Chip-4-Heat-1-Frame-743"], 150),
    "creme_1_9": (DATA / "creme-316L-loops", [str(i) for i in range(1, 10)], None),
}
THRESHOLDS = (-1.5, -1.0, -0.5, 0.0)
MIN_SIDES = (48, 64)


def main(weights: str, out: str | None = None) -> dict:
    samples = {k: load_dataset(root, images=names)[1] for k, (root, names, _) in SETS.items()}
    grid = []
    for min_side in MIN_SIDES:
        for t in THRESHOLDS:
            be = PromptableBackend.from_checkpoint(weights, first_threshold=t)
            be.crop = dataclasses.replace(be.crop, min_side=min_side)
            row = {"min_side": min_side, "first_threshold": t}
            for k, (_, _, cap) in SETS.items():
                r = evaluate_clicks(be, samples[k], n_corrective=0, max_objects=cap, seed=0)
                row[k] = round(float(r["mean_iou"][0]), 4)
            row["mean"] = round(float(np.mean([row[k] for k in SETS])), 4)
            grid.append(row)
            print(json.dumps(row), flush=True)
    best = max(grid, key=lambda r: r["mean"])
    result = {"chosen_on": {k: v[1] for k, v in SETS.items()}, "grid": grid, "best": best}
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
    print("best", json.dumps(best))
    return result


if __name__ == "__main__":
    main(*sys.argv[1:3])
