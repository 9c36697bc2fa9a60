"""``microseg predict``: run a trained model on micrographs and write instance labels."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from ..core import bounds
from ..core.errors import MicrosegError
from ._flags import bounded_float, bounded_int
from ._progress import step_progress


def register(sub) -> None:
    """Add the ``predict`` subcommand."""
    p = sub.add_parser(
        "predict",
        help="segment micrographs with a trained model; write labels (+ probabilities)",
        description="Run a registered model (see MICROSEG_MODELS_DIR) on each IMAGE and write "
        "<stem>_labels.tif with its .labels.json sidecar (classes, pixel size, provenance) "
        "into --out. Images above 64 Mpx are predicted block by block (bounded memory, tiled "
        "TIFF output, temporary files in --out). An unreadable image is reported and skipped; "
        "the exit code is then 1.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="micrographs to segment")
    p.add_argument("--model", required=True, help="registered model name, model folder or file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tile", type=bounded_int(*bounds.TILE_RANGE, "px"), metavar="N",
                   help="tile side in px (default: the card's)")
    p.add_argument("--halo", type=bounded_int(*bounds.HALO_RANGE, "px"), metavar="N",
                   help="tile halo in px (default: the card's)")
    p.add_argument("--batch-size", type=bounded_int(*bounds.BATCH_SIZE_RANGE), default=4,
                   metavar="N", help="tiles per batch")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    p.add_argument(
        "--threshold", type=bounded_float(0.0, 1.0, "probability"), metavar="P",
        help="class probability threshold (instance models: detection score); "
        "default: the card's, else 0.5",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--min-size-nm2", type=bounded_float(0.0, None, "nm²"), metavar="A",
                      help="drop objects below A nm²")
    size.add_argument("--min-size-px", type=bounded_float(0.0, None, "px"), metavar="A",
                      help="drop objects below A px")
    p.add_argument("--instances", choices=("cc", "watershed"), default="cc",
                   help="connected components, or watershed to split touching objects")
    p.add_argument("--min-distance", type=bounded_int(*bounds.MIN_DISTANCE_RANGE, "px"), default=5,
                   metavar="PX",
                   help="watershed: smallest distance between object centres")
    p.add_argument("--fill-holes", action="store_true", help="fill holes in objects")
    p.add_argument("--open", type=bounded_int(0, bounds.RADIUS_MAX, "px"), default=0, metavar="R",
                   help="opening radius (px)")
    p.add_argument("--close", type=bounded_int(0, bounds.RADIUS_MAX, "px"), default=0, metavar="R",
                   help="closing radius (px)")
    p.add_argument("--smooth", type=bounded_float(0.0, bounds.SIGMA_MAX, "px"), default=0.0,
                   metavar="S", help="boundary smoothing sigma")
    p.add_argument("--probabilities", action="store_true",
                   help="also write <stem>_prob.tif (float32, one plane per class)")
    p.add_argument("--pixel-size", type=float, metavar="NM", help="override the pixel size (nm)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=run)


#: Flag of each post-processing field, for messages.
FLAG_NAMES = {
    "thresholds": "--threshold", "open_radius": "--open", "close_radius": "--close",
    "smooth_sigma": "--smooth", "min_distance": "--min-distance", "instances": "--instances",
    "fill_holes": "--fill-holes", "tile": "--tile", "halo": "--halo", "batch_size": "--batch-size",
}


def _settings(args, card):
    """Post-processing settings from the flags, checked by the core's one validator.

    Raises
    ------
    SettingsError
        Naming the flag, its value and the allowed range (tile vs halo included).
    """
    from ..core.models import PostprocessSettings
    from ..core.models.inference import check_inference_args

    if args.threshold is not None:
        thresholds = float(args.threshold)
    else:
        thresholds = card.threshold_list()
    unit, value = ("nm2", args.min_size_nm2) if args.min_size_nm2 is not None else (
        "px", args.min_size_px or 0.0)
    settings = PostprocessSettings(
        thresholds=thresholds, min_size=value, min_size_unit=unit, open_radius=args.open,
        close_radius=args.close, smooth_sigma=args.smooth, fill_holes=args.fill_holes,
        instances=args.instances, min_distance=args.min_distance,
    )
    names = {**FLAG_NAMES, "min_size": "--min-size-nm2" if unit == "nm2" else "--min-size-px"}
    if args.threshold is None:  # the card's thresholds: name them as such
        names["thresholds"] = f"thresholds of model {card.name!r}"
    settings.validate(where="", names=names)
    # `microseg recipe` shares these flags but has no --batch-size (a recipe has none).
    check_inference_args(args.tile, args.halo, getattr(args, "batch_size", None),
                         names=FLAG_NAMES)
    return settings


def _write_probabilities(path: Path, prob: np.ndarray, card) -> None:
    import tifffile

    from ..core.atomic import atomic_path

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, prob, compression="zlib",
                         metadata={"axes": "CYX", "classes": [c["name"] for c in card.classes]})


def predict_one(path, model, card, args, settings, stem: str | None = None) -> str:
    """Segment one image, write its files, return the line to print.

    ``stem`` names the outputs (``<stem>_labels.tif``, ``<stem>_prob.tif``);
    default: the image's file stem.
    """
    from ..core.labels_io import write_labels
    from ..core.measure import make_provenance
    from ..core.models import postprocess, predict_instances, predict_probabilities
    from ..core.models.postprocess import min_area_px, remove_small
    from ..core.reading import read_micrograph

    mg = read_micrograph(path, pixel_size_nm=args.pixel_size, as_grey=card.in_channels == 1)
    for text in mg.warnings:  # odd pages, ignored calibration values, ... : one line each
        warnings.warn(f"{path}: {text}", stacklevel=2)
    if not mg.pixel_size.calibrated:
        warnings.warn(
            f"{path}: no pixel size (give --pixel-size or an IMAGE.microseg.json): "
            "not resampled to the model's scale, sizes in px",
            stacklevel=2,
        )
    from ..core.models.blockwise import use_blocks

    scores = None
    ps = mg.pixel_size
    blocks = card.task == "semantic" and use_blocks(mg.shape)
    image = None if blocks else np.asarray(mg.data)  # blockwise: read a region at a time
    out = Path(args.out)
    stem = stem or Path(path).stem
    kw = dict(pixel_size=ps, tile=args.tile, halo=args.halo, batch_size=args.batch_size)
    if blocks:
        labels = inst = None  # written tile by tile below
    elif card.task == "instance":
        # no --threshold: the card's per-class detection thresholds
        pred = predict_instances(model, card, image, score_threshold=args.threshold, **kw)
        labels, inst = pred.labels, pred.instance_classes
        if mg.analysis_mask is not None:
            labels = np.where(mg.analysis_mask, labels, 0)
        before = labels
        labels = remove_small(labels, min_area_px(settings.min_size, settings.min_size_unit, ps))
        scores = _remap(before, labels, pred.scores)
        inst = _remap(before, labels, inst)
    else:
        with step_progress(f"predict {Path(path).name}") as progress:
            prob = predict_probabilities(model, card, image, tta=args.tta, progress=progress, **kw)
        if mg.analysis_mask is not None:
            prob[:, ~mg.analysis_mask] = 0.0
        result = postprocess(prob, card.class_ids, settings, pixel_size=ps)
        labels, inst = result.labels, result.instance_classes
        if args.probabilities:
            _write_probabilities(out / f"{stem}_prob.tif", prob, card)
        del prob, result, image, mg  # free the maps before the labels are written
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
    if labels is None:
        inst, files = _predict_blocks(path, mg, model, card, args, settings, out, stem, meta)
    else:
        files = write_labels(out / f"{stem}_labels.tif", labels, instance_classes=inst,
                             classes=card.class_table(), pixel_size=ps, metadata=meta)
    names = card.class_table().names()
    if isinstance(inst, tuple):  # blockwise: (ids, class ids) arrays
        found, n = np.unique(inst[1], return_counts=True)
        order = np.argsort([list(names).index(int(c)) if int(c) in names else 0 for c in found],
                           kind="stable")
        counts = {names[int(found[i])]: int(n[i]) for i in order}
        total = int(inst[0].size)
    else:
        counts = {}
        for c in inst.values():
            counts[names[c]] = counts.get(names[c], 0) + 1
        total = len(inst)
    detail = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none"
    return f"{path}: {total} objects ({detail}) -> {files['labels']}"


def _predict_blocks(path, mg, model, card, args, settings, out: Path, stem: str, meta: dict):
    """Blockwise prediction of a huge image: labels (and probabilities) written tile by tile.

    Returns ``((instance ids, class ids), files)``: arrays, not a dict, for millions of objects.
    """
    import tempfile

    import tifffile

    from ..core.atomic import atomic_path
    from ..core.labels_io import write_labels_tiles
    from ..core.models.blockwise import TIFF_TILE, predict_blockwise

    meta["blockwise"] = True
    with tempfile.TemporaryDirectory(prefix=".microseg-blocks-", dir=out) as work:
        with step_progress(f"predict {Path(path).name}") as progress:
            res = predict_blockwise(
                model, card, _regions(path, mg.data), settings, pixel_size=mg.pixel_size,
                analysis_mask=mg.analysis_mask, tile=args.tile, halo=args.halo,
                batch_size=args.batch_size, tta=args.tta, probabilities=args.probabilities,
                progress=progress, work_dir=work)
        if args.probabilities:
            with atomic_path(out / f"{stem}_prob.tif") as tmp:
                tifffile.imwrite(tmp, res.probability_tiles(), shape=(res.n_classes, *res.shape),
                                 dtype=np.float32, tile=(TIFF_TILE, TIFF_TILE), compression="zlib",
                                 metadata={"axes": "CYX",
                                           "classes": [c["name"] for c in card.classes]})
        files = write_labels_tiles(
            out / f"{stem}_labels.tif", res.label_tiles(), shape=res.shape, dtype=res.dtype,
            n_instances=res.n_instances, tile=TIFF_TILE,
            instance_classes=(res.instance_ids, res.instance_class_ids),
            classes=card.class_table(), pixel_size=mg.pixel_size, metadata=meta)
    return (res.instance_ids, res.instance_class_ids), files


def _regions(path, data):
    """``data``, or a memmap region reader when it is a lazily opened, uncompressed TIFF."""
    from ..core.memmap_regions import MemmapRegions

    if isinstance(data, np.ndarray) or Path(path).suffix.lower() not in (".tif", ".tiff"):
        return data
    return MemmapRegions.open(path, data)


def _remap(before: np.ndarray, after: np.ndarray, values: dict) -> dict:
    """Per-instance values carried from ``before``'s ids to ``after``'s (same pixels, renumbered)."""
    fg = after > 0
    if not fg.any():
        return {}
    pairs = np.unique(np.stack([after[fg], before[fg]]), axis=1)
    return {int(a): values[int(b)] for a, b in pairs.T if int(b) in values}


def _one_line(e: Exception) -> str:
    from . import os_error_message

    return os_error_message(e) if isinstance(e, OSError) else " ".join(str(e).split())


def _output_stems(args) -> list[str]:
    """Distinct output stems; refuse outputs that would replace an input. Creates --out."""
    from ..core.output_paths import check_output_dir, check_outputs, unique_stems

    check_output_dir(args.out, "--out")
    stems = unique_stems(args.images)
    for path, stem in zip(args.images, stems, strict=True):
        if stem != Path(path).stem:
            print(f"{path}: outputs named {stem}_* (another image has the same name)", flush=True)
    out = Path(args.out)
    planned = []
    for stem in stems:
        planned += [("output", out / f"{stem}_labels.tif"), ("output", out / f"{stem}_labels.labels.json")]
        if args.probabilities:
            planned.append(("output", out / f"{stem}_prob.tif"))
    check_outputs(args.images, planned)
    return stems


def run(args) -> int:
    """Predict every image; one line each; exit 1 if any failed."""
    from ..core.models import load_model

    stems = _output_stems(args)
    model, card = load_model(args.model, device=args.device)
    settings = _settings(args, card)
    failed = 0
    for path, stem in zip(args.images, stems, strict=True):
        try:
            print(predict_one(path, model, card, args, settings, stem), flush=True)
        except (MicrosegError, OSError) as e:
            failed += 1
            print(f"{path}: error: {_one_line(e)}", file=sys.stderr, flush=True)
    if failed:
        print(f"microseg predict: {failed} of {len(args.images)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0
