"""Benchmark: ``microseg batch`` throughput on 1 and 2 Dask workers, and the scheduler's overhead.

N synthetic 1024 x 1024 TEM micrographs (written once into ``--data``, outside
the repository) go through ``run_batch`` with a small random-initialised U-Net
(MobileNetV3-small x0.5 encoder, 3 levels; tile 576, halo 32: 4 tiles per image) on a fresh
LocalCluster of 1, then 2 worker processes (one thread each, torch included).

* ``images_per_s``: images / time from "cluster started and model loaded in
  every worker" to the last result (the steady rate; ``wall_s`` adds the
  start-up, ``cluster_start_s``, and the report).
* ``speedup`` = rate(2 workers) / rate(1 worker); target >= 1.6.
* ``task_s``: mean seconds inside ``process_image`` per image, by step.
* ``overhead_per_image_ms``: (busy window x workers - summed task time) / images
  -- what the scheduler, transfers and idle gaps add to each image; and
  ``noop_per_task_ms``: wall time per do-nothing task through the same kind
  of cluster (submit -> as_completed), the scheduler's own round trip.
* ``worker_peak_rss_mb``: peak resident memory of a worker after a few images.

Prints one JSON object. Usage: ``python benchmarks/bench_batch.py [--n 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_data(folder: Path, n: int, size: int) -> list[Path]:
    """``n`` micrographs in ``folder`` (reused when already there)."""
    from batch_helpers import write_micrographs

    marker = folder / f".done-{n}-{size}"
    if marker.exists():
        return sorted(folder.glob("img*.tif"))[:n]
    shutil.rmtree(folder, ignore_errors=True)
    paths = write_micrographs(folder, n, size=size)
    marker.touch()
    return paths


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def one_run(recipe, data: Path, out: Path, workers: int) -> dict:
    from napari_microseg.core.batch import run_batch

    shutil.rmtree(out, ignore_errors=True)
    last = [0.0]
    t0 = time.time()
    run = run_batch(
        recipe,
        [data],
        out,
        workers=workers,
        threads_per_worker=1,
        progress=lambda *_: last.__setitem__(0, time.time()),
    )
    wall = time.time() - t0
    ok = [r for r in run.results if r.status == "ok"]
    busy = last[0] - run.info["ready_unix"]
    task_total = sum(r.timings["total"] for r in ok)
    steps = ("read", "predict", "postprocess", "measure", "write", "total")
    return {
        "workers": workers,
        "images": len(ok),
        "failed": len(run.failed),
        "wall_s": round(wall, 2),
        "cluster_start_s": run.info["cluster_start_s"],
        "busy_s": round(busy, 2),
        "images_per_s": round(len(ok) / busy, 3),
        "task_s": {
            k: round(sum(r.timings.get(k, 0.0) for r in ok) / max(len(ok), 1), 4) for k in steps
        },
        "overhead_per_image_ms": round(1000 * (busy * workers - task_total) / max(len(ok), 1), 1),
    }


def scheduler_probe(recipe, paths: list[Path], out: Path, workers: int, n_noop: int) -> dict:
    """No-op tasks through a cluster, then a few real images for the workers' peak memory."""
    from distributed import as_completed

    from napari_microseg.core.batch.runner import _noop, _task, start_client

    client, cluster = start_client(workers, 1)
    try:
        list(as_completed(client.map(_noop, ["warm"] * workers, pure=False)))
        t = time.perf_counter()
        futs = client.map(_noop, [f"p{i}" for i in range(n_noop)], pure=False)
        for f in as_completed(futs):
            f.result()
        noop = (time.perf_counter() - t) / n_noop
        futs = [
            client.submit(
                _task, recipe.to_dict(), str(p), str(out), p.stem, True, 1, "cpu", pure=False
            )
            for p in paths[: 2 * workers]
        ]
        [f.result() for f in futs]
        rss = client.run(_peak_rss_mb)
    finally:
        client.close()
        cluster.close()
    return {
        "noop_per_task_ms": round(1000 * noop, 2),
        "noop_tasks": n_noop,
        "worker_peak_rss_mb": round(max(rss.values()), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of micrographs")
    ap.add_argument("--size", type=int, default=1024, help="image side (px)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare")
    ap.add_argument(
        "--data",
        default=str(Path(tempfile.gettempdir()) / "microseg-bench-batch"),
        help="folder for the generated images and outputs (outside the repository)",
    )
    ap.add_argument("--noop", type=int, default=500, help="no-op tasks for the scheduler probe")
    args = ap.parse_args()
    root = Path(args.data)
    os.environ["MICROSEG_MODELS_DIR"] = str(root / "models")  # inherited by the workers
    from batch_helpers import register_tiny_unet
    from napari_microseg.core.batch import InferenceSettings, Recipe

    shutil.rmtree(root / "models", ignore_errors=True)
    card = register_tiny_unet("bench-unet", tile=576, halo=32)
    recipe = Recipe.for_model(card.name, inference=InferenceSettings(tile=576, halo=32))
    t = time.perf_counter()
    paths = make_data(root / f"images-{args.size}", args.n, args.size)
    gen_s = time.perf_counter() - t
    runs = [
        one_run(recipe, paths[0].parent, root / f"out-{w}", int(w)) for w in args.workers.split(",")
    ]
    rate = {r["workers"]: r["images_per_s"] for r in runs}
    probe = scheduler_probe(recipe, paths, root / "probe", max(rate), args.noop)
    print(
        json.dumps(
            {
                "benchmark": "batch",
                "images": args.n,
                "size_px": args.size,
                "model": "unet tu-mobilenetv3_small_050 depth 3, decoder 16-8-4, tile 576 halo 32",
                "runs": runs,
                "speedup_2_workers": round(rate[2] / rate[1], 3) if {1, 2} <= set(rate) else None,
                **probe,
                "generate_s": round(gen_s, 1),
                "cpus": os.cpu_count(),
                "load_avg_1min": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
