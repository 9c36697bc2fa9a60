"""First click of the shipped model run differently: flip averaging and multi-window ensembles.

On TRAINING images only (Ti frames 433 and 743, 150 objects each, seed 0; creme 1-9): mean
first-click IoU of each variant. None was kept (BENCHMARKS.md "Promptable model v2").

    python scripts/promptable_v2/inference_variants.py [VARIANT ...]

VARIANT: ``flip:none``, ``flip:h``, ``flip:hv`` (logits averaged over flipped inputs, one
batch), ``windows:48,64,96:logit`` / ``...:prob`` (the click's square windows of these sides,
logits or probabilities averaged where they overlap) or ``shrink:A:S`` (a first mask under A
px is drawn again in an S px window, magnified to the network's size). Default: all of the
table's. ``shrink:A:S:B`` keeps the second mask only when it is under B px. Small objects
(under 100 px) are reported apart.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_microseg.core.promptable.backend import PromptableBackend, _threads, postprocess
from napari_microseg.core.promptable.crops import encode, place, square_window, window_logits
from napari_microseg.core.prompting.base import Prediction
from napari_microseg.core.prompting.eval_data import load_dataset
from napari_microseg.core.prompting.evaluation import evaluate_clicks

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SETS = {
    "ti_433_743": (DATA / "ti-insitu-tem-defects", ["Chip-4-Heat-1-Frame-433", "Chip-4-Heat-1-Frame-743"], 150),
    "creme_1_9": (DATA / "creme-316L-loops", [str(i) for i in range(1, 10)], None),
}
SMALL = 100  # px: the "small objects"
FLIPS = {"none": ((),), "h": ((), (-1,)), "hv": ((), (-1,), (-2,), (-2, -1))}
DEFAULT = ["flip:none", "flip:h", "flip:hv", "windows:48,64,96:logit", "windows:48,64,96:prob",
           "windows:64,96:logit", "windows:48,64:logit", "windows:64,96,128:logit"]


class Variant(PromptableBackend):
    """The shipped backend with a different first click (other prompts unchanged)."""

    flips: tuple = ((),)
    sides: tuple = ()
    average: str = "logit"
    shrink: tuple = ()

    def _run(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x[None])
        with torch.inference_mode():
            out = self.model(torch.cat([t.flip(d) if d else t for d in self.flips]))
            back = [out[i: i + 1].flip(d) if d else out[i: i + 1] for i, d in enumerate(self.flips)]
        return np.asarray(torch.cat(back).mean(0)[0].float().numpy(), np.float32)

    def predict(self, prompts):
        first = (prompts.mask_logits is None and prompts.box is None and prompts.start_mask is None
                 and len(prompts.points) == 1 and bool((prompts.labels == 1).all()))
        if first and self.shrink:
            pred = super().predict(prompts)
            area, side, *new_max = self.shrink
            if 0 < pred.mask.sum() < area:
                keep = self.crop
                self.crop = dataclasses.replace(keep, min_side=side)
                try:
                    again = super().predict(prompts)
                finally:
                    self.crop = keep
                if not new_max or 0 < again.mask.sum() < new_max[0]:
                    pred = again
            return pred
        if not first or not self.sides:
            return super().predict(prompts)
        shape, centre, big = self._image.shape, prompts.points[0], max(self.sides)
        outer = square_window(centre, big, shape)
        total, count = np.zeros((big, big), np.float32), np.zeros((big, big), np.float32)
        with _threads(self.threads):
            for side in self.sides:
                win = square_window(centre, side, shape)
                x = encode(self._image, win, self.crop, prompts.points, prompts.labels)
                v = window_logits(self._run(x), win)
                if self.average == "prob":
                    v = 1.0 / (1.0 + np.exp(-v))
                r, c = win.r0 - outer.r0, win.c0 - outer.c0
                total[r: r + side, c: c + side] += v
                count[r: r + side, c: c + side] += 1
        thr = self.first_threshold
        if self.average == "prob":
            thr = 1.0 / (1.0 + np.exp(-thr))
        mask = postprocess((total / np.maximum(count, 1) > thr) & (count > 0), outer, prompts)
        return Prediction(place(mask, outer, shape), 1.0, None)


def build(spec: str) -> Variant:
    be = Variant.load_default()
    kind, *rest = spec.split(":")
    if kind == "flip":
        be.flips = FLIPS[rest[0]]
    elif kind == "shrink":
        be.shrink = tuple(int(v) for v in rest)
    else:
        be.sides = tuple(int(v) for v in rest[0].split(","))
        be.average = rest[1] if len(rest) > 1 else "logit"
    return be


def main(specs) -> None:
    samples = {k: load_dataset(root, images=names)[1] for k, (root, names, _) in SETS.items()}
    for spec in specs or DEFAULT:
        be, row, t0 = build(spec), {"variant": spec}, time.perf_counter()
        for k, (_, _, cap) in SETS.items():
            r = evaluate_clicks(be, samples[k], n_corrective=0, max_objects=cap, seed=0)
            row[k] = round(float(r["mean_iou"][0]), 4)
            small = [o["ious"][0] for o in r["objects"] if o["area"] < SMALL]
            row[f"{k}_small"] = round(float(np.mean(small)), 4) if small else None
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
