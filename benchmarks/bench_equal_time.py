"""Benchmark: instance models trained for equal CPU time, scored on images never trained on.

The comparison issue 18 asks for: ``yolo-seg``, ``yolo-seg-tr`` (the texture
refinement ablation is the pair), Mask R-CNN and U-Net + watershed, each trained
from scratch by the training engine for the same budget of **process CPU time**
(``TrainConfig.clock = "cpu"``, one torch thread), so runs sharing the cores with
other work still get equal compute. The engine keeps the weights after each
budget in ``--snapshots`` (one run; the learning-rate schedule follows the
largest budget, so an earlier snapshot is mid-schedule). No engine validation:
nothing is selected on any image, the snapshots are scored as they are.

Datasets (``--dataset``):

``corrosion``
    synthetic SEM corrosion (``microseg synth --kind sem-corrosion``: pits,
    textured corroded areas, grain-boundary attack, exact truth), 384² at
    20 nm/px; training seeds 0-7, **measured on seeds 1000-1003**.
``creme``
    ``../shared/data/creme-316L-loops``: images 1-9 train, **10-12 measured**.

Per snapshot, through the same prediction and post-processing steps as the
Predict dock and the batch (:func:`napari_microseg.core.batch.process.predict`
and ``labels_from_prediction``): instance F1 at IoU 0.5 (class-agnostic) and
per class, pixel mIoU, mean IoU of matched pairs, size (equivalent diameter)
and number-density errors per class. Detectors are scored at their card's score
threshold (0.5, what a user gets) and at 0.25. For the detectors, the final
weights are also run as a two-stage model (their boxes, masks drawn by the
offline promptable model). Prints one JSON object; ``--table A.json B.json ...``
prints the Markdown table of saved results instead.

    nice python benchmarks/bench_equal_time.py --dataset corrosion --arch yolo-seg \\
        --snapshots 10 20 > corrosion-yolo-seg.json
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

import numpy as np

CREME = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "creme-316L-loops"
CORROSION_CLASSES = [{"id": 6, "name": "pit", "color": "#42d4f4"},
                     {"id": 7, "name": "corroded area", "color": "#f032e6"},
                     {"id": 8, "name": "boundary attack", "color": "#bfef45"}]
LOOP = [{"id": 1, "name": "loop", "color": "#e6194b"}]

#: Architecture parameters and batch size: each model's usual small CPU recipe.
RECIPES = {
    "yolo-seg": ({"width": 16}, 4, 2e-3),
    "yolo-seg-tr": ({"width": 16}, 4, 2e-3),
    "maskrcnn": ({"backbone": "resnet18", "fpn_channels": 64, "representation_size": 256,
                  "mask_channels": 64, "anchor_sizes": [8, 16, 32, 64, 128]}, 2, 2e-3),
    "unet": ({"encoder_name": "resnet18"}, 4, 1e-3),
}
#: U-Net post-processing: threshold 0.5, distance-transform watershed (the defaults otherwise).
UNET_POST = {"thresholds": 0.5, "instances": "watershed"}


def dataset(name: str):
    """``(train, measured, classes, pixel_size_nm, description)``."""
    from napari_microseg.core.synth import generate
    from napari_microseg.core.training import TrainImage, load_folder

    if name == "corrosion":
        def synth(seeds):
            out = []
            for s in seeds:
                sm = generate("sem-corrosion", (384, 384), seed=s)
                out.append(TrainImage(f"c{s}", sm.image, sm.labels, dict(sm.instance_classes),
                                      pixel_size_nm=20.0))
            return out
        return (synth(range(8)), synth(range(1000, 1004)), CORROSION_CLASSES, 20.0,
                "synthetic SEM corrosion 384^2: train seeds 0-7, measured seeds 1000-1003")
    if not CREME.is_dir():
        raise SystemExit(f"needs {CREME} (see ../shared/data/README.md)")
    train, _ = load_folder(CREME, [str(i) for i in range(1, 10)])
    measured, _ = load_folder(CREME, ["10", "11", "12"])
    return (train, measured, LOOP, None, "creme-316L-loops: train 1-9, measured 10-12")


def score(model, card, measured, threshold=None) -> dict:
    """Pooled scores of ``model`` on ``measured`` (TrainImage list) at IoU 0.5."""
    import torch

    from napari_microseg.core.batch.process import labels_from_prediction, predict
    from napari_microseg.core.calibration import PixelSize
    from napari_microseg.core.evaluate.matching import match_instances
    from napari_microseg.core.evaluate.report import evaluate_images
    from napari_microseg.core.models.instances import predict_instances
    from napari_microseg.core.models.postprocess import PostprocessSettings

    settings = PostprocessSettings(**UNET_POST)
    items, matched, secs = [], [], 0.0
    model.eval()
    with torch.no_grad():
        for im in measured:
            t0 = time.perf_counter()
            if card.task == "instance":
                pred = predict_instances(model, card, im.image, score_threshold=threshold)
                labels, classes = pred.labels, pred.instance_classes
            else:
                labels, classes, _ = labels_from_prediction(predict(model, card, im.image),
                                                            card, settings)
            secs += time.perf_counter() - t0
            true_classes = {int(i): int(im.instance_classes.get(int(i), 1))
                            for i in np.unique(im.labels) if i}
            items.append(dict(pred=labels, true=np.asarray(im.labels), pred_classes=classes,
                              true_classes=true_classes,
                              pixel_size=PixelSize.isotropic(im.pixel_size_nm, "benchmark")
                              if im.pixel_size_nm else None))
            matched.extend(match_instances(labels, np.asarray(im.labels), 0.5).matched_iou.tolist())
    rep = evaluate_images(items, classes=card.class_table(), iou_threshold=0.5, per_image=False)
    pc = rep["per_class"]
    return {
        "f1": _r(rep["detection"]["f1"], 4),
        "precision": _r(rep["detection"]["precision"], 4),
        "recall": _r(rep["detection"]["recall"], 4),
        "n_true": rep["detection"]["n_true"], "n_pred": rep["detection"]["n_pred"],
        "f1_per_class": {k: _r(v["f1"], 4) for k, v in pc.items()},
        "miou": _r(rep["pixel"]["miou"], 4),
        "matched_iou": _r(np.mean(matched), 4) if matched else None,
        "size_error_pct": {k: _r(v.get("size_error_pct")) for k, v in pc.items()},
        "density_error_pct": {k: _r(v.get("density_error_pct")) for k, v in pc.items()},
        "s_per_image": round(secs / len(measured), 3),
    }


def _r(v, nd=1):
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def run(args) -> dict:
    import torch

    from napari_microseg.core.models.architectures import build_model
    from napari_microseg.core.models.checkpoint import read_weights
    from napari_microseg.core.models.registry import load_model
    from napari_microseg.core.models.two_stage import create_two_stage
    from napari_microseg.core.training import TrainConfig, train

    torch.set_num_threads(1)
    train_set, measured, classes, nm, desc = dataset(args.dataset)
    params, batch, lr = RECIPES[args.arch]
    budget = max(args.snapshots)
    cfg = TrainConfig(name=f"eq-{args.dataset}-{args.arch}", architecture=args.arch,
                      params=params, classes=classes, patch_size=256, batch_size=batch,
                      epochs=100_000, steps_per_epoch=25, lr=lr, tile=512, halo=32,
                      threads=1, device="cpu", max_minutes=budget, clock="cpu",
                      snapshot_minutes=list(args.snapshots), pixel_size_nm=nm, seed=0)
    run_dir = Path(tempfile.mkdtemp(prefix="eq-")) / "run"
    t0, c0 = time.perf_counter(), time.process_time()
    res = train(cfg, train_set, [], run_dir=run_dir, overwrite=True)
    out = {"dataset": desc, "arch": args.arch, "params": params, "batch": batch, "lr": lr,
           "patch": 256, "clock": "cpu", "threads": 1,
           "steps": res.history[-1]["step"] if res.history else 0,
           "train_wall_s": round(time.perf_counter() - t0, 1),
           "train_cpu_s": round(time.process_time() - c0, 1), "snapshots": {}}
    card = res.card
    for m in args.snapshots:
        path = run_dir / f"snapshot-{m:g}min.pt"
        if not path.is_file():
            continue
        model = build_model(card)
        model.load_state_dict(read_weights(path, card))
        row = {"default_threshold": score(model, card, measured)}
        if card.task == "instance":
            row["threshold_0.25"] = score(model, card, measured, 0.25)
        out["snapshots"][f"{m:g}"] = row
    if card.task == "instance" and res.model_name:
        create_two_stage(f"{res.model_name}-2s", res.model_name, "microseg-promptable")
        model, c2 = load_model(f"{res.model_name}-2s", device="cpu")
        out["two_stage_final"] = {"default_threshold": score(model, c2, measured),
                                  "threshold_0.25": score(model, c2, measured, 0.25)}
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    out["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    out["machine"] = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    out["torch"] = torch.__version__
    return out


def table(files) -> str:
    """Markdown table of saved results (one row per model, snapshot and threshold)."""
    rows = ["| data | model | CPU min | run steps | thr | F1@0.5 | F1 per class | mIoU | matched IoU "
            "| density err % | size err % | s / image |", "|" + "---|" * 12]
    for f in files:
        d = json.loads(Path(f).read_text())
        data = d["dataset"].split(":")[0].split(" 384")[0]
        entries = [(f"{m}", d["arch"], k, v) for m, snap in d["snapshots"].items()
                   for k, v in snap.items()]
        entries += [(max(d["snapshots"], key=float, default="?"), d["arch"] + " + promptable", k, v)
                    for k, v in d.get("two_stage_final", {}).items()]
        for m, arch, thr, s in entries:
            rows.append(
                f"| {data} | {arch} | {m} | {d['steps']} | "
                f"{'0.25' if thr.endswith('0.25') else 'card'} | **{s['f1']}** | "
                f"{' / '.join(str(v) for v in s['f1_per_class'].values())} | {s['miou']} | "
                f"{s['matched_iou']} | "
                f"{' / '.join(str(v) for v in s['density_error_pct'].values())} | "
                f"{' / '.join(str(v) for v in s['size_error_pct'].values())} | {s['s_per_image']} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("corrosion", "creme"), default="corrosion")
    ap.add_argument("--arch", choices=tuple(RECIPES), default="yolo-seg")
    ap.add_argument("--snapshots", type=float, nargs="+", default=[15, 30],
                    help="CPU-minute budgets; the run trains for the largest")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="print the table of saved results")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MICROSEG_MODELS_DIR"] = tmp
        os.environ.setdefault("MICROSEG_RUNS_DIR", os.path.join(tmp, "runs"))
        print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
