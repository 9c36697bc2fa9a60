"""Benchmark: scribble and lasso previews (strokes to an edge-following mask) and object edits.

Times :func:`~napari_microseg.core.prompting.strokes.predict_with_strokes` for a
positive scribble, a scribble with a negative stroke, and a lasso around a
five-lobed region, and an edit (start mask + one negative click), on a 512 x 512
and an 8192 x 8192 synthetic image (the same objects, placed in the middle), with
the Otsu-flood baseline and the shipped offline promptable model, one torch
thread. The cost depends on the prompt's window, not on the image size. Also
reports the lasso's IoU with the true region against the lasso polygon's own.
Prints one JSON object.

    python benchmarks/bench_prompt_strokes.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def scene(side: int):
    """Dark discs and a lobed region in the middle of a bright noisy ``side`` x ``side`` image."""
    from skimage.draw import disk

    o = side // 2 - 110
    truth = np.zeros((side, side), np.int32)
    truth[disk((o + 60, o + 60), 20)] = 1
    truth[disk((o + 60, o + 97), 17)] = 2
    rr, cc = np.ogrid[o : o + 220, o + 100 : o + 320]
    th, rad = np.arctan2(rr - (o + 150), cc - (o + 220)), np.hypot(rr - (o + 150), cc - (o + 220))
    truth[o : o + 220, o + 100 : o + 320][rad < 40 + 15 * np.sin(5 * th) + 6 * np.sin(3 * th + 1)] = 3
    rng = np.random.default_rng(0)
    img = np.where(truth > 0, 70, 200).astype(np.float32)
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    return img.clip(0, 255).astype(np.uint8), truth, o


def main(repeats: int = 5) -> dict:
    import torch

    torch.set_num_threads(1)
    from napari_microseg.core.prompting.registry import make_backend
    from napari_microseg.core.prompting.session import PromptSession
    from napari_microseg.core.prompting.strokes import Strokes, polygon_mask, predict_with_strokes

    out = {"benchmark": "prompt_strokes", "machine": platform.processor() or platform.machine(),
           "load_average": os.getloadavg(), "repeats": repeats, "results": []}
    for side in (512, 8192):
        img, truth, o = scene(side)
        t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
        lasso = np.stack([o + 150 + 63 * np.sin(t) + 3 * np.sin(7 * t), o + 220 + 63 * np.cos(t)], 1)
        cases = {
            "scribble": Strokes(positive=[[[o + 50, o + 55], [o + 60, o + 60], [o + 70, o + 62]]]),
            "scribble+negative": Strokes(positive=[[[o + 50, o + 55], [o + 60, o + 60], [o + 70, o + 62]]],
                                         negative=[[[o + 45, o + 100], [o + 75, o + 96]]]),
            "lasso": Strokes(lasso=lasso),
        }
        for name in ("otsu-flood", "microseg-promptable"):
            s = PromptSession(make_backend(name))
            s.set_image(img)
            for case, strokes in cases.items():
                times = []
                for _ in range(repeats):
                    s.reset()
                    t0 = time.perf_counter()
                    pred = predict_with_strokes(s, strokes)
                    times.append(time.perf_counter() - t0)
                row = {"image": side, "backend": name, "prompt": case,
                       "median_ms": round(1000 * float(np.median(times)), 1)}
                if case == "lasso":
                    row["iou"] = round(float((pred.mask & (truth == 3)).sum() / (pred.mask | (truth == 3)).sum()), 3)
                    poly = polygon_mask(lasso, truth.shape)
                    row["polygon_iou"] = round(float((poly & (truth == 3)).sum() / (poly | (truth == 3)).sum()), 3)
                out["results"].append(row)
            start = (truth == 1) | (truth == 2)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                s.start_from(start)
                s.predict([[o + 60, o + 100]], [0])
                times.append(time.perf_counter() - t0)
            out["results"].append({"image": side, "backend": name, "prompt": "edit: start mask + negative click",
                                   "median_ms": round(1000 * float(np.median(times)), 1)})
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    print(json.dumps(main(ap.parse_args().repeats), indent=1))
