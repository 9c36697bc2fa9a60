"""``microseg classify-like``: give every object of a labels image the class of examples it resembles."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._flags import bounded_float, bounded_int


def register(sub) -> None:
    """Add the ``classify-like`` subcommand."""
    p = sub.add_parser(
        "classify-like",
        help="classify every object like a few examples per class; class + confidence table",
        description="Learn from a few example objects of two classes or more (--examples: JSON "
        '{"ID": CLASS, ...} or a CSV with columns label,class_id; classes by id or name) and '
        "give every object of LABELS a class and a confidence from its size, shape, intensity "
        "and texture on IMAGE. Writes the table (.csv, .xlsx or .json by suffix; provenance "
        "beside it) and, with --labels-out, the labels with these classes in their sidecar.",
    )
    p.add_argument("image", metavar="IMAGE", help="the micrograph")
    p.add_argument("labels", metavar="LABELS", help="instance labels .tif of IMAGE")
    p.add_argument("--examples", required=True, metavar="CSV_OR_JSON",
                   help="example objects: instance id -> class id or name")
    p.add_argument("--out", required=True, metavar="TABLE",
                   help="table: label, class_id, class_name, confidence, p_<class>, example")
    p.add_argument("--labels-out", metavar="LABELS.tif",
                   help="also write the labels with the assigned classes")
    p.add_argument("--pixel-size", type=bounded_float(1e-6, None, "nm"), metavar="NM",
                   help="override the pixel size (nm)")
    p.add_argument("--seed", type=bounded_int(0, 2**31 - 1), default=0, metavar="N",
                   help="seed of the classifier (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Classify, write the table (and labels), print the counts per class."""
    from ..core.errors import LabelsError
    from ..core.fewshot.classify import ObjectClassifier, read_examples
    from ..core.labels_io import read_labels, write_labels
    from ..core.measure import export_tables, make_provenance
    from ..core.output_paths import check_outputs, with_sidecars
    from ..core.reading import read_micrograph

    out = Path(args.out)
    planned = [("--out", out)]
    if args.labels_out:
        planned += [("--labels-out", p) for p in with_sidecars([args.labels_out])]
    check_outputs([args.image, args.labels, args.examples], planned)
    mg = read_micrograph(args.image, pixel_size_nm=args.pixel_size, as_grey=True)
    for text in mg.warnings:
        warnings.warn(f"{args.image}: {text}", stacklevel=2)
    rec = read_labels(args.labels)
    labels = np.asarray(rec.labels)
    image = np.asarray(mg.data)
    if labels.shape != image.shape[:2]:
        raise LabelsError(f"The labels are {labels.shape[1]} x {labels.shape[0]} px but the image "
                          f"is {image.shape[1]} x {image.shape[0]} px.")
    ps = mg.pixel_size if mg.pixel_size.calibrated else rec.pixel_size
    examples = read_examples(args.examples, rec.classes)
    clf = ObjectClassifier(image, labels, pixel_size=ps, seed=args.seed).fit(examples)
    table = clf.predict()
    names = rec.classes.names()
    table.insert(2, "class_name", [names.get(int(c), f"class {int(c)}") for c in table["class_id"]])
    settings = {"labels_file": str(args.labels), "examples_file": str(args.examples),
                "examples": {str(k): v for k, v in sorted(clf.examples.items())},
                "feature_set": clf.feature_set_used, "seed": args.seed,
                "method": "extra-trees, class-balanced, self-training"}
    prov = make_provenance(image_path=args.image, pixel_size=ps, settings=settings)
    written = export_tables(out, {"classes": table}, prov)
    if args.labels_out:
        inst = dict(zip(table["label"].tolist(), table["class_id"].tolist(), strict=True))
        meta = {**rec.metadata, "classify_like": prov}
        files = write_labels(args.labels_out, labels, instance_classes=inst, classes=rec.classes,
                             pixel_size=ps, metadata=meta)
        written.append(files["labels"])
    print(f"{len(table)} objects, {len(examples)} examples, features: {clf.feature_set_used}")
    for cid, group in table.groupby("class_id", sort=True):
        print(f"  {names.get(int(cid), f'class {int(cid)}'):<16} n={len(group):<6} "
              f"mean confidence {group['confidence'].mean():.3f}")
    for w in written:
        print(f"wrote {w}")
    return 0
