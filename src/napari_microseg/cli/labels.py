"""``microseg labels``: convert instance labels between TIFF+sidecar and COCO JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.atomic import write_json_atomic
from ..core.calibration import PixelSize
from ..core.coco import coco_image_entry, coco_pixel_size, coco_to_labels, labels_to_coco, read_coco
from ..core.errors import LabelsError, MicrosegError
from ..core.labels_io import read_labels, sidecar_path, write_labels
from ..core.output_paths import OutputConflictError, check_outputs, with_sidecars


def register(sub) -> None:
    """Add the ``labels`` subcommand."""
    p = sub.add_parser("labels", help="convert labels: TIFF (+JSON sidecar) <-> COCO JSON, chosen by suffix")
    p.add_argument("source", help="labels .tif/.tiff or COCO .json")
    p.add_argument("target", help="output .json (COCO) or .tif (labels + sidecar)")
    p.add_argument("--image", help="image id or file name inside a multi-image COCO file")
    p.add_argument("--pixel-size", type=float, metavar="NM", help="pixel size when the source has none")
    p.set_defaults(func=run)


def run(args) -> int:
    """Convert and print what was written (the count is that of the written file)."""
    src, dst = Path(args.source), Path(args.target)
    to_coco = dst.suffix.lower() == ".json"
    from_coco = src.suffix.lower() == ".json"
    if to_coco == from_coco:
        raise LabelsError("Convert between a .tif/.tiff labels file and a COCO .json file.")
    if args.pixel_size is not None and not args.pixel_size > 0:
        raise LabelsError("--pixel-size must be a positive number of nm.")
    if to_coco:
        check_outputs([src], [("target", dst)])
        rec = read_labels(src)
        ps = rec.pixel_size
        if args.pixel_size:
            ps = PixelSize.isotropic(args.pixel_size, "user")
        coco = labels_to_coco(rec.labels, instance_classes=rec.instance_classes, classes=rec.classes,
                              image_name=src.name, pixel_size=ps)
        write_json_atomic(dst, coco)
        print(f"{dst}: {len(coco['annotations'])} instances")
        return 0
    coco = read_coco(src)
    image = args.image
    if image is not None and image.isdigit():
        image = int(image)
    entry = coco_image_entry(coco, image)
    check_outputs([src], [("target", p) for p in with_sidecars([dst])])
    _refuse_foreign_tiff(dst)
    labels, inst, classes = coco_to_labels(coco, image)
    ps = _coco_pixel_size(args, entry, src)
    out = write_labels(dst, labels, instance_classes=inst, classes=classes, pixel_size=ps,
                       metadata={"converted_from": src.name, "coco_image": args.image})
    n = int(len(np.unique(labels[labels > 0])))
    print(f"{out['labels']}: {n} instances, {ps.describe()} (+ {out['sidecar'].name})")
    return 0


def _refuse_foreign_tiff(dst: Path) -> None:
    """Refuse to replace an existing TIFF that is not a labels file (it has no labels sidecar)."""
    if dst.exists() and not sidecar_path(dst).exists():
        raise OutputConflictError(
            f"{dst} exists and is not a labels file written by microseg (no "
            f"{sidecar_path(dst).name}); it may be a micrograph. Choose another target name."
        )


def _coco_pixel_size(args, entry: dict, coco_path: Path) -> PixelSize:
    """--pixel-size, else the COCO entry's pixel_size_nm, else the named image's calibration."""
    if args.pixel_size:
        return PixelSize.isotropic(args.pixel_size, "user", "--pixel-size")
    ps = coco_pixel_size(entry)
    if ps.calibrated:
        return ps
    name = entry.get("file_name")
    img = coco_path.parent / name if isinstance(name, str) and name else None
    if img is not None and img.is_file() and img.suffix.lower() != ".json":
        from ..core.reading import read_micrograph

        try:
            mg_ps = read_micrograph(img).pixel_size
        except (MicrosegError, OSError, ValueError):
            return ps
        if mg_ps.calibrated:
            return mg_ps
    return ps
