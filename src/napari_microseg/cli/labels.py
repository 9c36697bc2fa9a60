"""``microseg labels``: convert instance labels between TIFF+sidecar and COCO JSON."""

from __future__ import annotations

from pathlib import Path

from ..core.calibration import PixelSize
from ..core.coco import coco_to_labels, read_coco, write_coco
from ..core.errors import LabelsError
from ..core.labels_io import read_labels, write_labels


def register(sub) -> None:
    """Add the ``labels`` subcommand."""
    p = sub.add_parser("labels", help="convert labels: TIFF (+JSON sidecar) <-> COCO JSON, chosen by suffix")
    p.add_argument("source", help="labels .tif/.tiff or COCO .json")
    p.add_argument("target", help="output .json (COCO) or .tif (labels + sidecar)")
    p.add_argument("--image", help="image id or file name inside a multi-image COCO file")
    p.add_argument("--pixel-size", type=float, metavar="NM", help="pixel size when the source has none")
    p.set_defaults(func=run)


def run(args) -> int:
    """Convert and print what was written."""
    src, dst = Path(args.source), Path(args.target)
    to_coco = dst.suffix.lower() == ".json"
    from_coco = src.suffix.lower() == ".json"
    if to_coco == from_coco:
        raise LabelsError("Convert between a .tif/.tiff labels file and a COCO .json file.")
    if to_coco:
        rec = read_labels(src)
        ps = rec.pixel_size
        if args.pixel_size:
            ps = PixelSize.isotropic(args.pixel_size, "user")
        write_coco(dst, rec.labels, instance_classes=rec.instance_classes, classes=rec.classes,
                   image_name=src.name, pixel_size=ps)
        print(f"{dst}: {len(set(rec.labels.ravel()) - {0})} instances")
        return 0
    coco = read_coco(src)
    image = args.image
    if image is not None and image.isdigit():
        image = int(image)
    labels, inst, classes = coco_to_labels(coco, image)
    ps = PixelSize.isotropic(args.pixel_size, "user") if args.pixel_size else PixelSize.uncalibrated()
    out = write_labels(dst, labels, instance_classes=inst, classes=classes, pixel_size=ps,
                       metadata={"converted_from": src.name, "coco_image": args.image})
    print(f"{out['labels']}: {int(labels.max())} instances (+ {out['sidecar'].name})")
    return 0
