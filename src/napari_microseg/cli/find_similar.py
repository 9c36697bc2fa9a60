"""``microseg find-similar``: label a few objects, get every similar one with a score.

The exemplars are objects of a labels image drawn on IMAGE (all of them, or
``--ids``); :class:`~napari_microseg.core.fewshot.FindSimilar` learns from them
and proposes the other objects like them. ``--also`` searches more images (or
every image of a folder) with what was learnt: a batch step, one output pair
per image, an unreadable image reported on one line while the others go on.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import MicrosegError
from ._flags import bounded_float, bounded_int
from ._progress import step_progress


def _id_list(text: str) -> list[int]:
    """``"3,5,9"`` -> ``[3, 5, 9]`` (argparse ``type=``)."""
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected instance ids like 3,5,9, got {text!r}") from None
    if not ids or min(ids) < 1:
        raise argparse.ArgumentTypeError(f"instance ids are positive whole numbers, got {text!r}")
    return ids


def register(sub) -> None:
    """Add the ``find-similar`` subcommand."""
    p = sub.add_parser(
        "find-similar",
        help="find every object like a few labelled exemplars; candidates with scores",
        description="Learn from the exemplar objects of --exemplars (drawn on IMAGE) and propose "
        "every other object like them. Writes into --out, per image, <stem>_candidates.tif "
        "(+ .labels.json: pixel size, provenance, scores) and <stem>_candidates.csv (+ .csv.json): "
        "candidate id, score, area and centroid; ids run best first. --also searches more images "
        "or folders with what was learnt; an unreadable one is reported and skipped, and the exit "
        "code is then 1.",
    )
    p.add_argument("image", metavar="IMAGE", help="the micrograph holding the exemplars")
    p.add_argument("--exemplars", required=True, metavar="LABELS",
                   help="instance labels .tif of IMAGE holding the exemplars (one class)")
    p.add_argument("--ids", type=_id_list, metavar="ID,ID,...",
                   help="exemplar ids in --exemplars (default: all its objects)")
    p.add_argument("--committed", metavar="LABELS",
                   help="labels of everything already committed on IMAGE: no candidate overlaps "
                   "it (default: the objects of --exemplars)")
    p.add_argument("--backend", metavar="NAME",
                   help="masks: default (auto up to 4096², none above), none (the pixel "
                   "classifier's), auto (SAM2 when its weights are present, else the offline "
                   "promptable model) or a backend name (default: default, see BENCHMARKS.md)")
    p.add_argument("--threshold", type=bounded_float(0.0, 1.0, "score"), default=0.5, metavar="S",
                   help="keep candidates scoring S or more (default 0.5)")
    p.add_argument("--also", nargs="+", default=[], metavar="IMAGE_OR_FOLDER",
                   help="more images, folders or glob patterns to search with what was learnt")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--pixel-size", type=bounded_float(1e-6, None, "nm"), metavar="NM",
                   help="override the pixel size of every image (nm)")
    p.add_argument("--seed", type=bounded_int(0, 2**31 - 1), default=0, metavar="N",
                   help="seed of the classifiers (default 0)")
    p.add_argument("--tile", type=bounded_int(64, 16384, "px"), default=1024, metavar="N",
                   help="tile side of the search in px (default 1024)")
    p.set_defaults(func=run)


def _read(path, args):
    """The micrograph (grey) with its reader's warnings shown as one line each."""
    from ..core.reading import read_micrograph

    mg = read_micrograph(path, pixel_size_nm=args.pixel_size, as_grey=True)
    for text in mg.warnings:
        warnings.warn(f"{path}: {text}", stacklevel=2)
    return mg


def _labels_of(path, shape, what: str) -> tuple[np.ndarray, object]:
    """Labels array and record of ``path``; refuse a size other than the image's."""
    from ..core.errors import LabelsError
    from ..core.labels_io import read_labels

    rec = read_labels(path)
    lab = np.asarray(rec.labels)
    if lab.shape != tuple(shape):
        raise LabelsError(f"{what} {Path(path).name} is {lab.shape[1]} x {lab.shape[0]} px but the "
                          f"image is {shape[1]} x {shape[0]} px.")
    return lab, rec


def _exemplar_class(rec, ids) -> dict:
    """``{"class_id": c}`` when every exemplar has one and the same class in the sidecar."""
    found = {rec.instance_classes.get(int(i)) for i in ids}
    if len(found) == 1 and None not in found:
        return {"class_id": int(found.pop())}
    return {}


def candidate_table(cands, threshold: float, pixel_size, analysis_mask=None):
    """Labels of the candidates scoring ``threshold`` or more, and their table.

    Candidates are ranked best first, so those kept are ids ``1..k`` (less any
    wholly outside ``analysis_mask``, e.g. on an SEM info bar: nothing is kept
    there). The table has ``candidate, score, area_px`` (``area_nm2`` when
    calibrated) and the centroid in px (and nm).
    """
    import pandas as pd

    from ..core.measure import measure_objects

    scores = np.asarray(cands.scores, float)
    k = int(np.count_nonzero(scores >= threshold))
    labels = np.where(cands.labels <= k, cands.labels, 0).astype(np.int32)
    if analysis_mask is not None:
        labels[~np.asarray(analysis_mask, bool)] = 0
    m = measure_objects(labels, pixel_size)
    table = pd.DataFrame({"candidate": m["label"].astype(np.int64),
                          "score": scores[m["label"].to_numpy() - 1] if len(m) else np.zeros(0)})
    sy, sx = (pixel_size.y_nm, pixel_size.x_nm) if pixel_size.calibrated else (1.0, 1.0)
    area_col = next(c for c in m.columns if c.startswith("area_"))
    table["area_px"] = np.rint(m[area_col].to_numpy() / (sy * sx)).astype(np.int64)
    if pixel_size.calibrated:
        table["area_nm2"] = m[area_col].to_numpy()
    for c in ("centroid_y_px", "centroid_x_px", "centroid_y_nm", "centroid_x_nm"):
        if c in m.columns:
            table[c] = m[c].to_numpy()
    return labels, table


def _write(path, stem: str, cands, mg, args, record: dict, classes, inst_class: dict):
    """Write ``<stem>_candidates.tif`` (+ sidecar) and ``.csv`` (+ sidecar); return (kept, tif)."""
    from ..core.labels_io import write_labels
    from ..core.measure import make_provenance, write_csv

    labels, table = candidate_table(cands, args.threshold, mg.pixel_size, mg.analysis_mask)
    meta = make_provenance(image_path=path, pixel_size=mg.pixel_size, settings=record)
    meta["scores"] = {str(int(c)): round(float(s), 4)
                      for c, s in zip(table["candidate"], table["score"], strict=True)}
    out = Path(args.out)
    inst = {int(c): inst_class["class_id"] for c in table["candidate"]} if inst_class else None
    files = write_labels(out / f"{stem}_candidates.tif", labels, instance_classes=inst,
                         classes=classes, pixel_size=mg.pixel_size, metadata=meta)
    write_csv(out / f"{stem}_candidates.csv", table, meta, name="candidates")
    return len(table), files["labels"]


def _planned(args, images: list, stems: list[str]) -> None:
    from ..core.output_paths import check_outputs

    out = Path(args.out)
    planned = []
    for stem in stems:
        for name in (f"{stem}_candidates.tif", f"{stem}_candidates.labels.json",
                     f"{stem}_candidates.csv", f"{stem}_candidates.csv.json"):
            planned.append(("output", out / name))
    check_outputs([*images, args.exemplars, args.committed], planned)


def _other_images(args) -> list[Path]:
    """``--also`` expanded (folders, globs), without IMAGE itself and nothing under --out.

    A folder's labels images (TIFFs with a ``.labels.json`` sidecar) are not micrographs:
    they are left out.
    """
    from ..core.batch.runner import collect_inputs
    from ..core.labels_io import sidecar_path

    if not args.also:
        return []
    main = Path(args.image).resolve()
    found, seen = [], set()
    for item in args.also:
        for p in collect_inputs([item], exclude=args.out):
            if p.resolve() in seen or (Path(item).is_dir() and sidecar_path(p).exists()):
                continue
            seen.add(p.resolve())
            found.append(p)
    others = [p for p in found if p.resolve() != main]
    if not others:
        raise MicrosegError(f"--also: no image found in {' '.join(map(str, args.also))}.")
    return others


def _masks_record(record: dict, fs, shape) -> dict:
    """``record`` with what drew this image's masks (``default`` resolved for its size)."""
    backend = fs.backend_for(shape[:2])
    return {**record, "masks_from": "find-similar" if backend is None else backend.name}


def _note(fs) -> str:
    return f" ({fs.mask_note})" if fs.mask_note else ""


def _check_backend(name: str | None) -> None:
    """Refuse an unknown ``--backend`` before any work (the search resolves it only at the end)."""
    from ..core.prompting.registry import available_backends

    known = ("default", "none", "auto", *available_backends())
    if name is not None and name not in known:
        raise MicrosegError(f"Unknown --backend {name!r}; choose from {', '.join(known)}.")


def _warn_scale(learnt, other, path) -> None:
    """One warning when ``path``'s pixel size differs by over 1 % from the exemplars' image."""
    if learnt.calibrated and other.calibrated:
        ratio = float(np.sqrt(other.x_nm * other.y_nm / (learnt.x_nm * learnt.y_nm)))
        if abs(ratio - 1.0) > 0.01:
            warnings.warn(f"{path}: pixel size {other.describe()} differs from the exemplars' "
                          f"image ({learnt.describe()}); objects are searched at the exemplars' "
                          "size in px", stacklevel=2)


def _one_line(e: Exception) -> str:
    from . import os_error_message

    return os_error_message(e) if isinstance(e, OSError) else " ".join(str(e).split())


def _propose(desc: str, search):
    """Run ``search(progress)`` with a percent bar (terminal only) fed by ``progress(fraction)``."""
    with step_progress(desc, unit="%") as bar:
        return search(lambda f: bar(int(round(100 * float(f))), 100))


def run(args) -> int:
    """Learn from the exemplars, propose on IMAGE and on every --also image; one line each."""
    from ..core.fewshot import FindSimilar
    from ..core.output_paths import check_output_dir, unique_stems

    check_output_dir(args.out, "--out")
    others = _other_images(args)
    images = [Path(args.image), *others]
    stems = unique_stems(images)
    _planned(args, images, stems)

    mg = _read(args.image, args)
    ex_labels, rec = _labels_of(args.exemplars, mg.shape[:2], "--exemplars")
    ids = args.ids if args.ids is not None else np.unique(ex_labels[ex_labels > 0]).tolist()
    committed = None
    if args.committed is not None:
        committed = _labels_of(args.committed, mg.shape[:2], "--committed")[0]
    _check_backend(args.backend)
    kw = {} if args.backend is None else {"backend": args.backend}
    fs = FindSimilar(mg.data, seed=args.seed, tile=args.tile, **kw)
    fs.set_exemplars(ex_labels, ids, committed=committed)
    if mg.analysis_mask is not None and not mg.analysis_mask.all():
        fs.add_negatives(mask=~mg.analysis_mask)
    record = {"exemplars_file": str(args.exemplars), "exemplar_ids": [int(i) for i in ids],
              "committed_file": None if args.committed is None else str(args.committed),
              "backend": args.backend or "default", "threshold": args.threshold, "seed": args.seed,
              "tile": args.tile, "learnt_on": str(args.image)}
    inst_class = _exemplar_class(rec, ids)
    cands = _propose(f"find-similar {Path(args.image).name}",
                     lambda progress: fs.propose(progress=progress))
    n, tif = _write(args.image, stems[0], cands, mg, args, _masks_record(record, fs, mg.shape),
                    rec.classes, inst_class)
    print(f"{args.image}: {n} candidates with score >= {args.threshold:g} "
          f"({len(cands)} proposed) -> {tif}{_note(fs)}", flush=True)
    learnt_ps = mg.pixel_size
    del mg, cands
    failed = 0
    for path, stem in zip(others, stems[1:], strict=True):
        try:
            other = _read(path, args)
            _warn_scale(learnt_ps, other.pixel_size, path)
            oc = _propose(f"find-similar {Path(path).name}",
                          lambda progress, im=other.data: fs.propose_on(im, progress=progress))
            n, tif_o = _write(path, stem, oc, other, args,
                              _masks_record(record, fs, other.shape), rec.classes, inst_class)
            print(f"{path}: {n} candidates with score >= {args.threshold:g} "
                  f"({len(oc)} proposed) -> {tif_o}{_note(fs)}", flush=True)
        except (MicrosegError, OSError, ValueError) as e:
            failed += 1
            print(f"{path}: error: {_one_line(e)}", file=sys.stderr, flush=True)
    if failed:
        print(f"microseg find-similar: {failed} of {len(others)} --also image(s) failed",
              file=sys.stderr)
    return 1 if failed else 0
