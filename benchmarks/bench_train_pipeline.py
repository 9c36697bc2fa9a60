"""Is the data pipeline the bottleneck of training? Prints JSON.

Runs real training steps of the engine (:mod:`napari_microseg.core.training`)
on the creme images (or synthetic ones when the shared data is absent) and
splits each step into data time (patch sampling, augmentation, normalisation,
batching) and compute time (forward, backward, optimiser). Target: data time
20 % or less of a step on this CPU.

    python benchmarks/bench_train_pipeline.py [--steps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_microseg.core.training import AugmentConfig, TrainConfig, TrainImage
from napari_microseg.core.training.engine import _Run

CREME = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "creme-316L-loops"
RECIPES = {
    "unet-resnet18 (default)": ("unet", {"encoder_name": "resnet18"}),
    "defectsegnet": ("defectsegnet", {}),
}


def images():
    if CREME.is_dir():
        from napari_microseg.core.training import load_folder

        return load_folder(CREME, [str(i) for i in range(1, 10)])[0], "creme 1-9"
    from napari_microseg.core.synth import generate

    out = []
    for s in range(9):
        sm = generate("tem-loops", (512, 512), seed=s)
        out.append(TrainImage(f"s{s}", sm.image, sm.labels, {i: 1 for i in sm.instance_classes}))
    return out, "synthetic tem-loops"


def measure(arch, params, ims, patch, batch, steps, augment: AugmentConfig):
    cfg = TrainConfig(
        name="bench",
        architecture=arch,
        params=params,
        patch_size=patch,
        batch_size=batch,
        epochs=1,
        steps_per_epoch=steps,
        augment=augment,
        val_fraction=0,
        device="cpu",
        classes=[{"id": 1, "name": "loop", "color": "#ff0000"}],
    )
    run = _Run(cfg, ims, [], Path(tempfile.mkdtemp()), False, None, None, None)
    run._setup()
    data, total = [], []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        _, t_data = run._train_step()
        dt = time.perf_counter() - t0
        if i >= 2:  # warm-up steps excluded
            data.append(t_data)
            total.append(dt)
    data, total = np.array(data), np.array(total)
    return {
        "step_s_median": round(float(np.median(total)), 4),
        "data_s_median": round(float(np.median(data)), 4),
        "data_fraction": round(float(data.sum() / total.sum()), 4),
        "data_fraction_worst_step": round(float((data / total).max()), 4),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ims, what = images()
    results = {}
    for name, (arch, params) in RECIPES.items():
        for aug_name, aug in (
            ("full augmentation", AugmentConfig()),
            ("all elastic", AugmentConfig(elastic=1.0)),
        ):
            results[f"{name}, {aug_name}"] = measure(
                arch, params, ims, args.patch, args.batch, args.steps, aug
            )
    print(
        json.dumps(
            {
                "benchmark": "training data pipeline share of a step",
                "data": what,
                "patch": args.patch,
                "batch": args.batch,
                "torch_threads": args.threads,
                "target": "data_fraction <= 0.20",
                "results": results,
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
