"""Benchmark: scribble and lasso prompts against a centre click on real labelled micrographs.

A simulated user draws, for every true object of the chosen images, (a) one click
at its innermost point, (b) a positive scribble: a line through the innermost
point along the object's long axis, 60 % of its length, and (c) a loose lasso: the
outline of the object grown by ``--lasso-pad`` px, as 40 vertices. The masks come
from :func:`~napari_microseg.core.prompting.strokes.predict_with_strokes` (the
click through the same session). Mean IoU with the true object is reported per
prompt and backend, with the lasso polygon's own IoU for comparison. No
parameter of the stroke refinement was tuned on these images (it was set on
synthetic scenes). Needs ``../shared/data``. Prints one JSON object.

    python benchmarks/bench_prompt_strokes_real.py --dataset creme-316L-loops --images 10 11 12
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def object_prompts(mask: np.ndarray, pad: int, offset=(0, 0)):
    """``(click, scribble, lasso)`` for one object's boolean mask (a crop at ``offset``, image coordinates)."""
    from scipy import ndimage as ndi
    from skimage.measure import find_contours, regionprops

    off = np.asarray(offset, float)
    dist = ndi.distance_transform_edt(mask)
    centre = np.array(np.unravel_index(np.argmax(dist), mask.shape), float)
    props = regionprops(mask.astype(np.uint8))[0]
    half = max(1.0, 0.3 * props.axis_major_length)
    th = props.orientation  # angle of the major axis to the row axis
    direction = np.array([np.cos(th), np.sin(th)])
    line = np.array([centre - half * direction, centre, centre + half * direction])
    line = np.clip(line, 0, np.array(mask.shape) - 1)
    grown = ndi.binary_dilation(np.pad(mask, pad + 2), iterations=pad)
    contour = max(find_contours(grown.astype(float), 0.5), key=len) - (pad + 2)
    idx = np.linspace(0, len(contour) - 1, 40, endpoint=False).astype(int)
    lasso = np.clip(contour[idx], 0, np.array(mask.shape) - 1)
    return centre + off, line + off, lasso + off


def main(dataset: str, images, backends, limit: int, lasso_pad: int) -> dict:
    import torch
    from scipy import ndimage as ndi

    torch.set_num_threads(1)
    from napari_microseg.core.prompting.eval_data import load_dataset
    from napari_microseg.core.prompting.registry import make_backend
    from napari_microseg.core.prompting.session import PromptSession
    from napari_microseg.core.prompting.strokes import Strokes, polygon_mask, predict_with_strokes

    root = Path(__file__).resolve().parents[2] / "shared" / "data" / dataset
    _, samples = load_dataset(root, images)
    out = {"benchmark": "prompt_strokes_real", "dataset": dataset, "images": [s.name for s in samples],
           "load_average": os.getloadavg(), "lasso_pad_px": lasso_pad, "results": {}}
    for name in backends:
        rng = np.random.default_rng(0)  # the same objects for every backend
        scores = {"click": [], "scribble": [], "lasso": [], "lasso_polygon": []}
        session = PromptSession(make_backend(name))
        for s in samples:
            session.set_image(s.image)
            ids = np.unique(s.target)
            ids = ids[ids > 0]
            if limit and len(ids) > limit:
                ids = np.sort(rng.choice(ids, limit, replace=False))
            boxes = ndi.find_objects(s.target)
            for k in ids:
                rs, cs = boxes[k - 1]
                win = (slice(max(rs.start - 64, 0), rs.stop + 64), slice(max(cs.start - 64, 0), cs.stop + 64))
                crop = s.target[win] == k
                if crop.sum() < 4:
                    continue
                click, line, lasso = object_prompts(crop, lasso_pad, (win[0].start, win[1].start))

                def iou(m, crop=crop, win=win):  # the mask outside the window counts as false positive
                    inter = (m[win] & crop).sum()
                    return float(inter / max(1, m.sum() + crop.sum() - inter))

                session.reset()
                scores["click"].append(iou(session.predict([click], [1]).mask))
                session.reset()
                scores["scribble"].append(iou(predict_with_strokes(session, Strokes(positive=[line])).mask))
                session.reset()
                scores["lasso"].append(iou(predict_with_strokes(session, Strokes(lasso=lasso)).mask))
                scores["lasso_polygon"].append(iou(polygon_mask(lasso, s.target.shape)))
        out["results"][name] = {"objects": len(scores["click"]),
                                **{f"mean_iou_{k}": round(float(np.mean(v)), 3) for k, v in scores.items()}}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="creme-316L-loops")
    ap.add_argument("--images", nargs="*", default=["10", "11", "12"])
    ap.add_argument("--backends", nargs="*", default=["otsu-flood", "microseg-promptable"])
    ap.add_argument("--limit", type=int, default=0, help="at most this many objects per image (0: all)")
    ap.add_argument("--lasso-pad", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(main(a.dataset, a.images, a.backends, a.limit, a.lasso_pad), indent=1))
