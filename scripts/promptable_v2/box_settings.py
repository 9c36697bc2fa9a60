"""Box prompts of the shipped model run with other window and threshold settings, on TRAINING images.

Mean mask IoU of the box-prompted first prediction on Ti frames 433 and 743 (150 objects each,
seed 0) and creme 1-9, for box windows of ``box_context`` x extent + ``box_pad`` px and for
first-prediction logit thresholds. Nothing was changed: the shipped settings are within 0.003
of the best (BENCHMARKS.md "Promptable model v2").

    python scripts/promptable_v2/box_settings.py
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from tune_first_click import SETS  # the same training images as the first-click settings

from napari_microseg.core.promptable.backend import PromptableBackend
from napari_microseg.core.prompting.eval_data import load_dataset
from napari_microseg.core.prompting.evaluation import evaluate_clicks


def score(be, samples) -> dict:
    row = {k: round(float(evaluate_clicks(be, samples[k], "box", 0, max_objects=SETS[k][2],
                                          seed=0)["mean_iou"][0]), 4) for k in SETS}
    row["mean"] = round(float(np.mean(list(row.values()))), 4)
    return row


def main() -> None:
    samples = {k: load_dataset(root, images=names)[1] for k, (root, names, _) in SETS.items()}
    be = PromptableBackend.load_default()
    base, first = be.crop, be.first_threshold
    for ctx in (1.25, 1.5, 2.0):
        for pad in (4.0, 8.0, 16.0):
            be.crop = dataclasses.replace(base, box_context=ctx, box_pad=pad)
            print(json.dumps({"box_context": ctx, "box_pad": pad, **score(be, samples)}), flush=True)
    be.crop = base
    for thr in (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0):
        be.first_threshold = thr
        print(json.dumps({"first_threshold": thr, **score(be, samples)}), flush=True)
    be.first_threshold = first


if __name__ == "__main__":
    main()
