"""Dump first-click candidates of the shipped model at several first windows, with their IoU.

For every object of a set, the simulated user's first click (the object's interior point, as
in ``evaluate_clicks``) is predicted with each smallest window in ``SIDES`` (the backend's
usual growth included). Each candidate mask gets the features of ``first_window_lib.FEATURES`` and its IoU with the
true object, and the image it is on. ``first_window_fit.py`` learns from the training sets which candidate to keep.

    python scripts/promptable_v2/first_window_pool.py SET OUT.npz

SET: ``train_ti`` (Ti frames 2, 124, 278, 433, 588, 743; 150 objects each, seed 0),
``train_creme`` (creme 1-9), both the model's training images; ``val_ti`` (Ti 896, 974, every
object) and ``val_creme`` (creme 10-12), never trained or tuned on; ``sel_fecral`` (the 198
FeCrAl STEM images, never trained on: a click at each box centre, IoU of the candidate's
bounding box with the true box) to choose among the fitted variants without the validation
images.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from first_window_lib import SIDES, candidates
from scipy import ndimage as ndi

from napari_microseg.core.promptable.backend import PromptableBackend
from napari_microseg.core.prompting.base import Prompts
from napari_microseg.core.prompting.eval_data import load_dataset, to_unit_float
from napari_microseg.core.prompting.evaluation import _window, box_iou, interior_point, mask_bbox

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TI, CREME = DATA / "ti-insitu-tem-defects", DATA / "creme-316L-loops"
SETS = {
    "train_ti": (TI, [f"Chip-4-Heat-1-Frame-{f}" for f in (2, 124, 278, 433, 588, 743)], 150),
    "train_creme": (CREME, [str(i) for i in range(1, 10)], None),
    "val_ti": (TI, ["Chip-4-Heat-1-Frame-896", "Chip-4-Heat-1-Frame-974"], None),
    "val_creme": (CREME, ["10", "11", "12"], None),
    "sel_fecral": (DATA / "uwcmg-fecral-111loops", None, None),
}


def iou(mask_window, gt: np.ndarray) -> float:
    """IoU of a ``(window, mask)`` candidate with the full-image ``gt``."""
    (img_sl, loc_sl), m = mask_window
    g = gt[img_sl]
    p = m[loc_sl]
    inter = np.count_nonzero(p & g)
    union = np.count_nonzero(p) + np.count_nonzero(gt) - inter
    return inter / union if union else 0.0


def main(name: str, out: str) -> None:
    root, images, cap = SETS[name]
    layout, samples = load_dataset(root, images=images)
    be = PromptableBackend.load_default()
    rng = np.random.default_rng(0)
    feats, ious, groups, areas, image = [], [], [], [], []
    t0, gid = time.perf_counter(), 0
    for i, s in enumerate(samples):
        labels = np.asarray(s.target)
        if layout != "masks":  # boxes
            be.set_image(to_unit_float(s.image))
            for box in labels:
                prompts = Prompts([(box[:2] + box[2:]) / 2], [1])
                cands = candidates(be, prompts)
                for f, pred in zip(cands.features, cands.predictions, strict=True):
                    feats.append(f)
                    ious.append(box_iou(mask_bbox(np.asarray(pred.mask, bool)), box))
                    groups.append(gid)
                    areas.append((box[2] - box[0] + 1) * (box[3] - box[1] + 1) * np.pi / 4)
                    image.append(i)
                gid += 1
            print(s.name, gid, round(time.perf_counter() - t0, 1), flush=True)
            continue
        found = ndi.find_objects(labels)
        counts = np.bincount(labels.ravel(), minlength=len(found) + 1)
        ids = np.array([k for k in range(1, len(found) + 1) if counts[k]])
        if cap is not None and len(ids) > cap:
            ids = np.sort(rng.choice(ids, size=cap, replace=False))
        be.set_image(to_unit_float(s.image))
        for k in ids:
            gt = labels == k
            gwin = _window(gt.shape, mask_bbox(gt))
            r, c = interior_point(gt[gwin])
            prompts = Prompts([[r + gwin[0].start, c + gwin[1].start]], [1])
            cands = candidates(be, prompts)
            for f, cand in zip(cands.features, cands.masks, strict=True):
                feats.append(f)
                ious.append(iou(cand, gt))
                groups.append(gid)
                areas.append(counts[k])
                image.append(i)
            gid += 1
        print(s.name, gid, round(time.perf_counter() - t0, 1), flush=True)
    np.savez(out, features=np.array(feats, np.float32), iou=np.array(ious, np.float32),
             group=np.array(groups), area=np.array(areas), image=np.array(image), sides=np.array(SIDES))


if __name__ == "__main__":
    main(*sys.argv[1:3])
