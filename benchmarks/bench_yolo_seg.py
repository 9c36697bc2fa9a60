"""Benchmark: ``yolo-seg`` / ``yolo-seg-tr`` inference speed on a 2048² image and the tiling overhead.

A model of the default size (``width`` 16) is first trained briefly through
the training engine on synthetic SEM pits (``sem-pits``, 512² images, seeds
100+) so that it makes detections (an untrained one makes none, and the
merging cost would be missed). Then, on a 2048² ``sem-pits`` image of
another seed, best of ``--repeats`` interleaved runs of:

* ``heads_s``: the network up to its raw outputs (backbone, neck, heads,
  prototypes) over exactly the tiles :func:`predict_instances` runs (tensors
  prepared beforehand);
* ``network_s``: the model's own eval forward on the same tiles, i.e. plus
  decoding, NMS and full-size mask assembly (what a torchvision detector's
  forward includes too);
* ``predict_s``: the whole :func:`~napari_microseg.core.models.predict_instances`
  call (normalisation, tiling, padding, forward, per-class thresholds, the
  keep-by-box-centre rule and merging of instances across tiles).

Overheads are ``(predict_s - network_s) / network_s`` (the plugin's) and
``(predict_s - heads_s) / heads_s`` (everything after the raw outputs), from
wall time and from this process's CPU time (``*_cpu_s``, one thread: less
disturbed than wall time on a shared machine). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

PIT = [{"id": 1, "name": "pit", "color": "#e6194b"}]


def trained_model(arch: str, width: int, steps: int, patch: int, batch: int):
    from napari_microseg.core.synth import generate
    from napari_microseg.core.training import TrainConfig, TrainImage, train

    ims = []
    for s in range(4):
        sm = generate("sem-pits", (512, 512), seed=100 + s)
        ims.append(TrainImage(f"p{s}", sm.image, sm.labels, {i: 1 for i in sm.instance_classes}))
    cfg = TrainConfig(name="bench-yolo", architecture=arch, params={"width": width},
                      classes=PIT, patch_size=patch, batch_size=batch, epochs=1,
                      steps_per_epoch=steps, lr=3e-3, tile=512, halo=32, threads=1)
    t0 = time.perf_counter()
    res = train(cfg, ims, [], register=False)
    from napari_microseg.core.models import build_model
    from napari_microseg.core.models.checkpoint import load_state, read_weights
    from napari_microseg.core.training.model_setup import make_card

    card = make_card(cfg, PIT)
    model = build_model(card)
    load_state(model, read_weights(res.best_weights, card), card, "benchmark run")
    return model.eval(), card, time.perf_counter() - t0


def run(arch: str, width: int, steps: int, patch: int, batch: int, size: int, tile_batch: int,
        repeats: int) -> dict:
    import torch

    from napari_microseg.core.evaluate.matching import match_instances
    from napari_microseg.core.models import predict_instances
    from napari_microseg.core.models.architectures import count_parameters
    from napari_microseg.core.models.inference import effective_tiling, intensity_window, read_tile
    from napari_microseg.core.models.tiles import batches, tile_grid
    from napari_microseg.core.synth import generate

    model, card, train_s = trained_model(arch, width, steps, patch, batch)
    sm = generate("sem-pits", (size, size), seed=7)
    image = sm.image
    t, h, m = effective_tiling(model, card)
    window = intensity_window(image, card)
    tiles = tile_grid(image.shape, t, h)
    inputs = [torch.from_numpy(np.stack([read_tile(image, x, window, 1, m) for x in g]))
              for g in batches(tiles, tile_batch)]

    def timed(fn):  # (wall s, CPU s of this process)
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            for x in inputs:
                fn(x)
        return time.perf_counter() - t0, time.process_time() - c0

    def plugin():
        t0, c0 = time.perf_counter(), time.process_time()
        pred = predict_instances(model, card, image, batch_size=tile_batch)
        return (time.perf_counter() - t0, time.process_time() - c0), pred

    timed(model.raw_outputs)  # warm-up
    heads, net, total, pred = [], [], [], None
    for _ in range(repeats):
        heads.append(timed(model.raw_outputs))
        net.append(timed(model))
        p, pred = plugin()
        total.append(p)
    with torch.inference_mode():
        n_det = sum(len(d["scores"]) for x in inputs for d in model(x))
    match = match_instances(pred.labels, sm.labels, 0.5)
    hs, ns, ps = (min(w for w, _ in v) for v in (heads, net, total))
    hc, nc, pc = (min(c for _, c in v) for v in (heads, net, total))
    return {
        "architecture": arch,
        "params": card.params,
        "parameters": count_parameters(model),
        "training": {"data": "sem-pits 4 x 512², seeds 100-103", "steps": steps, "patch": patch,
                     "batch": batch, "wall_s": round(train_s, 1)},
        "image": [size, size], "image_kind": "sem-pits seed 7",
        "tile": t, "halo": h, "tiles": len(tiles), "batch_size": tile_batch, "repeats": repeats,
        "detections_before_merging": n_det,
        "instances": int(pred.labels.max()), "true_objects": int(sm.labels.max()),
        "f1_iou0.5": round(2 * match.tp / max(1, pred.labels.max() + sm.labels.max()), 3),
        "heads_s": round(hs, 3), "network_s": round(ns, 3), "predict_s": round(ps, 3),
        "heads_cpu_s": round(hc, 3), "network_cpu_s": round(nc, 3), "predict_cpu_s": round(pc, 3),
        "runs_wall_s": {k: [round(w, 3) for w, _ in v] for k, v in
                        (("heads", heads), ("network", net), ("predict", total))},
        "overhead_vs_network_pct": round(100 * (ps - ns) / ns, 1),
        "overhead_vs_heads_pct": round(100 * (ps - hs) / hs, 1),
        "cpu_overhead_vs_network_pct": round(100 * (pc - nc) / nc, 1),
        "cpu_overhead_vs_heads_pct": round(100 * (pc - hc) / hc, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["yolo-seg", "yolo-seg-tr"])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--train-steps", type=int, default=150)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile-batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    os.environ["MICROSEG_RUNS_DIR"] = tempfile.mkdtemp(prefix="bench-yolo-")
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "loadavg_start": os.getloadavg()},
        "results": [run(a, args.width, args.train_steps, args.patch, args.batch, args.size,
                        args.tile_batch, args.repeats) for a in args.arch],
    }
    out["machine"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
