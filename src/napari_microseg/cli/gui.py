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
    return 0
