"""Benchmark: fine-tuning the promptable model and SAM2 (seconds per step; creme IoU).

``steps``: seconds per optimiser step (median over the steps after the first)
of ``engine.train`` with ``--arch promptable`` (batch of objects, one thread)
and ``--arch sam2`` (SAM2.1-tiny with the test-only random weights, which cost
the same as real ones; one 256 px patch per step, 8 prompted objects; encoder
input 1024 and 512) on synthetic micrographs. Nothing is registered.

``creme``: mean IoU after the first click (the simulated user's interior
click) and after 3 clicks (2 corrective) on creme-316L-loops images 10-12, every object, for the
shipped ``microseg-promptable`` and for a registered fine-tuned model
(``--model``; set ``MICROSEG_MODELS_DIR`` to where it was registered).

Usage::

    python benchmarks/bench_finetune_prompt.py steps [--steps 4] [--threads 2]
    python benchmarks/bench_finetune_prompt.py creme --model creme-click [--data DIR]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch


def _time_steps(config, images) -> list[float]:
    from napari_microseg.core.training import train

    times, last = [], [0.0]

    def progress(e):
        if e.kind == "step":
            times.append(e.elapsed_s - last[0])
            last[0] = e.elapsed_s

    with tempfile.TemporaryDirectory() as tmp:
        train(config, images, [], run_dir=Path(tmp) / "run", register=False, progress=progress)
    return times


def steps(args) -> dict:
    from napari_microseg.core.synth import generate
    from napari_microseg.core.training import TrainConfig, TrainImage

    images = []
    for s in range(3):
        g = generate("tem-loops", (512, 512), seed=s)
        images.append(TrainImage(f"synth-{s}", g.image, g.labels))
    out = {}
    runs = {
        "promptable_batch16_1thread": TrainConfig(
            name="bench",
            architecture="promptable",
            epochs=1,
            steps_per_epoch=args.steps,
            batch_size=16,
            threads=1,
        ),
    }
    for side in (1024, 512):
        runs[f"sam2.1-tiny_input{side}_{args.threads}threads"] = TrainConfig(
            name="bench",
            architecture="sam2",
            epochs=1,
            steps_per_epoch=args.steps,
            batch_size=1,
            patch_size=256,
            device="cpu",
            threads=args.threads,
            params={"image_size": side, "allow_random_weights": True},
        )
    for key, cfg in runs.items():
        t = _time_steps(cfg, images)
        out[key] = {
            "s_per_step_median": round(float(np.median(t[1:] or t)), 2),
            "first_step_s": round(t[0], 2),
            "steps": len(t),
        }
    return out


def creme(args) -> dict:
    from napari_microseg.core.prompting.eval_data import load_creme
    from napari_microseg.core.prompting.evaluation import evaluate_clicks
    from napari_microseg.core.prompting.registry import make_backend

    torch.set_num_threads(1)
    samples = load_creme(Path(args.data), [10, 11, 12])
    out = {}
    for name in ("microseg-promptable", *([args.model] if args.model else [])):
        res = evaluate_clicks(make_backend(name), samples, "point", 2)
        out[name] = {
            "iou_1click": round(float(res["mean_iou"][0]), 4),
            "iou_3clicks": round(float(res["mean_iou"][2]), 4),
            "n_objects": res["n_objects"],
        }
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("steps", "creme"))
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", help="registered fine-tuned promptable model to score")
    p.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "creme-316L-loops"),
    )
    args = p.parse_args(argv)
    result = steps(args) if args.what == "steps" else creme(args)
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
