"""Find similar: seconds of the first proposal on a 2048² frame, peak memory on a 10k² mosaic.

Prints one JSON object. Each case runs in its own process so its peak RSS is
its own (``ru_maxrss`` of the child). The 2048² frame is a Ti TEM frame from
``../shared/data`` when present (K=10 exemplars, seeded), else a synthetic
TEM image; the mosaic tiles a synthetic 1024² loop image (its labels give the
10 exemplars) to ``--mosaic`` px.

    python benchmarks/bench_find_similar.py [--mosaic 10240] [--skip-mosaic] [--backend NAME]

``--backend`` is FindSimilar's mask source: ``default`` (every entry point's default: the
promptable model up to 4096², its own masks above, so the mosaic runs on its own masks),
``none`` (its own masks) or ``microseg-promptable`` / ``auto``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ti-insitu-tem-defects"
FRAME = "Chip-4-Heat-1-Frame-433"  # a tuning frame (not one of the two held out)


def _case_frame(backend: str) -> dict:
    import numpy as np

    if (TI / "images" / f"{FRAME}.png").is_file():
        from napari_microseg.core.prompting.eval_data import load_creme

        s = load_creme(TI, [FRAME])[0]
        image, labels, source = s.image, s.target, f"ti-insitu-tem-defects/{FRAME}"
    else:
        from napari_microseg.core.synth.generator import generate

        g = generate("tem-loops", shape=(2048, 2048), seed=0)
        image, labels, source = g.image, g.labels, "synthetic tem-loops 2048²"
    ids = np.unique(labels)[1:]
    ex = np.random.default_rng(0).choice(ids, min(10, len(ids)), replace=False)
    return _run(image, np.where(np.isin(labels, ex), labels, 0), source, backend)


def _case_mosaic(size: int, backend: str) -> dict:
    import numpy as np

    from napari_microseg.core.synth.generator import generate

    g = generate("tem-loops", shape=(1024, 1024), seed=0)
    reps = -(-size // 1024)
    image = np.tile(g.image, (reps, reps))[:size, :size]
    labels = np.zeros((size, size), np.int32)
    ids = np.unique(g.labels)[1:][:10]
    labels[:1024, :1024] = np.where(np.isin(g.labels, ids), g.labels, 0)
    return _run(image, labels, f"synthetic tem-loops tiled to {size}²", backend)


def _run(image, labels, source: str, backend: str) -> dict:
    import torch

    from napari_microseg.core.fewshot import FindSimilar

    torch.set_num_threads(1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    fs = FindSimilar(image, backend=backend)
    fs.set_exemplars(labels)
    c = fs.propose()
    seconds = time.perf_counter() - t0
    return {
        "source": source, "shape": list(image.shape), "seconds_first_proposal": round(seconds, 1),
        "n_candidates": len(c), "n_above_0.5": int(len(c.above(0.5))),
        "rss_before_mb": round(rss0), "feature_factor": fs.scale.factor, "backend": backend,
    }


def _child(case: str, size: int, backend: str) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--mosaic", str(size), "--backend", backend]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mosaic", type=int, default=10240)
    p.add_argument("--skip-mosaic", action="store_true")
    p.add_argument("--backend", default="default")
    p.add_argument("--child")
    a = p.parse_args()
    if a.child:
        res = _case_frame(a.backend) if a.child == "frame" else _case_mosaic(a.mosaic, a.backend)
        res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(res))
        return
    out = {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "frame_2048": _child("frame", 0, a.backend)}
    if not a.skip_mosaic:
        out["mosaic"] = _child("mosaic", a.mosaic, a.backend)
        out["mosaic"]["image_mb"] = round(a.mosaic ** 2 / 2**20)
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
