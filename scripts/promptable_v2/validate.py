"""Score a promptable weights file (and Otsu-flood) on the v2 VALIDATION images only.

Sets (none trained on or used to choose anything): Ti frames 896 and 974 (150 objects per
frame, seed 0), creme 10-12 (all 34 loops), the 198 FeCrAl box images (box and centre click).
Writes one JSON with, per set and backend, the mean IoU after each click, NoC@85 and the
first-click IoU of small objects (under 100 px), and the first click on every object of the
mask sets (more small objects than the 150 drawn per Ti frame).

    python scripts/promptable_v2/validate.py WEIGHTS.pt OUT.json [--first-threshold T] [--min-side S]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from napari_microseg.core.promptable.backend import PromptableBackend
from napari_microseg.core.prompting.eval_data import load_dataset
from napari_microseg.core.prompting.evaluation import evaluate_boxes, evaluate_clicks
from napari_microseg.core.prompting.registry import make_backend

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MASK_SETS = {
    "ti_896_974": (DATA / "ti-insitu-tem-defects", ["Chip-4-Heat-1-Frame-896", "Chip-4-Heat-1-Frame-974"], 150),
    "creme_10_12": (DATA / "creme-316L-loops", ["10", "11", "12"], None),
}
SMALL = 100  # px


def _small_first(objects) -> dict:
    """How many objects are small, and their mean first-click IoU."""
    first = np.array([o["ious"][0] for o in objects])
    small = np.array([o["area"] < SMALL for o in objects], bool)
    return {"n_small": int(small.sum()),
            "small_first": round(float(first[small].mean()), 4) if small.any() else None}


def _clicks(be, samples, mode, cap):
    r = evaluate_clicks(be, samples, mode=mode, n_corrective=3, max_objects=cap, seed=0)
    return {"n_objects": r["n_objects"], "mean_iou": [round(x, 4) for x in r["mean_iou"]],
            "noc85": r["noc85"], **_small_first(r["objects"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("out")
    ap.add_argument("--first-threshold", type=float)
    ap.add_argument("--min-side", type=int)
    ap.add_argument("--skip-fecral", action="store_true")
    a = ap.parse_args()
    be = PromptableBackend.from_checkpoint(a.weights, first_threshold=a.first_threshold)
    if a.min_side:
        be.crop = dataclasses.replace(be.crop, min_side=a.min_side)
    backends = {"promptable": be, "otsu-flood": make_backend("otsu-flood")}
    out = {"weights": str(a.weights), "first_threshold": be.first_threshold, "min_side": be.crop.min_side}
    for key, (root, names, cap) in MASK_SETS.items():
        _, samples = load_dataset(root, images=names)
        for mode in ("point", "box"):
            for bname, b in backends.items():
                out[f"{key}/{mode}/{bname}"] = res = _clicks(b, samples, mode, cap)
                print(key, mode, bname, json.dumps(res), flush=True)
        for bname, b in backends.items():  # every object, first click: small ones counted
            r = evaluate_clicks(b, samples, n_corrective=0)
            out[f"{key}/all-objects-first-click/{bname}"] = res = {
                "n_objects": r["n_objects"], "first": round(float(r["mean_iou"][0]), 4),
                **_small_first(r["objects"])}
            print(key, "all objects", bname, json.dumps(res), flush=True)
    if not a.skip_fecral:
        _, samples = load_dataset(DATA / "uwcmg-fecral-111loops")
        for prompt in ("box", "point"):
            for bname, b in backends.items():
                r = evaluate_boxes(b, samples, prompt=prompt)
                res = {k: r[k] for k in ("n_objects", "mean_box_iou", "box_iou_50", "box_iou_75", "empty")}
                out[f"fecral/{prompt}/{bname}"] = res
                print("fecral", prompt, bname, json.dumps(res), flush=True)
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
