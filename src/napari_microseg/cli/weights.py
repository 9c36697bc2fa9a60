"""``microseg weights``: list, download and locate SAM2 / SAM2.1 checkpoints."""

from __future__ import annotations

import sys

from ..core import weights as W


def register(sub) -> None:
    """Add the ``weights`` subcommand (``list``, ``download MODEL``, ``path MODEL``)."""
    p = sub.add_parser("weights", help="list, download or locate SAM2 model weights")
    act = p.add_subparsers(dest="action", metavar="ACTION")
    act.required = True
    ls = act.add_parser("list", help="known models, their files and whether they are installed")
    ls.set_defaults(func=run_list)
    dl = act.add_parser("download", help="download a model's checkpoint (verified by SHA-256)")
    dl.add_argument("model", help=f"model id, e.g. {W.DEFAULT_MODEL}")
    dl.add_argument("--dir", help="folder to download into (default: the weights folder)")
    dl.add_argument("--url", help="download from this mirror instead")
    dl.add_argument("--sha256", help="expected SHA-256 of the file (for a mirror or a new release)")
    dl.add_argument(
        "--no-verify",
        action="store_true",
        help="accept a file whose SHA-256 is not known (prints the hash it got)",
    )
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=run_download)
    pa = act.add_parser(
        "path", help="where a model's checkpoint is (exit 1 and say where to put it if missing)"
    )
    pa.add_argument("model", help=f"model id, e.g. {W.DEFAULT_MODEL}")
    pa.set_defaults(func=run_path)


def run_list(args) -> int:
    """Print one line per model."""
    print(f"weights folder: {W.weights_dir()}")
    for spec in W.MODELS.values():
        try:
            found = W.find_weights(spec.model_id)
        except W.WeightsMissingError:
            found = None
        state = f"installed: {found}" if found else "missing"
        known = "sha256 known" if spec.sha256 else "no sha256 recorded"
        print(
            f"  {spec.model_id:<17} {spec.filename:<26} ~{spec.approx_mb:>4} MB  "
            f"{known:<19} {state}"
        )
    return 0


def run_download(args) -> int:
    """Download (or confirm) one checkpoint."""
    path = W.download(
        args.model,
        dest=args.dir,
        url=args.url,
        sha256=args.sha256,
        verify=not args.no_verify,
        progress=not args.quiet,
    )
    print(path)
    if args.no_verify and not (args.sha256 or W.get_spec(args.model).sha256):
        print(f"unverified download; sha256 {W.sha256_file(path)}", file=sys.stderr)
    return 0


def run_path(args) -> int:
    """Print the checkpoint's path, or the message saying where to place it."""
    found = W.find_weights(args.model)
    if found is None:
        print(W.missing_weights_message(args.model), file=sys.stderr)
        print(W.default_path(args.model))
        return 1
    print(found)
    return 0
