"""``microseg synth``: write synthetic micrographs with exact ground truth."""

from __future__ import annotations

from collections import Counter

from ..core.errors import MicrosegError
from ..core.output_paths import check_output_dir
from ..core.synth import KINDS, generate, write_sample


def register(sub) -> None:
    """Add the ``synth`` subcommand."""
    p = sub.add_parser(
        "synth",
        help="write synthetic micrographs with labels and JSON ground truth",
        description="Write N synthetic micrographs (seeds SEED..SEED+N-1), each as an ImageJ "
        "TIFF calibrated in nm, labels TIFF + JSON sidecar, and <stem>_truth.json.",
    )
    p.add_argument("--kind", choices=KINDS, default="tem-loops",
                   help="what to draw (sem-corrosion: pits, corroded areas and grain-boundary "
                   "attack, classes 6-8)")
    p.add_argument("--n", type=int, default=1, metavar="N", help="number of samples (default 1)")
    p.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("ROWS", "COLS"),
                   help="image size in pixels (default 512 512)")
    p.add_argument("--pixel-size", type=float, default=None, metavar="NM",
                   help="pixel size in nm (default: the kind's own, 0.5 for TEM)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--objects", type=int, default=None, metavar="K",
                   help="objects per image (default: the kind's typical coverage)")
    p.add_argument("--dtype", choices=("uint8", "uint16"), default="uint8")
    p.add_argument("--no-noise", action="store_true", help="no detector noise")
    p.add_argument("--no-nuisances", action="store_true",
                   help="flat background: no texture, bends, dislocation lines or blur")
    p.add_argument("--prefix", default=None, help="file-name prefix (default: the kind)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    """Generate and write the samples, one line per sample on stdout."""
    if args.n < 1:
        raise MicrosegError("--n must be at least 1")
    if min(args.size) < 16:
        raise MicrosegError("--size must be at least 16 16")
    if args.pixel_size is not None and not args.pixel_size > 0:
        raise MicrosegError("--pixel-size must be positive")
    if args.seed < 0:
        raise MicrosegError("--seed must be non-negative")
    prefix = args.prefix or args.kind
    if not prefix or any(c in prefix for c in "/\\") or prefix in (".", ".."):
        raise MicrosegError("--prefix must be a plain file-name prefix (no folders).")
    check_output_dir(args.out, "--out")
    for seed in range(args.seed, args.seed + args.n):
        s = generate(
            args.kind, shape=tuple(args.size), pixel_size_nm=args.pixel_size, seed=seed,
            n_objects=args.objects, noise=not args.no_noise, nuisances=not args.no_nuisances,
            dtype=args.dtype,
        )
        paths = write_sample(s, args.out, stem=f"{prefix}_{seed:04d}")
        counts = Counter(t["class_name"] for t in s.truth)
        summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        print(f"{paths['image']}: {s.kind}, {s.image.shape[0]} x {s.image.shape[1]} px, "
              f"{s.pixel_size.x_nm:g} nm/px, seed {seed}, {len(s.truth)} instances"
              f"{' (' + summary + ')' if summary else ''}")
    return 0
