"""Benchmark: tiled inference overhead and peak memory of ``core.models``.

1. Overhead. A small U-Net (segmentation_models_pytorch, ResNet-18 encoder of
   depth 4, random weights) on a 2048 x 2048 synthetic micrograph, on the CPU.
   ``network_s`` is the network's own forward time over exactly the tiles
   ``predict_probabilities`` runs (same batches, tensors prepared beforehand,
   no stitching); ``predict_s`` is the whole call (normalisation, tiling,
   padding, activation, stitching) and ``postprocess_s`` the default
   post-processing (thresholds, connected components, minimum size). The
   plugin's overhead is ``(predict_s + postprocess_s - network_s) / network_s``
   (target <= 20 %). Best of ``--repeats`` runs each, interleaved.
2. Peak memory. In a fresh subprocess, a 10,000 x 10,000 uint8 image through a
   tiny DefectSegNet with ``predict_probabilities`` and then ``postprocess``;
   peak resident memory (``VmHWM``) after imports and the image, after
   prediction and after post-processing (target < 4 GB). Run first, from a
   small parent.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

CLASSES = [{"id": 1, "name": "<111> loop", "color": "#e6194b"},
           {"id": 3, "name": "black dot", "color": "#4363d8"}]


def _rss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``VmHWM`` from /proc (reset by exec, unlike ``ru_maxrss``, which Linux keeps
    from the parent across fork+exec); ``ru_maxrss`` elsewhere.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def overhead(size: int, tile: int, halo: int, batch: int, repeats: int) -> dict:
    import torch

    from napari_microseg.core.models import (
        ModelCard,
        PostprocessSettings,
        build_model,
        postprocess,
        predict_probabilities,
    )
    from napari_microseg.core.models.inference import effective_tiling, intensity_window, read_tile
    from napari_microseg.core.models.tiles import batches, tile_grid
    from napari_microseg.core.synth import generate

    image = generate("tem-loops", shape=(size, size), seed=0).image
    card = ModelCard(name="bench-unet", architecture="unet", classes=CLASSES, tile=tile, halo=halo,
                     params={"encoder_name": "resnet18", "encoder_depth": 4,
                             "decoder_channels": [128, 64, 32, 16]})
    torch.manual_seed(0)
    model = build_model(card).eval()
    t, h, m = effective_tiling(model, card)
    window = intensity_window(image, card)
    tiles = tile_grid(image.shape, t, h)
    inputs = [torch.from_numpy(np.stack([read_tile(image, x, window, 1, m) for x in g]))
              for g in batches(tiles, batch)]

    def network():
        t0 = time.perf_counter()
        with torch.inference_mode():
            for x in inputs:
                model(x)
        return time.perf_counter() - t0

    def plugin():
        t0 = time.perf_counter()
        prob = predict_probabilities(model, card, image, batch_size=batch)
        t1 = time.perf_counter()
        postprocess(prob, card.class_ids, PostprocessSettings(min_size=10))
        return t1 - t0, time.perf_counter() - t1

    network()  # warm-up (allocator, oneDNN kernels)
    net, pred, post = [], [], []
    for _ in range(repeats):
        net.append(network())
        p, q = plugin()
        pred.append(p)
        post.append(q)
    best_net, best_pred, best_post = min(net), min(pred), min(post)
    return {
        "image": [size, size],
        "model": "unet resnet18 depth 4, decoder 128/64/32/16, 2 classes (softmax)",
        "tile": t, "halo": h, "batch_size": batch, "tiles": len(tiles),
        "tiled_pixels": int(sum((x.r1 - x.r0) * (x.c1 - x.c0) for x in tiles)),
        "repeats": repeats,
        "network_s": round(best_net, 3),
        "predict_s": round(best_pred, 3),
        "postprocess_s": round(best_post, 3),
        "network_runs_s": [round(v, 3) for v in net],
        "predict_runs_s": [round(v, 3) for v in pred],
        "overhead_predict_pct": round(100 * (best_pred - best_net) / best_net, 1),
        "overhead_total_pct": round(100 * (best_pred + best_post - best_net) / best_net, 1),
    }


def memory_child(size: int, tile: int) -> dict:
    import torch

    from napari_microseg.core.models import (
        ModelCard,
        PostprocessSettings,
        build_model,
        postprocess,
        predict_probabilities,
    )

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size), dtype=np.uint8)
    card = ModelCard(name="bench-tiny", architecture="defectsegnet", activation="sigmoid",
                     classes=CLASSES[:1], params={"growth": 2, "depth": 2, "layers_per_block": 1},
                     tile=tile, halo=32)
    torch.manual_seed(0)
    model = build_model(card).eval()
    with torch.no_grad():  # a model with some foreground, so post-processing has work
        model.head.bias.fill_(0.0)
    base = _rss_mb()
    t0 = time.perf_counter()
    prob = predict_probabilities(model, card, image, batch_size=4)
    t1 = time.perf_counter()
    after_predict = _rss_mb()
    res = postprocess(prob, card.class_ids, PostprocessSettings(thresholds=0.5, min_size=4))
    t2 = time.perf_counter()
    return {
        "image": [size, size], "dtype": "uint8",
        "model": "defectsegnet growth 2, depth 2, 1 layer/block, 1 class",
        "tile": tile, "halo": 32,
        "baseline_rss_mb": round(base, 1),
        "peak_rss_after_predict_mb": round(after_predict, 1),
        "peak_rss_after_postprocess_mb": round(_rss_mb(), 1),
        "predict_s": round(t1 - t0, 1), "postprocess_s": round(t2 - t1, 1),
        "objects": int(res.labels.max()),
    }


def memory(size: int, tile: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", "--mem-size", str(size), "--mem-tile",
         str(tile)], capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--halo", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mem-size", type=int, default=10_000)
    ap.add_argument("--mem-tile", type=int, default=1024)
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.mem_size, args.mem_tile)))
        return
    import torch

    result = {
        "benchmark": "inference",
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "device": "cpu"},
    }
    if not args.skip_memory:
        result["memory"] = memory(args.mem_size, args.mem_tile)
        result["memory"]["target_mb"] = 4096
    if not args.skip_overhead:
        result["overhead"] = overhead(args.size, args.tile, args.halo, args.batch_size, args.repeats)
        result["overhead"]["target_pct"] = 20
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
