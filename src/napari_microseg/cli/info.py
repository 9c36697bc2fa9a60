"""``microseg info``: a micrograph's calibration and instrument metadata."""

from __future__ import annotations

import json

import numpy as np

from ..core.reading import read_micrograph


def register(sub) -> None:
    """Add the ``info`` subcommand."""
    p = sub.add_parser("info", help="show a micrograph's pixel size, its source and instrument metadata")
    p.add_argument("image", help="image file (TIFF, DM3/DM4, EMD, SER, PNG, JPEG, BMP)")
    p.add_argument("--pixel-size", type=float, metavar="NM", help="override the pixel size (nm/px)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def summary(mg) -> dict:
    """JSON-ready summary of a :class:`Micrograph`."""
    md = {k: v for k, v in mg.metadata.items() if not k.startswith("_")}
    return {
        "path": mg.path,
        "shape": list(mg.shape),
        "dtype": str(np.dtype(mg.data.dtype)),
        "pixel_size": mg.pixel_size.to_dict(),
        "unit": mg.pixel_size.unit,
        "analysed_fraction": mg.analysed_area_px() / float(np.prod(mg.shape[:2])),
        "metadata": md,
    }


def run(args) -> int:
    """Print the summary."""
    mg = read_micrograph(args.image, pixel_size_nm=args.pixel_size)
    s = summary(mg)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    print(f"{args.image}: {s['shape'][0]} x {s['shape'][1]} px, {s['dtype']}")
    print(f"  pixel size: {mg.pixel_size.describe()}")
    for key in ("instrument", "signal", "accelerating_voltage_kv", "magnification", "detector", "format"):
        if key in s["metadata"]:
            print(f"  {key}: {s['metadata'][key]}")
    if "info_bar" in s["metadata"]:
        print(f"  info bar excluded from row {s['metadata']['info_bar']['start_row']}")
    print(f"  analysed area: {100 * s['analysed_fraction']:.1f} %")
    for w in mg.warnings:
        print(f"  warning: {w}")
    return 0
