"""``microseg fewshot-eval``: few-shot "find similar" scored by a simulated user."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.atomic import atomic_path
from ..core.errors import MicrosegError
from ..core.output_paths import check_outputs


def register(sub) -> None:
    """Add the ``fewshot-eval`` subcommand."""
    p = sub.add_parser(
        "fewshot-eval",
        help="score 'find similar' from K exemplars per image (simulated user, review rounds)",
        description="Per image, K true objects (seeded draw) are committed as exemplars; find "
        "similar proposes the others; candidates scoring >= --threshold are its answer. With "
        "--rounds R the simulated user then accepts the top-N candidates that match a true "
        "object and rejects the others, R times, the method retraining each time. Reports "
        "detection precision/recall/F1 at IoU 0.5 and 0.3, mean IoU of matches, count and "
        "areal-density errors and seconds per image, beside segment-everything and the "
        "Otsu-flood grid filtered to the exemplars' size range. DATASET_DIR holds images/ and "
        "masks/ (binary or uint16 instances) or boxes/ (scored by box IoU).",
    )
    p.add_argument("dataset", metavar="DATASET_DIR", help="folder with images/ and masks/ or boxes/")
    p.add_argument("--shots", type=int, default=10, metavar="K", help="exemplars per image (10)")
    p.add_argument("--rounds", type=int, default=0, metavar="R", help="review rounds (0)")
    p.add_argument("--top", type=int, default=30, metavar="N", help="candidates reviewed per round")
    p.add_argument("--images", nargs="+", metavar="NAME", help="only these images (file stems)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    p.add_argument("--seed", type=int, default=0, help="seed of the exemplar draw (0)")
    p.add_argument("--threshold", type=float, default=0.5, help="score threshold of the answer")
    p.add_argument("--exemplars-from", metavar="NAME",
                   help="draw the K exemplars from this image of the dataset instead, and search "
                   "each evaluated image with nothing committed (for images with few objects)")
    p.add_argument("--methods", nargs="+", default=["find-similar", "segment-everything",
                                                    "otsu-flood"],
                   help="among find-similar, segment-everything, otsu-flood (all by default)")
    p.add_argument("--backend", default="default",
                   help="find-similar mask backend: default (auto up to 4096², none above; "
                   "the default), none (its own masks), auto, or a prompt backend")
    p.add_argument("--json", metavar="OUT.json", help="write the full results as JSON")
    p.set_defaults(func=run)


def format_table(result: dict) -> str:
    """One row per method and round."""
    cols = ("f1@50", "precision@50", "recall@50", "f1@30", "mean_iou_matched",
            "abs_count_error", "abs_density_error", "seconds")
    head = f"{'method':<20}{'round':>6}" + "".join(f"{c:>18}" for c in cols)
    lines = [head]
    for method, rows in result["summary"].items():
        for r in rows:
            vals = "".join(f"{'-' if r.get(c) is None else format(r[c], '.3f'):>18}" for c in cols)
            lines.append(f"{method:<20}{r['round']:>6}{vals}")
    return "\n".join(lines)


def run(args) -> int:
    """Run the benchmark and print the table."""
    from ..core.fewshot.evaluation import METHODS, evaluate_fewshot
    from ..core.prompting.eval_data import load_dataset

    if args.rounds < 0 or args.top < 1:
        raise MicrosegError("--rounds must be 0 or more and --top at least 1.")
    if not 0.0 <= args.threshold <= 1.0:
        raise MicrosegError("--threshold must be in [0, 1].")
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        raise MicrosegError(f"Unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}.")
    check_outputs([], [("--json", args.json)])
    layout, samples = load_dataset(args.dataset, args.images, args.limit)
    source = None
    if args.exemplars_from:
        _, (source,) = load_dataset(args.dataset, [args.exemplars_from])
        if any(s.name == source.name for s in samples):
            raise MicrosegError(f"--exemplars-from {source.name} is also an evaluated image.")
    dataset = Path(args.dataset).name

    def progress(done, total):
        print(f"  [{done}/{total}]", file=sys.stderr, flush=True)

    result = evaluate_fewshot(
        samples, layout, shots=args.shots, rounds=args.rounds, top=args.top, seed=args.seed,
        threshold=args.threshold, methods=tuple(args.methods), exemplars_from=source,
        backend=args.backend, progress=progress,
    )
    result["dataset"] = dataset
    print(f"{dataset}: {len(samples)} image(s), K={args.shots}, rounds={args.rounds}, "
          f"top={args.top}")
    print(format_table(result))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
    return 0
