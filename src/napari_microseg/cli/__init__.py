"""The ``microseg`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit code. Subcommands call the
same core functions as the napari widgets. A :class:`MicrosegError` or an
:class:`OSError` (missing file, permission denied, disk full, ...) ends the
program with one line ``microseg CMD: error: ...`` on stderr and exit code 1;
each warning is shown as one line ``microseg CMD: warning: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

from .. import __version__
from ..core.errors import MicrosegError

#: Subcommand modules, in the order ``microseg --help`` lists them.
COMMANDS = (
    "info", "synth", "labels", "measure", "stats", "compare", "evaluate", "prompt_eval",
    "train_promptable", "weights", "find_similar", "classify_like", "fewshot_eval",
    "predict", "train", "two_stage", "recipe", "batch", "gui",
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


def os_error_message(e: OSError) -> str:
    """One line for an :class:`OSError`: ``PATH: reason`` (the path(s) first when known)."""
    reason = e.strerror or str(e) or type(e).__name__
    paths = [p for p in (e.filename, getattr(e, "filename2", None)) if p is not None]
    if not paths:
        return _one_line(reason)
    return _one_line(f"{os.fsdecode(paths[0])}: {reason}"
                     + (f" (-> {os.fsdecode(paths[1])})" if len(paths) > 1 else ""))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@contextlib.contextmanager
def cli_warnings(command: str):
    """Show every warning raised inside the block as one line ``microseg CMD: warning: MSG``."""

    def show(message, category, filename, lineno, file=None, line=None):
        stream = file if file is not None else sys.stderr
        try:
            print(f"microseg {command}: warning: {_one_line(message)}", file=stream, flush=True)
        except (OSError, ValueError):  # stderr closed: nothing sensible left to do
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None) -> int:
    """Run ``microseg`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli_warnings(args.command):
        try:
            return int(args.func(args) or 0)
        except MicrosegError as e:
            print(f"microseg {args.command}: error: {_one_line(e)}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"microseg {args.command}: error: {os_error_message(e)}", file=sys.stderr)
            return 1
        except MemoryError:
            print(f"microseg {args.command}: error: out of memory; try a smaller image or tile",
                  file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"microseg {args.command}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
