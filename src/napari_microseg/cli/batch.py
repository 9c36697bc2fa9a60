"""``microseg batch``: one recipe over many micrographs, on a local or remote Dask cluster."""

from __future__ import annotations

import sys


def register(sub) -> None:
    """Add the ``batch`` subcommand."""
    p = sub.add_parser(
        "batch",
        help="apply a recipe to many micrographs (Dask); labels, tables, summary and report",
        description="Segment and measure every INPUT (files, folders, glob patterns) with RECIPE "
        "(saved from the Predict or Measure dock, or by `microseg recipe`). Writes into --out, per "
        "image, NAME_labels.tif (+ .labels.json), NAME_objects.csv and NAME.record.json; for the "
        "run, summary.csv, run.json and report.html (covering every image the folder holds for RECIPE). "
        "Images already done with the same recipe, input content and calibration are skipped "
        "(use --overwrite to redo). A folder holding another recipe's results, or in use by "
        "another batch, is refused. Exit code 1 when any image failed.",
    )
    p.add_argument("recipe", help="recipe file (.json, .yaml)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="micrographs, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="local Dask worker processes (default 2, at most the CPU cores; 0 or 1 = this "
        "process, as are batches of at most 4 images to compute)",
    )
    p.add_argument(
        "--threads-per-worker",
        type=int,
        default=1,
        metavar="N",
        help="threads per worker process, torch's included (default 1)",
    )
    p.add_argument(
        "--scheduler",
        metavar="URL",
        help="use a running Dask scheduler (tcp://HOST:PORT) instead of a local cluster",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="redo images already done, and replace another recipe's results in --out",
    )
    p.add_argument("--device", default="cpu", help="torch device in the workers (default cpu)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the batch with a progress bar; print where the results are."""
    from tqdm import tqdm

    from ..core.batch import Recipe, run_batch
    from ..core.errors import MicrosegError

    if args.workers < 0 or args.threads_per_worker < 1:
        raise MicrosegError("--workers must be >= 0 and --threads-per-worker >= 1.")
    recipe = Recipe.load(args.recipe)
    bar = None
    failed = 0

    def progress(done, total, result):
        nonlocal bar, failed
        if bar is None:
            bar = tqdm(total=total, unit="image", desc="microseg batch", file=sys.stderr)
        failed += result.status == "error"
        bar.set_postfix(failed=failed, refresh=False)
        bar.update(1)

    try:
        result = run_batch(
            recipe,
            args.inputs,
            args.out,
            workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            scheduler=args.scheduler,
            overwrite=args.overwrite,
            device=args.device,
            progress=progress,
            report=not args.no_report,
        )
    finally:
        if bar is not None:
            bar.close()
    info = result.info
    print(
        f"{info['n_ok']} processed, {info['n_skipped']} skipped (already done), "
        f"{info['n_failed']} failed of {info['n_inputs']} in {info['wall_s']:.1f} s"
        + (
            f"; the folder holds {info['n_earlier']} more from earlier runs"
            if info.get("n_earlier")
            else ""
        )
    )
    for r in result.failed:
        print(f"{r.image}: error: {r.error}", file=sys.stderr)
    print(f"summary: {result.out_dir / 'summary.csv'}")
    if result.report is not None:
        print(f"report: {result.report}")
    return 1 if result.failed else 0
