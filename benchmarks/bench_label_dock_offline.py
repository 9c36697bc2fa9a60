"""Benchmark: the Label dock's GUI-thread costs with the offline model on a 2048 x 2048 frame.

The default user path: the shipped offline promptable model (no SAM2 weights), a real
2048² TEM frame of the Ti set when ``../shared/data`` is there (else a synthetic
2048² TEM image), a labels layer of that size. A QTimer fires every 10 ms in the GUI
thread; the largest gap between ticks is the worst event-loop stall (target 100 ms or
less). Measured over 15 click -> preview -> commit cycles (a click at each of 15 true
defects, the preview committed as is), then 5 undos; reports the click-to-preview
latency and the longest stall of clicks, commits and undos. Needs a display: run under
``xvfb-run -a``. Prints one JSON object.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_label_dock_offline.py
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

TI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ti-insitu-tem-defects"
FRAME = "Chip-4-Heat-1-Frame-896"


def scene():
    """(image, instance labels, source) of a 2048² frame."""
    img, masks = TI / "images" / f"{FRAME}.png", TI / "masks" / f"{FRAME}.png"
    if img.exists() and masks.exists():
        from skimage.io import imread

        return imread(img), imread(masks).astype(np.int32), f"Ti {FRAME}"
    from napari_microseg.core.synth import generate

    s = generate("tem-loops", shape=(2048, 2048), seed=0)
    return s.image, np.asarray(s.labels, np.int32), "synthetic tem-loops"


def main() -> dict:
    import napari
    from gui_clock import GuiClock
    from qtpy.QtWidgets import QApplication

    from napari_microseg.core.promptable.backend import PromptableBackend
    from napari_microseg.gui.labeling import LabelingController

    app = QApplication.instance() or QApplication([])
    img, truth, source = scene()
    viewer = napari.Viewer(show=True)
    image = viewer.add_image(img, name="frame")
    target = viewer.add_labels(np.zeros(img.shape[:2], np.int32), name="frame labels")
    ctl = LabelingController(viewer, PromptableBackend.load_default())
    clock = GuiClock(app)
    ticks, run_until = clock.ticks, clock.run_until

    def stall_ms(action) -> float:
        """Longest event-loop stall (ms) from ``action`` and what it queues (0.3 s)."""
        return clock.stall_ms(action, settle=0.3)

    run_until(lambda: len(ticks) > 20, 5)
    ctl.set_target(image, target)
    run_until(lambda: ctl.ready, 120)
    ids = [i for i in np.unique(truth) if i > 0]
    rng = np.random.default_rng(0)
    picks = rng.choice(ids, size=15, replace=False)
    clicks = []  # each defect's interior point, computed before any timing
    for t in picks:
        dist = ndi.distance_transform_edt(truth == t)
        clicks.append(np.unravel_index(int(np.argmax(dist)), dist.shape))
    latency, click_stall, commit_stall = [], [], []
    for r, c in clicks:
        t0 = time.perf_counter()
        ctl.add_click((float(r), float(c)), 1)
        run_until(lambda: not ctl._busy and not ctl._dirty and ctl._last_pred is not None, 30)
        app.processEvents()
        latency.append(time.perf_counter() - t0)
        run_until(lambda t0=t0: time.perf_counter() - t0 > 0.3, 1.0)  # what the preview queues
        click_stall.append(1000 * float(np.diff([t0, *[t for t in ticks if t > t0]]).max()))  # from the click
        commit_stall.append(stall_ms(ctl.commit))
    undo_stall = [stall_ms(ctl.undo) for _ in range(5)]
    clock.stop()
    viewer.close()
    out = {"benchmark": "label_dock_offline", "image": list(img.shape[:2]), "source": source,
           "model": "microseg-promptable (shipped)",
           "click_to_preview_median_ms": round(1000 * float(np.median(latency)), 1),
           "click_max_stall_ms": round(max(click_stall), 1),
           "click_stalls_ms": [round(x, 1) for x in click_stall],
           "click_to_preview_ms": [round(1000 * x, 1) for x in latency],
           "commit_stalls_ms": commit_stall, "commit_max_stall_ms": max(commit_stall), "commit_median_stall_ms": float(np.median(commit_stall)),
           "undo_max_stall_ms": max(undo_stall), "undo_median_stall_ms": float(np.median(undo_stall)),
           "load_avg_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
           "napari": napari.__version__, "platform": platform.platform()}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
