"""The ``microseg`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit code. Subcommands call the
same core functions as the napari widgets. A :class:`MicrosegError` ends the
program with one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..core.errors import MicrosegError

#: Subcommand modules, in the order ``microseg --help`` lists them.
COMMANDS = (
    "info", "synth", "labels", "measure", "evaluate", "prompt_eval", "train_promptable", "weights",
    "predict", "train", "recipe", "batch", "gui",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="microseg",
        description="Calibrated defect segmentation and statistics for micrographs.",
    )
    parser.add_argument("--version", action="version", version=f"napari-microseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``microseg`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MicrosegError as e:
        print(f"microseg {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"microseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
