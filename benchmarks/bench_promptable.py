"""Benchmark: click-to-mask latency of ``microseg-promptable`` at 512² and 8192².

The built-in backend looks only at a window around the prompts, so a click
should cost the same on a 512 x 512 and on an 8192 x 8192 image. On a synthetic
16-bit field of dark discs (radius 4-30 px) at both sizes it times, click by
click with the shipped weights:

- ``first``: a new object from one positive click at a disc centre
  (includes any window doubling when the disc is larger than the first window);
- ``refine``: a second, negative click beside the disc with the previous
  logits fed back;
- ``box``: a new object from its bounding box;
- ``session``: the first click through :class:`PromptSession` (what the napari
  dock calls).

Times are per ``predict`` call (the full-image boolean mask included), median and
90th percentile in ms; ``set_image_s`` is the one-off normalisation. Prints one
JSON object. Target: median <= 30 ms at both sizes.

Usage::

    python benchmarks/bench_promptable.py [--clicks 50] [--sizes 512 8192] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from napari_microseg.core.promptable import PromptableBackend, PromptUNet
from napari_microseg.core.prompting.base import Prompts
from napari_microseg.core.prompting.session import PromptSession

TARGET_MS = 30.0


def make_image(size: int, n: int, seed: int = 0):
    """Noisy uint16 background with ``n`` dark discs; returns ``(image, discs)``."""
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((size, size), dtype=np.float32)
    img *= 1500
    img += 20000
    discs = []
    margin = 40
    for _ in range(n):
        r, c = rng.integers(margin, size - margin, 2)
        rad = float(rng.uniform(4, 30))
        k = int(np.ceil(rad))
        rr, cc = np.ogrid[-k : k + 1, -k : k + 1]
        img[r - k : r + k + 1, c - k : c + k + 1][rr**2 + cc**2 <= rad**2] -= 6000
        discs.append((int(r), int(c), rad))
    return np.clip(img, 0, 65535).astype(np.uint16), discs


def _stats(ts) -> dict:
    ts = np.asarray(ts) * 1000
    return {
        "median_ms": round(float(np.median(ts)), 2),
        "p90_ms": round(float(np.percentile(ts, 90)), 2),
    }


def bench_size(backend: PromptableBackend, size: int, clicks: int) -> dict:
    """Time ``clicks`` objects of each prompt kind on a ``size``² image."""
    image, discs = make_image(size, clicks)
    session = PromptSession(backend)
    t = time.perf_counter()
    session.set_image(image)
    set_s = time.perf_counter() - t
    for r, c, _ in discs[:3]:  # warm-up
        backend.predict(Prompts([[r, c]], [1]))
    first, refine, box, sess, passes = [], [], [], [], []
    for r, c, rad in discs:
        t = time.perf_counter()
        pred = backend.predict(Prompts([[r, c]], [1]))
        first.append(time.perf_counter() - t)
        passes.append(len(backend.last_windows))
        p2 = Prompts([[r, c], [r, c + rad + 3]], [1, 0], mask_logits=pred.logits)
        t = time.perf_counter()
        backend.predict(p2)
        refine.append(time.perf_counter() - t)
        b = Prompts(box=[r - rad, c - rad, r + rad, c + rad])
        t = time.perf_counter()
        backend.predict(b)
        box.append(time.perf_counter() - t)
        session.reset()
        t = time.perf_counter()
        session.predict([[r, c]], [1])
        sess.append(time.perf_counter() - t)
    return {
        "image": f"{size}x{size}",
        "set_image_s": round(set_s, 3),
        "first": _stats(first),
        "refine": _stats(refine),
        "box": _stats(box),
        "session": _stats(sess),
        "mean_passes_first": round(float(np.mean(passes)), 2),
        "input_shape": list(backend.last_input_shapes[-1]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=50)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 8192])
    ap.add_argument("--threads", type=int, default=1, help="torch threads while predicting")
    ap.add_argument("--random", action="store_true", help="random weights (no shipped model)")
    args = ap.parse_args()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if args.random:
        backend = PromptableBackend(PromptUNet(), threads=args.threads)
    else:
        backend = PromptableBackend.load_default(threads=args.threads)
    runs = [bench_size(backend, s, args.clicks) for s in args.sizes]
    worst = max(r["first"]["median_ms"] for r in runs)
    out = {
        "benchmark": "microseg-promptable click latency",
        "weights": "random" if args.random else backend.meta.get("model_id", "shipped"),
        "threads": args.threads,
        "clicks_per_size": args.clicks,
        "runs": runs,
        "target_median_ms": TARGET_MS,
        "meets_target": bool(
            all(r[k]["median_ms"] <= TARGET_MS for r in runs for k in ("first", "refine", "box"))
        ),
        "worst_first_median_ms": worst,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
