"""``microseg prompt-eval``: simulated-user evaluation of prompt backends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.atomic import atomic_path
from ..core.errors import MicrosegError
from ..core.output_paths import check_outputs


def register(sub) -> None:
    """Add the ``prompt-eval`` subcommand."""
    p = sub.add_parser(
        "prompt-eval",
        help="score promptable backends with a simulated user (IoU per click, NoC@85/90)",
        description="Click (or box) each true object, then add corrective clicks on the "
        "largest error region, and report mean IoU per click and NoC@85/90. DATASET_DIR holds "
        "images/ and either masks/ (instances = connected components) or boxes/ (one "
        "'ymin xmin ymax xmax' line per object; scored by the IoU of the predicted mask's "
        "bounding box with the true box after the first prompt only: the box itself with "
        "--mode box, a click at the box centre with --mode point).",
    )
    p.add_argument("dataset", metavar="DATASET_DIR", help="folder with images/ and masks/ or boxes/")
    p.add_argument(
        "--backend",
        nargs="+",
        default=["otsu-flood"],
        help="backend name(s): otsu-flood, oracle, sam2.1-tiny, ... (default otsu-flood)",
    )
    p.add_argument("--mode", choices=("point", "box"), default="point", help="first prompt")
    p.add_argument("--clicks", type=int, default=8, help="corrective clicks per object (default 8)")
    p.add_argument("--max-objects", type=int, metavar="N", help="at most N objects per image")
    p.add_argument("--min-size", type=int, default=0, metavar="PX", help="skip smaller objects")
    p.add_argument("--images", nargs="+", metavar="NAME", help="only these images (file stems)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    p.add_argument("--seed", type=int, default=0, help="seed for the --max-objects draw")
    p.add_argument("--adapt", type=int, metavar="K",
                   help="in-session adaptation: the simulated user commits K true objects per "
                   "image, the offline promptable model adapts to them (--adapt-seconds), then "
                   "the remaining objects are scored before and after, after with the committed "
                   "objects' size hint as the Label dock does (microseg-promptable only)")
    p.add_argument("--adapt-seconds", type=float, default=120.0, metavar="S",
                   help="wall-time budget of the adaptation (default 120)")
    p.add_argument("--adapt-lr", type=float, metavar="LR", help="adaptation learning rate")
    p.add_argument("--no-size-hint", action="store_true",
                   help="with --adapt: do not size first clicks by the committed objects (the Label "
                   "dock does by default)")
    p.add_argument("--size-prior", type=int, metavar="K",
                   help="the simulated user commits K true objects per image; the rest are "
                   "scored without and with their median area as the first click's size hint")
    p.add_argument("--json", metavar="OUT.json", help="write the full results as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="plot mean IoU against clicks")
    p.add_argument(
        "--random-sam2-weights-for-testing",
        action="store_true",
        help="TEST ONLY: build SAM2 backends with random weights to check the harness "
        "end to end; the scores mean nothing",
    )
    p.set_defaults(func=run)


def _backend(name: str, random_sam2: bool = False):
    """A backend, or for the oracle a per-sample factory."""
    from ..core.prompting.registry import make_backend

    if name == "oracle":
        return lambda sample: make_backend("oracle", labels=sample.target)
    if random_sam2 and name.startswith("sam2"):
        print(f"WARNING: {name} has RANDOM weights (test only): its scores mean nothing.")
        return make_backend(name, allow_random_weights=True)
    return make_backend(name)


def run(args) -> int:
    """Evaluate every requested backend and print one table."""
    from ..core.prompting.eval_data import detect_layout, load_dataset
    from ..core.prompting.evaluation import evaluate_boxes, evaluate_clicks, plot_curves

    if args.clicks < 0:
        raise MicrosegError("--clicks must be 0 or more.")
    check_outputs([], [("--json", args.json), ("--plot", args.plot)])
    layout = detect_layout(args.dataset)
    if layout == "boxes" and "oracle" in args.backend:
        raise MicrosegError("The oracle needs instance masks; this dataset only has boxes.")
    backends = {  # fail before loading images
        name: _backend(name, args.random_sam2_weights_for_testing) for name in args.backend
    }
    _, samples = load_dataset(args.dataset, args.images, args.limit)
    dataset = Path(args.dataset).name
    if args.adapt is not None:
        return _run_adapt(args, layout, samples, dataset)
    if args.size_prior is not None:
        return _run_size_prior(args, backends, samples, dataset)

    def progress(name, i, n):
        print(f"  [{i + 1}/{n}] {name}", file=sys.stderr, flush=True)

    results = []
    for name, backend in backends.items():
        print(f"{name} on {dataset} ({len(samples)} images)", file=sys.stderr, flush=True)
        if layout == "boxes":
            r = evaluate_boxes(backend, samples, args.mode, args.max_objects, args.seed, progress)
        else:
            r = evaluate_clicks(
                backend, samples, args.mode, args.clicks, args.min_size, args.max_objects,
                args.seed, progress,
            )
        r["dataset"] = dataset
        results.append(r)
    print(format_table(results))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"dataset": dataset, "results": results}, indent=1))
    if args.plot:
        if layout == "boxes":
            print("no click curve for a box-only dataset; --plot ignored", file=sys.stderr)
        else:
            plot_curves(results, args.plot, title=dataset)
    return 0


def _run_adapt(args, layout, samples, dataset) -> int:
    """``--adapt K``: score the remaining objects before and after in-session adaptation."""
    from ..core.promptable.adaptation import DEFAULT_LR, evaluate_adaptation

    if layout != "masks":
        raise MicrosegError("--adapt needs instance masks; this dataset only has boxes.")
    if args.backend != ["microseg-promptable"]:
        raise MicrosegError("--adapt adapts the offline model: use --backend microseg-promptable.")
    if args.adapt < 1:
        raise MicrosegError("--adapt K needs K >= 1 committed objects per image.")
    r = evaluate_adaptation(
        samples, args.adapt, seconds=args.adapt_seconds, max_objects=args.max_objects,
        n_corrective=args.clicks, seed=args.seed, lr=args.adapt_lr or DEFAULT_LR,
        size_hint=not args.no_size_hint,
    )
    r["dataset"] = dataset
    print(f"adaptation: {r['reason']} ({r['adapt_seconds']} s, {r['steps']} steps)")
    names = {"before": "before adaptation", "hinted": "size hint only", "after": "after adaptation"}
    keys = ("before", "hinted", "after") if r["size_hint"] else ("before", "after")
    for key in keys:
        r[key]["backend"] = f"microseg-promptable ({names[key]})"
        r[key]["dataset"] = dataset
    print(format_table([r[key] for key in keys]))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(r, indent=1))
    return 0


def _run_size_prior(args, backends, samples, dataset) -> int:
    """``--size-prior K``: the remaining objects without and with the committed objects' size."""
    from ..core.prompting.size_prior import MIN_HINT_OBJECTS, evaluate_size_prior

    if args.size_prior < MIN_HINT_OBJECTS:
        raise MicrosegError(f"--size-prior K needs K >= {MIN_HINT_OBJECTS}: fewer committed "
                            "objects give no size hint.")
    out = []
    for name, backend in backends.items():
        if callable(backend) and not hasattr(backend, "predict"):
            raise MicrosegError("--size-prior does not take the oracle.")
        r = evaluate_size_prior(backend, samples, args.size_prior, mode=args.mode,
                                n_corrective=args.clicks, max_objects=args.max_objects,
                                seed=args.seed)
        for key in ("without", "with"):
            r[key]["backend"] = f"{name} ({key} the size of {args.size_prior} committed objects)"
            r[key]["dataset"] = dataset
        print(format_table([r["without"], r["with"]]))
        out.append({"backend": name, **r})
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"dataset": dataset, "results": out}, indent=1))
    return 0


def format_table(results: list[dict]) -> str:
    """A plain-text table of the results (one row per backend)."""
    lines = []
    for r in results:
        head = f"{r['backend']} on {r.get('dataset', '?')}, {r['mode']}: {r['n_objects']} objects"
        lines.append(head)
        if r["mode"].endswith("-bbox"):
            if r["n_objects"]:
                lines.append(
                    f"  mean bbox IoU {r['mean_box_iou']:.3f}  IoU>=0.5 {r['box_iou_50']:.1%}  "
                    f"IoU>=0.75 {r['box_iou_75']:.1%}  empty {r['empty']}"
                )
            continue
        if not r["n_objects"]:
            continue
        curve = "  ".join(f"{v:.3f}" for v in r["mean_iou"])
        lines.append(f"  mean IoU per click: {curve}")
        lines.append(
            f"  NoC@85 {r['noc85']:.2f} (failed {r['failures85']})  "
            f"NoC@90 {r['noc90']:.2f} (failed {r['failures90']})  [max {r['max_clicks']}]"
        )
    return "\n".join(lines)
