"""``microseg gui``: open napari with the plugin docked and a micrograph loaded."""

from __future__ import annotations


def register(sub) -> None:
    """Add the ``gui`` subcommand."""
    p = sub.add_parser("gui", help="open napari with every napari-microseg widget docked")
    p.add_argument("images", nargs="*", help="micrographs to open (default: a synthetic sample)")
    p.add_argument("--sample", default="tem_loops", help="sample to open when no image is given")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window and quit")
    p.set_defaults(func=run)


def run(args) -> int:
    """Start napari (blocks until the window is closed)."""
    import napari
    from qtpy.QtCore import QTimer

    from ..gui.launch import open_viewer

    viewer = open_viewer(args.images, sample=args.sample)
    QTimer.singleShot(300, viewer.reset_view)  # once the window has its size
    if args.screenshot:

        def shoot():
            viewer.screenshot(args.screenshot, canvas_only=False)
            print(f"screenshot: {args.screenshot}")
            viewer.close()

        QTimer.singleShot(1500, shoot)
    napari.run()
    return _end_background_jobs()


def _end_background_jobs(msecs: int = 5_000) -> int:
    """Stop the workers still running when the window closed (else exit waits for them).

    Qt's application waits at exit for every background thread, so a long job the
    window no longer shows (a batch run, a prediction) would keep the process alive
    and then abort it; jobs that do not stop within ``msecs`` end with the process
    (their files are written atomically, so none is left half-written).
    """
    import os
    import sys

    from ..gui.workers import stop_workers

    left = stop_workers(msecs=msecs)
    if left:
        print(f"microseg gui: stopped with the window: {', '.join(left)}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
