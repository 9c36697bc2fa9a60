"""Progress bars for long CLI steps: on stderr, and only when stderr is a terminal."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def step_progress(desc: str, unit: str = "tile"):
    """Yield a ``progress(done, total)`` callback drawing a tqdm bar on stderr.

    The bar appears on the first call (so its total is known), is hidden when
    stderr is not a terminal (logs, tests) and is removed when the block ends.
    """
    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, disable=None,
                       leave=False, mininterval=0.5)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()
