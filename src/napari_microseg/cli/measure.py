"""``microseg measure``: per-object table and summary statistics of a labelled image."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..core.calibration import PixelSize
from ..core.classes import ClassTable
from ..core.errors import LabelsError, MicrosegError
from ..core.labels_io import read_labels, warn_if_pixel_sizes_differ
from ..core.measure import (
    EDGE_MODES,
    MeasureSettings,
    export_tables,
    file_sha256,
    make_provenance,
    measure_image,
)
from ..core.measure.blockwise import use_blockwise
from ..core.memmap_regions import MemmapRegions
from ..core.output_paths import check_outputs
from ..core.reading import read_micrograph


def register(sub) -> None:
    """Add the ``measure`` subcommand."""
    p = sub.add_parser(
        "measure",
        help="measure every labelled object and summarise densities and sizes",
        description="Measure every object of LABELS on IMAGE; write a per-object table and a "
        "summary (.csv, .xlsx or .json, chosen by suffix) with a provenance header.",
    )
    p.add_argument("image", help="the micrograph (its pixel size and analysed area are used)")
    p.add_argument("labels", help="instance labels .tif (+ .json sidecar with classes)")
    p.add_argument("--out", required=True, help="per-object table: .csv, .xlsx or .json")
    p.add_argument(
        "--summary",
        help="summary table file (default: inside --out for .xlsx/.json, else <out>_summary.csv)",
    )
    p.add_argument("--pixel-size", type=float, metavar="NM", help="override the pixel size (nm)")
    p.add_argument(
        "--classes",
        metavar="JSON",
        help="class table JSON: a list of "
        '{"id", "name", "color"}, or {"classes": [...], "instance_classes": {...}}',
    )
    p.add_argument(
        "--edges",
        choices=EDGE_MODES,
        default="include",
        help="objects on the image/analysed-area edge (default: include)",
    )
    p.add_argument(
        "--guard-nm", type=float, metavar="X", help="guard-frame width for --edges guard"
    )
    p.add_argument(
        "--thickness-nm",
        type=float,
        metavar="T",
        help="foil thickness: adds volumetric density and barrier hardening",
    )
    p.set_defaults(func=run)


def _load_classes(path, rec):
    classes, inst = rec.classes, rec.instance_classes
    if path is None:
        return classes, inst
    try:
        doc = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise LabelsError(f"Cannot read the class file {path}: {e}") from e
    try:
        if isinstance(doc, dict):
            classes = ClassTable.from_list(doc.get("classes") or [])
            if "instance_classes" in doc:
                inst = {int(k): int(v) for k, v in doc["instance_classes"].items()}
        elif isinstance(doc, list):
            classes = ClassTable.from_list(doc)
        else:
            raise TypeError(f"expected a list or an object, got {type(doc).__name__}")
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise LabelsError(f"The class file {path} is malformed: {e}") from e
    return classes, inst


def _pixel_size(args, mg, rec) -> PixelSize:
    if args.pixel_size is not None:
        return PixelSize.isotropic(args.pixel_size, "user", "--pixel-size")
    if mg.pixel_size.calibrated:
        warn_if_pixel_sizes_differ(mg.pixel_size, rec.pixel_size, f"the image {Path(args.image).name}",
                                   f"the labels {Path(args.labels).name}")
        return mg.pixel_size
    return rec.pixel_size


def _planned_outputs(args) -> list[tuple[str, Path]]:
    """Every file :func:`run` will write (``.csv`` tables beyond the first go beside it)."""
    out = Path(args.out)
    if args.summary:
        return [("--out", out), ("--summary", Path(args.summary))]
    planned = [("--out", out)]
    if out.suffix.lower() == ".csv":
        planned.append(("--out", out.with_name(f"{out.stem}_summary.csv")))
    return planned


def run(args) -> int:
    """Measure, write the tables and print a short summary."""
    check_outputs([args.image, args.labels, args.classes], _planned_outputs(args))
    mg = read_micrograph(args.image, pixel_size_nm=args.pixel_size, as_grey=True)
    # huge files stay lazy (zarr or memmap) and are measured block by block
    rec = read_labels(args.labels, lazy=True)
    rec.labels = MemmapRegions.open(args.labels, rec.labels)
    image = MemmapRegions.open(args.image, mg.data)
    if not use_blockwise(rec.labels.shape):
        rec.labels, image = np.asarray(rec.labels), np.asarray(image)
    if rec.labels.shape != image.shape[:2]:
        raise LabelsError(
            f"The labels are {rec.labels.shape[1]} x {rec.labels.shape[0]} px but the image is "
            f"{image.shape[1]} x {image.shape[0]} px."
        )
    ps = _pixel_size(args, mg, rec)
    classes, inst = _load_classes(args.classes, rec)
    if args.edges == "guard":
        if args.guard_nm is None:
            raise MicrosegError("--edges guard needs --guard-nm (the frame width in nm).")
        if not ps.calibrated:
            raise MicrosegError("--guard-nm needs a pixel size; give --pixel-size NM.")
    if args.thickness_nm is not None and not ps.calibrated:
        raise MicrosegError("--thickness-nm needs a pixel size; give --pixel-size NM.")
    settings = MeasureSettings(edges=args.edges, guard=args.guard_nm or 0.0, thickness_nm=args.thickness_nm)
    result = measure_image(
        rec.labels,
        ps,
        intensity=image if image.ndim == 2 else None,
        instance_classes=inst,
        classes=classes,
        analysis_mask=mg.analysis_mask,
        settings=settings,
    )
    table, summary, counting, hard = result.table, result.summary, result.counting, result.hardening
    record = result.settings_record()
    record.update(labels_file=str(args.labels), labels_sha256=file_sha256(args.labels))
    tables = {"objects": table}
    prov = make_provenance(
        image_path=args.image,
        pixel_size=ps,
        model=rec.metadata.get("model"),
        prompts=rec.metadata.get("prompts"),
        settings=record,
    )
    out = Path(args.out)
    written = []
    if args.summary:
        written += _export(out, tables, prov)
        written += _export(Path(args.summary), {"summary": summary}, prov)
    else:
        tables["summary"] = summary
        if args.thickness_nm is not None and out.suffix.lower() != ".csv":
            tables["hardening"] = hard.per_class
        written += _export(out, tables, prov)
    _print_summary(summary, ps, counting, args, written, hard)
    return 0


def _export(path: Path, tables, prov) -> list[Path]:
    """:func:`export_tables` with a rows-written progress bar on stderr (on a terminal only)."""
    from tqdm import tqdm

    total = sum(len(t) for t in tables.values())
    with tqdm(total=total, unit="row", desc=f"writing {path.name}", file=sys.stderr,
              disable=None, leave=False, mininterval=0.5) as bar:
        return export_tables(path, tables, prov, progress=bar.update)


def _print_summary(summary, ps, counting, args, written, hard) -> None:
    u = ps.unit
    print(f"pixel size: {ps.describe()}")
    print(
        f"edges: {counting.edges}"
        + (f", guard {counting.guard:g} {u}" if counting.edges == "guard" else "")
    )
    dens = "density_per_um2" if u == "nm" else "density_per_px2"
    dunit = "/µm²" if u == "nm" else "/px²"
    for _, r in summary.iterrows():
        line = (
            f"  {r['class_name']:<16} n={int(r['count']):<6} {r[dens]:.4g} {dunit}  "
            f"area fraction {r['area_fraction']:.4g}"
        )
        d = r[f"mean_equivalent_diameter_{u}"]
        if np.isfinite(d):
            line += f"  mean diameter {d:.4g} {u}"
        print(line)
    if hard is not None:
        print(
            f"barrier hardening: {hard.total_linear_mpa:.4g} MPa (linear sum), "
            f"{hard.total_rss_mpa:.4g} MPa (root-sum-square)"
        )
    for w in written:
        print(f"wrote {w}")
