"""Fine-tune a U-Net on creme images 1-9 and score it on 10-12 against training time. Prints JSON.

One run with a wall-time budget (the learning-rate schedule follows the
budget); the engine keeps a copy of the weights after 5, 15 and 30 minutes of
training (``snapshot_minutes``). Each copy is scored on the held-out images
10-12 through the same inference and post-processing as the Predict dock:
instance F1 at IoU 0.3 and the relative error of the number density (objects
per area; the "areal density" of the creme paper) and of the area fraction.
The process's CPU time is reported beside the wall time, so a run that shared
the cores with other work can be recognised.

    python benchmarks/bench_train_creme.py [--minutes 30] [--snapshots 5 15 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

CREME = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "creme-316L-loops"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--snapshots", type=float, nargs="+", default=[5, 15, 30])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="unet")
    ap.add_argument("--params", default='{"encoder_name": "resnet18"}')
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--run-dir", default=None)
    args = ap.parse_args()
    if not CREME.is_dir():
        raise SystemExit(f"needs {CREME} (see ../shared/data/README.md)")
    os.environ.setdefault("MICROSEG_MODELS_DIR", tempfile.mkdtemp(prefix="bench-models-"))
    from napari_microseg.core.models.architectures import build_model
    from napari_microseg.core.models.card import ModelCard
    from napari_microseg.core.models.checkpoint import read_weights
    from napari_microseg.core.training import TrainConfig, load_folder, train
    from napari_microseg.core.training.validation import score_images

    torch.set_num_threads(args.threads)
    train_set, source = load_folder(CREME, [str(i) for i in range(1, 10)])
    val_set, _ = load_folder(CREME, ["10", "11", "12"])
    cfg = TrainConfig(
        name="creme-unet-bench",
        architecture=args.arch,
        params=json.loads(args.params),
        classes=[{"id": 1, "name": "loop", "color": "#e6194b"}],
        patch_size=args.patch,
        batch_size=args.batch,
        epochs=10_000,
        steps_per_epoch=50,
        lr=args.lr,
        device="cpu",
        max_minutes=args.minutes,
        snapshot_minutes=list(args.snapshots),
        pixel_size_nm=0.39,
        tile=512,
        halo=32,
        seed=0,
    )
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="bench-creme-")) / "run"
    t0, c0 = time.perf_counter(), time.process_time()
    res = train(cfg, train_set, val_set, run_dir=run_dir, source=source, overwrite=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    card = ModelCard.from_dict(json.loads((run_dir / "card.json").read_text()))
    card.name = cfg.name
    rows = []
    for m in args.snapshots:
        path = run_dir / f"snapshot-{m:g}min.pt"
        if not path.is_file():
            continue
        model = build_model(card)
        model.load_state_dict(read_weights(path, card))
        s = score_images(model, card, val_set)
        rows.append(
            {"minutes": m, **{k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}}
        )
    hist = res.history
    print(
        json.dumps(
            {
                "benchmark": "U-Net fine-tuning on creme 1-9, scored on 10-12",
                "recipe": {
                    k: v
                    for k, v in cfg.to_dict().items()
                    if k
                    in (
                        "architecture",
                        "params",
                        "patch_size",
                        "batch_size",
                        "lr",
                        "steps_per_epoch",
                        "max_minutes",
                        "augment",
                        "loss",
                        "oversample",
                    )
                },
                "steps": hist[-1]["step"],
                "epochs": len(hist),
                "seconds_per_step": round(hist[-1]["elapsed_s"] / hist[-1]["step"], 3),
                "data_fraction_mean": round(sum(h["data_fraction"] for h in hist) / len(hist), 4),
                "snapshots_on_10_12": rows,
                "best_epoch_on_10_12 (selected on these images, optimistic)": res.card.metrics,
                "published_anchor": "Mask R-CNN on the full creme dataset: areal density within 16.4 %",
                "wall_s": round(wall, 1),
                "process_cpu_s": round(cpu, 1),
                "cpu_utilisation_cores": round(cpu / wall, 2),
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                "run_dir": str(run_dir),
                "torch_threads": args.threads,
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
