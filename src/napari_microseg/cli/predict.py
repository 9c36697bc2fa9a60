"""``microseg predict``: run a trained model on micrographs and write instance labels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..core.errors import MicrosegError


def register(sub) -> None:
    """Add the ``predict`` subcommand."""
    p = sub.add_parser(
        "predict",
        help="segment micrographs with a trained model; write labels (+ probabilities)",
        description="Run a registered model (see MICROSEG_MODELS_DIR) on each IMAGE and write "
        "<stem>_labels.tif with its .labels.json sidecar (classes, pixel size, provenance) "
        "into --out. An unreadable image is reported and skipped; the exit code is then 1.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="micrographs to segment")
    p.add_argument("--model", required=True, help="registered model name, model folder or file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tile", type=int, metavar="N", help="tile side in px (default: the card's)")
    p.add_argument("--halo", type=int, metavar="N", help="tile halo in px (default: the card's)")
    p.add_argument("--batch-size", type=int, default=4, metavar="N", help="tiles per batch")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    p.add_argument(
        "--threshold", type=float, metavar="P",
        help="class probability threshold (instance models: detection score); "
        "default: the card's, else 0.5",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--min-size-nm2", type=float, metavar="A", help="drop objects below A nm²")
    size.add_argument("--min-size-px", type=float, metavar="A", help="drop objects below A px")
    p.add_argument("--instances", choices=("cc", "watershed"), default="cc",
                   help="connected components, or watershed to split touching objects")
    p.add_argument("--min-distance", type=int, default=5, metavar="PX",
                   help="watershed: smallest distance between object centres")
    p.add_argument("--fill-holes", action="store_true", help="fill holes in objects")
    p.add_argument("--open", type=int, default=0, metavar="R", help="opening radius (px)")
    p.add_argument("--close", type=int, default=0, metavar="R", help="closing radius (px)")
    p.add_argument("--smooth", type=float, default=0.0, metavar="S", help="boundary smoothing sigma")
    p.add_argument("--probabilities", action="store_true",
                   help="also write <stem>_prob.tif (float32, one plane per class)")
    p.add_argument("--pixel-size", type=float, metavar="NM", help="override the pixel size (nm)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=run)


def _settings(args, card):
    from ..core.models import PostprocessSettings

    if args.threshold is not None:
        thresholds = float(args.threshold)
    else:
        thresholds = card.threshold_list()
    unit, value = ("nm2", args.min_size_nm2) if args.min_size_nm2 is not None else (
        "px", args.min_size_px or 0.0)
    return PostprocessSettings(
        thresholds=thresholds, min_size=value, min_size_unit=unit, open_radius=args.open,
        close_radius=args.close, smooth_sigma=args.smooth, fill_holes=args.fill_holes,
        instances=args.instances, min_distance=args.min_distance,
    )


def _write_probabilities(path: Path, prob: np.ndarray, card) -> None:
    import tifffile

    from ..core.atomic import atomic_path

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, prob, compression="zlib",
                         metadata={"axes": "CYX", "classes": [c["name"] for c in card.classes]})


def predict_one(path, model, card, args, settings) -> str:
    """Segment one image, write its files, return the line to print."""
    from ..core.labels_io import write_labels
    from ..core.measure import make_provenance
    from ..core.models import postprocess, predict_instances, predict_probabilities
    from ..core.models.postprocess import min_area_px, remove_small
    from ..core.reading import read_micrograph

    mg = read_micrograph(path, pixel_size_nm=args.pixel_size, as_grey=card.in_channels == 1)
    scores = None
    ps = mg.pixel_size
    image = np.asarray(mg.data)
    out = Path(args.out)
    stem = Path(path).stem
    kw = dict(pixel_size=ps, tile=args.tile, halo=args.halo, batch_size=args.batch_size)
    if card.task == "instance":
        score = 0.5 if args.threshold is None else args.threshold
        pred = predict_instances(model, card, image, score_threshold=score, **kw)
        labels, inst = pred.labels, pred.instance_classes
        if mg.analysis_mask is not None:
            labels = np.where(mg.analysis_mask, labels, 0)
        before = labels
        labels = remove_small(labels, min_area_px(settings.min_size, settings.min_size_unit, ps))
        scores = _remap(before, labels, pred.scores)
        inst = _remap(before, labels, inst)
    else:
        prob = predict_probabilities(model, card, image, tta=args.tta, **kw)
        if mg.analysis_mask is not None:
            prob[:, ~mg.analysis_mask] = 0.0
        result = postprocess(prob, card.class_ids, settings, pixel_size=ps)
        labels, inst = result.labels, result.instance_classes
        if args.probabilities:
            _write_probabilities(out / f"{stem}_prob.tif", prob, card)
    record = {
        "model": {**card.reference(), "source": str(args.model)},
        "prediction": {"tile": args.tile or card.tile, "halo": args.halo if args.halo is not None
                       else card.halo, "tta": bool(args.tta)},
        "postprocess": settings.to_dict(),
    }
    meta = make_provenance(image_path=path, pixel_size=ps, model=record["model"],
                           settings={**record["prediction"], **record["postprocess"]})
    if scores is not None:
        meta["scores"] = {str(k): round(float(v), 4) for k, v in sorted(scores.items())}
    files = write_labels(out / f"{stem}_labels.tif", labels, instance_classes=inst,
                         classes=card.class_table(), pixel_size=ps, metadata=meta)
    names = card.class_table().names()
    counts = {}
    for c in inst.values():
        counts[names[c]] = counts.get(names[c], 0) + 1
    detail = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none"
    return f"{path}: {len(inst)} objects ({detail}) -> {files['labels']}"


def _remap(before: np.ndarray, after: np.ndarray, values: dict) -> dict:
    """Per-instance values carried from ``before``'s ids to ``after``'s (same pixels, renumbered)."""
    fg = after > 0
    if not fg.any():
        return {}
    pairs = np.unique(np.stack([after[fg], before[fg]]), axis=1)
    return {int(a): values[int(b)] for a, b in pairs.T if int(b) in values}


def run(args) -> int:
    """Predict every image; one line each; exit 1 if any failed."""
    from ..core.models import load_model

    model, card = load_model(args.model, device=args.device)
    settings = _settings(args, card)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in args.images:
        try:
            print(predict_one(path, model, card, args, settings), flush=True)
        except (MicrosegError, OSError) as e:
            failed += 1
            print(f"{path}: error: {e}", file=sys.stderr, flush=True)
    if failed:
        print(f"microseg predict: {failed} of {len(args.images)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0
