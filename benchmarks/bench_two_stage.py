"""Benchmark: a detector alone against the two-stage model (its boxes, masks by a promptable model).

Data: synthetic SEM corrosion (``sem-corrosion``: pits, corroded areas,
grain-boundary attack) at 20 nm/px. Training images use seeds 0.., the
engine's own validation (best checkpoint) seeds 500.., and the measurement
seeds 1000.., so no number comes from an image the models were trained or
tuned on.

For each detector architecture (``maskrcnn``, ``yolo-seg``, ...) the training
engine trains a small model for ``--minutes`` of wall time on the CPU, it is
registered (in a temporary models folder), a two-stage model is made of it
with ``--refiner`` (``microseg-promptable`` by default, offline) in each of
the :data:`VARIANTS`, and all are loaded by name and run through :func:`~napari_microseg.core.models.predict_instances`
on the measurement images with one detection threshold (``--score``).

Reported per model (pooled over the images, :mod:`napari_microseg.core.evaluate`
at IoU 0.5): instance ``f1`` (class-agnostic), per-class F1, ``miou`` (pixel
mIoU over the three classes), ``matched_iou`` (mean mask IoU of the matched
pairs: the mask quality the refiner changes), size and density errors, and
seconds per image. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

KIND = "sem-corrosion"
CLASSES = [{"id": 6, "name": "pit", "color": "#42d4f4"},
           {"id": 7, "name": "corroded area", "color": "#f032e6"},
           {"id": 8, "name": "boundary attack", "color": "#bfef45"}]
PARAMS = {
    "maskrcnn": {"backbone": "resnet18", "fpn_channels": 64, "representation_size": 256,
                 "mask_channels": 64, "anchor_sizes": [8, 16, 32, 64, 128]},
    "yolo-seg": {"width": 16},
    "yolo-seg-tr": {"width": 16},
}


#: Two-stage variants measured for each detector.
VARIANTS = {
    "all": {},  # every class refined, the boxes as they are
    "margin3": {"box_margin": 3.0},  # boxes grown by 3 px
    "pits_areas": {"refine_classes": [6, 7]},  # boundary attack keeps the detector's masks
}


def images(seeds, size):
    from napari_microseg.core.synth import generate
    from napari_microseg.core.training import TrainImage

    out = []
    for s in seeds:
        sm = generate(KIND, (size, size), seed=s)
        out.append((TrainImage(f"c{s}", sm.image, sm.labels, dict(sm.instance_classes)), sm))
    return out


def train_detector(arch: str, name: str, minutes: float, train, val, patch: int, batch: int):
    from napari_microseg.core.training import TrainConfig
    from napari_microseg.core.training import train as run_training

    cfg = TrainConfig(name=name, architecture=arch, params=PARAMS.get(arch, {}), classes=CLASSES,
                      patch_size=patch, batch_size=batch, epochs=1000, steps_per_epoch=25,
                      lr=2e-3, tile=384, halo=32, threads=1, device="cpu", max_minutes=minutes,
                      pixel_size_nm=20.0)
    t0 = time.perf_counter()
    res = run_training(cfg, [t for t, _ in train], [t for t, _ in val], register=True,
                       register_on_stop=True)
    last = res.history[-1] if res.history else {}
    return {"train_s": round(time.perf_counter() - t0, 1), "steps": last.get("step"),
            "epochs": last.get("epoch"), "registered": res.model_name,
            "engine_val": {k: v for k, v in last.items() if k.startswith("val_")}}


def evaluate(name: str, measured, score: float) -> dict:
    from napari_microseg.core.evaluate.matching import match_instances
    from napari_microseg.core.evaluate.report import evaluate_images
    from napari_microseg.core.models import predict_instances
    from napari_microseg.core.models.registry import load_model

    model, card = load_model(name, device="cpu")
    items, matched, secs = [], [], 0.0
    for _, sm in measured:
        t0 = time.perf_counter()
        pred = predict_instances(model, card, sm.image, pixel_size=sm.pixel_size,
                                 score_threshold=score)
        secs += time.perf_counter() - t0
        items.append(dict(pred=pred.labels, true=sm.labels, pred_classes=pred.instance_classes,
                          true_classes=sm.instance_classes, pixel_size=sm.pixel_size))
        matched.extend(match_instances(pred.labels, sm.labels, 0.5).matched_iou.tolist())
    rep = evaluate_images(items, classes=card.class_table(), iou_threshold=0.5, per_image=False)
    pc = rep["per_class"]
    return {
        "f1": round(rep["detection"]["f1"], 4),
        "precision": round(rep["detection"]["precision"], 4),
        "recall": round(rep["detection"]["recall"], 4),
        "n_true": rep["detection"]["n_true"], "n_pred": rep["detection"]["n_pred"],
        "f1_per_class": {k: round(v["f1"], 4) for k, v in pc.items()},
        "miou": round(rep["pixel"]["miou"], 4),
        "matched_iou": round(float(np.mean(matched)), 4) if matched else None,
        "size_error_pct": {k: _r(v.get("size_error_pct")) for k, v in pc.items()},
        "density_error_pct": {k: _r(v.get("density_error_pct")) for k, v in pc.items()},
        "s_per_image": round(secs / len(measured), 3),
        "refined": getattr(model, "stats", None),
    }


def refiner_ceiling(refiner_name: str, measured) -> dict:
    """Mean mask IoU per class when the refiner gets the true boxes (its ceiling on this data).

    Also the IoU of the box itself taken as the mask, for reference.
    """
    from scipy import ndimage as ndi

    from napari_microseg.core.models.two_stage import make_refiner
    from napari_microseg.core.prompting.normalize import normalize_image
    from napari_microseg.core.prompting.session import PromptSession

    session = PromptSession(make_refiner(refiner_name), tile_size=4096, halo=0)
    ious, boxes = {}, {}
    for _, sm in measured:
        session.set_image(normalize_image(sm.image), contrast_limits=(0.0, 1.0))
        for i, sl in enumerate(ndi.find_objects(sm.labels), start=1):
            if sl is None:
                continue
            truth = sm.labels == i
            session.reset()
            box = [sl[0].start, sl[1].start, sl[0].stop - 1, sl[1].stop - 1]
            mask = np.asarray(session.predict(box=box, use_previous=False).mask, bool)
            name = sm.classes[sm.instance_classes[i]].name
            ious.setdefault(name, []).append((mask & truth).sum() / max((mask | truth).sum(), 1))
            boxes.setdefault(name, []).append(truth[sl].mean())
    return {k: {"refined_iou": round(float(np.mean(v)), 4),
                "box_as_mask_iou": round(float(np.mean(boxes[k])), 4), "n": len(v)}
            for k, v in ious.items()}


def _r(v):
    return None if v is None or not np.isfinite(v) else round(float(v), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", default="maskrcnn", help="comma-separated architectures")
    ap.add_argument("--minutes", type=float, default=4.0, help="training wall time per detector")
    ap.add_argument("--refiner", default="microseg-promptable")
    ap.add_argument("--train", type=int, default=8, help="training images")
    ap.add_argument("--val", type=int, default=4, help="measurement images")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--score", type=float, default=0.2, help="detection threshold (both models)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from napari_microseg.core.models.two_stage import create_two_stage

    train = images(range(args.train), args.size)
    engine_val = images(range(500, 502), args.size)
    measured = images(range(1000, 1000 + args.val), args.size)
    out = {"kind": KIND, "size": args.size, "train_seeds": f"0-{args.train - 1}",
           "engine_val_seeds": "500-501", "measured_seeds": f"1000-{999 + args.val}",
           "refiner": args.refiner, "score_threshold": args.score, "minutes": args.minutes,
           "threads": 1, "machine": platform.processor() or platform.machine(),
           "load_avg": [round(v, 2) for v in os.getloadavg()], "detectors": {}}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MICROSEG_MODELS_DIR"] = tmp
        os.environ.setdefault("MICROSEG_RUNS_DIR", os.path.join(tmp, "runs"))
        out["refiner_with_true_boxes"] = refiner_ceiling(args.refiner, measured)
        for arch in [a for a in args.detectors.split(",") if a]:
            try:
                info = train_detector(arch, f"bench-{arch}", args.minutes, train, engine_val,
                                      args.patch, args.batch)
                name = info["registered"]
                info["alone"] = evaluate(name, measured, args.score)
                for key, kw in VARIANTS.items():
                    create_two_stage(f"{name}-{key}", name, args.refiner, **kw)
                    info[f"two_stage_{key}"] = evaluate(f"{name}-{key}", measured, args.score)
            except Exception as e:  # one architecture failing leaves the others measured
                info = {"error": f"{type(e).__name__}: {e}"}
            out["detectors"][arch] = info
    out["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
