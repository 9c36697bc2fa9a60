"""Benchmark: peak memory and wall time of ``microseg measure`` and ``microseg predict``.

Each case runs in its own fresh subprocess, through the CLI's ``main()`` exactly
as ``microseg ...`` runs it, so the peaks are separate:

* ``measure-csv`` / ``measure-xlsx``: a synthetic ``--measure-size``² label
  image (uint32) with about ``--objects`` small discs (radius 2 px up to almost
  half the grid cell) and a uint8 micrograph of the same size; ``microseg
  measure IMAGE LABELS --out objects.csv|.xlsx``.
* ``predict`` (and ``predict-prob`` with ``--probabilities``): a uint8
  ``--predict-size``² micrograph through the smallest model the tests build
  (DefectSegNet growth 2, depth 2, one layer per block: a tiny dense U-Net,
  random weights, head bias set so about 30 % of the pixels are foreground), tile
  1024, halo 32; ``microseg predict --model bench-tiny IMAGE --out DIR
  --min-size-px 4``. Above ``blockwise.BLOCKWISE_PIXELS`` (64 Mpx) this runs
  block by block; ``predict-whole`` forces the whole-image path for comparison.

* ``measure-blockwise``: a ``--blockwise-size``² uint32 label image (default
  20000²) with one disc per ``--blockwise-cell``² cell (radius 2 px up to ~13
  px) plus discs of radius 300 px centred on block corners (each crossing four
  blocks) and one of 500 px on the top border, written as a 256² tiled zlib
  TIFF tile by tile (as ``microseg predict`` writes huge labels), and a
  contiguous uncompressed uint8 image; ``microseg measure IMAGE LABELS --out
  objects.csv``. Above ``measure.blockwise.BLOCKWISE_PIXELS`` (64 Mpx) both
  stay lazy and are measured block by block.

Peak memory is the child's ``VmHWM`` (peak resident set, reset by exec; falls
back to ``ru_maxrss``); ``baseline_rss_mb`` is the peak after imports, before
the command. Inputs are written by the parent beforehand (not measured).
Prints one JSON object with the machine's ``uptime`` load before and after.

Usage::

    python benchmarks/bench_memory.py --measure-size 4000 --objects 50000 --predict-size 4000
    python benchmarks/bench_memory.py  # 8000² / 200,000 objects, 12000² predict
    python benchmarks/bench_memory.py --cases measure-blockwise --blockwise-size 40000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = [{"id": 1, "name": "<111> loop", "color": "#e6194b"}]


def _rss_mb() -> float:
    """Peak resident memory of this process in MB (``VmHWM``, else ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())


def synthetic_labels(size: int, objects: int, seed: int = 0) -> np.ndarray:
    """A ``size``² uint32 label image with about ``objects`` discs, one per grid cell."""
    rng = np.random.default_rng(seed)
    cell = max(8, int(size / np.sqrt(objects)))
    n = size // cell
    rmax = cell / 2.0 - 1.0
    r = rng.uniform(2.0, rmax, (n, n))
    cy = rng.uniform(r, cell - 1 - r)
    cx = rng.uniform(r, cell - 1 - r)
    out = np.zeros((size, size), np.uint32)
    lx = (np.arange(n * cell) % cell).astype(np.float32)
    ix = np.arange(n * cell) // cell
    for y in range(n * cell):
        iy, ly = y // cell, y % cell
        inside = (ly - cy[iy, ix]) ** 2 + (lx - cx[iy, ix]) ** 2 <= r[iy, ix] ** 2
        out[y, : n * cell][inside] = (iy * n + ix[inside] + 1).astype(np.uint32)
    return out


def _blockwise_tile(y0: int, x0: int, tile: int, size: int, cell: int, big, seed: int) -> np.ndarray:
    """One ``tile``² tile of the blockwise labels: a disc per ``cell``² cell plus the ``big`` discs.

    Cell ``(i, j)`` holds id ``i * ncols + j + 1``, its radius and centre a
    function of the cell (so tiles agree); big disc ``k`` holds id
    ``ncols² + k + 1`` (ids stay below the whole-image path's limit, for "before" runs).
    """
    ncols = -(-size // cell)
    yy, xx = np.mgrid[y0 : y0 + tile, x0 : x0 + tile]
    iy, ix = yy // cell, xx // cell
    h = (iy * 7919 + ix * 104729 + seed) % 1000 / 1000.0  # cheap per-cell pseudo-random
    r = 2.0 + h * (cell / 2.0 - 3.0)
    cy = iy * cell + cell / 2.0 + (h - 0.5) * (cell / 2.0 - r)
    cx = ix * cell + cell / 2.0 - (h - 0.5) * (cell / 2.0 - r)
    out = np.where((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r, iy * ncols + ix + 1, 0)
    for k, (by, bx, br) in enumerate(big):
        out[(yy - by) ** 2 + (xx - bx) ** 2 <= br * br] = ncols * ncols + k + 1
    return out.astype(np.uint32)


def blockwise_inputs(folder: Path, size: int, cell: int, tile: int = 256) -> dict:
    """``size``² labels as tiled zlib TIFF (as ``microseg predict`` writes huge labels) and a
    contiguous uint8 image (memmap path), both written without holding either whole."""
    import tifffile

    from napari_microseg.core.labels_io import write_labels_tiles
    try:
        from napari_microseg.core.measure.blockwise import BLOCK
    except ImportError:  # "before" runs, on code without blockwise measuring
        BLOCK = 4096

    # discs of radius 300 centred on block corners: objects crossing up to four blocks
    big = [(float(y), float(x), 300.0) for y in range(BLOCK, size - 300, 2 * BLOCK)
           for x in range(BLOCK, size - 300, 2 * BLOCK)]
    big.append((0.0, size / 2.0, 500.0))  # one on the image border

    def tiles():
        for y in range(0, size, tile):
            for x in range(0, size, tile):
                t = _blockwise_tile(y, x, tile, size, cell, big, 0)
                yield t[: size - y, : size - x]

    n_cells = (-(-size // cell)) ** 2
    write_labels_tiles(folder / "blockwise_labels.tif", tiles(), shape=(size, size),
                       dtype=np.uint32, n_instances=n_cells + len(big), tile=tile)
    img = tifffile.memmap(folder / "blockwise_image.tif", shape=(size, size), dtype=np.uint8)
    rng = np.random.default_rng(2)
    for y in range(0, size, 1024):
        img[y : y + 1024] = rng.integers(0, 250, img[y : y + 1024].shape, dtype=np.uint8)
    img.flush()
    del img
    return {"blockwise_image": [size, size], "blockwise_cell_px": cell,
            "blockwise_big_objects": len(big)}


def make_inputs(folder: Path, measure_size: int, objects: int, predict_size: int, cases,
                blockwise_size: int = 20000, blockwise_cell: int = 32) -> dict:
    import tifffile

    from napari_microseg.core.labels_io import write_labels

    folder.mkdir(parents=True, exist_ok=True)
    info = {}
    rng = np.random.default_rng(1)
    if "measure-blockwise" in cases:
        info.update(blockwise_inputs(folder, blockwise_size, blockwise_cell))
    if any(c in ("measure-csv", "measure-xlsx") for c in cases):
        lab = synthetic_labels(measure_size, objects)
        img = rng.integers(0, 120, lab.shape, dtype=np.uint8)
        img[lab > 0] += 100
        tifffile.imwrite(folder / "measure_image.tif", img)
        write_labels(folder / "measure_labels.tif", lab)
        info["measure_objects"] = int(np.unique(lab).size - 1)
        del lab, img
    if any(c.startswith("predict") for c in cases):
        img = rng.integers(0, 256, (predict_size, predict_size), dtype=np.uint8)
        tifffile.imwrite(folder / "predict_image.tif", img)
        del img
        import torch

        from napari_microseg.core.models import ModelCard, build_model, register_model

        os.environ["MICROSEG_MODELS_DIR"] = str(folder / "models")
        card = ModelCard(name="bench-tiny", architecture="defectsegnet", activation="sigmoid",
                         classes=CLASSES, params={"growth": 2, "depth": 2, "layers_per_block": 1},
                         tile=1024, halo=32)
        torch.manual_seed(0)
        net = build_model(card).eval()
        with torch.no_grad():  # about 30 % foreground, so post-processing has objects
            net.head.bias.fill_(0.0)
            x = torch.rand(1, 1, 256, 256)
            net.head.bias -= torch.quantile(net(x).flatten(), 0.7)
        register_model(net, card)
    return info


def child(case: str, folder: Path) -> dict:
    """Run one case in this (fresh) process; return its numbers."""
    os.environ["MICROSEG_MODELS_DIR"] = str(folder / "models")
    import importlib

    from napari_microseg.cli import main

    # what the command imports anyway, so the baseline holds it (torch only for predict)
    importlib.import_module("napari_microseg.core.measure")
    if case.startswith("predict"):
        importlib.import_module("napari_microseg.core.models")
    if case == "predict-whole":  # the whole-image path, whatever the size
        from napari_microseg.core.models import blockwise

        blockwise.BLOCKWISE_PIXELS = float("inf")

    out = folder / f"out_{case}"
    out.mkdir(exist_ok=True)
    if case == "measure-blockwise":  # above measure.blockwise.BLOCKWISE_PIXELS: lazy, by blocks
        argv = ["measure", str(folder / "blockwise_image.tif"), str(folder / "blockwise_labels.tif"),
                "--out", str(out / "objects.csv")]
    elif case.startswith("measure"):
        suffix = ".xlsx" if case.endswith("xlsx") else ".csv"
        argv = ["measure", str(folder / "measure_image.tif"), str(folder / "measure_labels.tif"),
                "--out", str(out / f"objects{suffix}")]
    else:
        argv = ["predict", "--model", "bench-tiny", str(folder / "predict_image.tif"),
                "--out", str(out), "--min-size-px", "4"]
        if case == "predict-prob":
            argv.append("--probabilities")
    base = _rss_mb()
    t0 = time.perf_counter()
    rc = main(argv)
    wall = time.perf_counter() - t0
    files = {p.name: p.stat().st_size for p in out.iterdir()}
    return {"case": case, "argv": ["microseg", *argv[:1]] + argv[1:], "rc": rc,
            "wall_s": round(wall, 1), "baseline_rss_mb": round(base, 1),
            "peak_rss_mb": round(_rss_mb(), 1), "files_bytes": files}


def run_case(case: str, folder: Path) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", case, "--folder", str(folder)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return {"case": case, "failed": p.returncode, "stderr": p.stderr[-2000:]}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["stderr_tail"] = p.stderr.strip().splitlines()[-1:] if p.stderr.strip() else []
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure-size", type=int, default=8000)
    ap.add_argument("--objects", type=int, default=200_000)
    ap.add_argument("--predict-size", type=int, default=12000)
    ap.add_argument("--blockwise-size", type=int, default=20000,
                    help="side of the measure-blockwise labels (px)")
    ap.add_argument("--blockwise-cell", type=int, default=32,
                    help="grid cell of the measure-blockwise discs (one object per cell)")
    ap.add_argument("--cases", default="measure-csv,measure-xlsx,predict",
                    help="comma-separated: measure-csv, measure-xlsx, measure-blockwise, predict, "
                    "predict-prob, predict-whole")
    ap.add_argument("--folder", help="work folder (default: a temporary one)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.folder))))
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        load_before = _uptime()
        t0 = time.perf_counter()
        info = make_inputs(folder, args.measure_size, args.objects, args.predict_size, cases,
                           args.blockwise_size, args.blockwise_cell)
        prep = time.perf_counter() - t0
        results = [run_case(c, folder) for c in cases]
    import torch

    print(json.dumps({
        "benchmark": "memory",
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "numpy": np.__version__},
        "load_before": load_before, "load_after": _uptime(),
        "measure_image": [args.measure_size] * 2, "predict_image": [args.predict_size] * 2,
        "inputs_s": round(prep, 1), **info,
        "results": results, "target_peak_mb": 4096,
    }, indent=2))


if __name__ == "__main__":
    main()
