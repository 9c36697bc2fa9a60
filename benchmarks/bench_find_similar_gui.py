"""Benchmark: the Find similar dock's work on the GUI thread, on a 2048 x 2048 image.

A QTimer fires every 10 ms in the GUI thread; the largest gap between two of
its ticks is the worst event-loop stall (target: 100 ms or less). Measured
while the finder works in its worker, then for each review action the user
takes on the GUI thread: showing the candidates layer (first time and a next
round), moving the score slider, accepting all above, accepting one by click,
undoing (seconds of the action and its repaint; for accept all and undo also the
longest stall, ``*_max_stall_ms``, with work the action queues for later). The finder is scripted (``N`` known disks with scores, a 2 s
"search"): the dock's own costs do not depend on the method; ``--real`` runs
the real :class:`~napari_microseg.core.fewshot.FindSimilar` instead (its search
time is then reported too). Needs a display: run under ``xvfb-run -a``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass

import numpy as np

SIDE = 2048
N = 600


@dataclass
class _Candidates:
    labels: np.ndarray
    scores: np.ndarray
    cancelled: bool = False


def scene(seed: int = 0):
    """Dark disks (radius 6..12 px) on a noisy background; ids 1..N."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    truth = np.zeros((SIDE, SIDE), np.int32)
    grid = int(np.ceil(np.sqrt(N)))
    step = SIDE // grid
    for i in range(N):
        r, c = (i // grid) * step + step // 2, (i % grid) * step + step // 2
        truth[disk((r, c), rng.uniform(6, 12), shape=truth.shape)] = i + 1
    img = np.where(truth > 0, 70.0, 180.0) + rng.normal(0, 8, truth.shape)
    return img.clip(0, 255).astype(np.uint8), truth


class ScriptedFinder:
    """Proposes every uncommitted disk, scored by id, after a 2 s 'search' in small steps."""

    def __init__(self, image, **_):
        self.truth = scene()[1]

    def set_exemplars(self, labels, ids=None, committed=None):
        self.committed = np.asarray(labels) > 0

    def propose(self, progress=None, cancel=None):
        for k in range(20):
            time.sleep(0.1)
            if progress is not None:
                progress((k + 1) / 20)
        keep = np.setdiff1d(np.unique(self.truth[~self.committed]), np.unique(self.truth[self.committed]))
        keep = keep[keep > 0]
        lut = np.zeros(N + 1, np.int32)
        lut[keep] = np.arange(1, len(keep) + 1)
        return _Candidates(lut[self.truth], np.linspace(1.0, 0.0, len(keep)))

    def review(self, accept=(), reject=()):
        pass


def main(real: bool = False) -> dict:
    import napari
    from gui_clock import GuiClock
    from qtpy.QtWidgets import QApplication

    import napari_microseg.gui.widgets.find_similar as fsw
    from napari_microseg.gui.layer_data import SOURCE_IMAGE_KEY, labels_layer

    app = QApplication.instance() or QApplication([])
    img, truth = scene()
    if not real:
        fsw.make_finder = ScriptedFinder
    viewer = napari.Viewer(show=True)
    image = viewer.add_image(img, name="scene")
    exemplars = [1, 2, 3, 4, 5]
    data, kw, _ = labels_layer(np.where(np.isin(truth, exemplars), truth, 0).astype(np.int32),
                               instance_classes={i: 3 for i in exemplars}, name="scene labels",
                               metadata={SOURCE_IMAGE_KEY: "scene"})
    labels = viewer.add_labels(data, **kw)
    dock = fsw.FindSimilarWidget(viewer)
    viewer.window.add_dock_widget(dock)
    dock.image.value, dock.labels.value, dock.klass.value = image, labels, 3

    clock = GuiClock(app)
    ticks, run_until = clock.ticks, clock.run_until

    def gui(action) -> float:
        """Seconds ``action`` holds the GUI thread (including the repaint it triggers)."""
        t0 = time.perf_counter()
        action()
        app.processEvents()
        return round(time.perf_counter() - t0, 4)

    stall_ms = clock.stall_ms

    run_until(lambda: len(ticks) > 20, 5)
    out = {"benchmark": "find_similar_gui", "image": f"{SIDE}x{SIDE}", "finder": "real" if real else "scripted"}
    mark, t0 = len(ticks), time.perf_counter()
    shown = {}
    real_show = dock._show

    def timed_show(cands):  # the result handler runs on the GUI thread: time it apart
        shown["s"] = gui(lambda: real_show(cands))

    dock._show = timed_show
    dock.find()
    run_until(lambda: "s" in shown)
    done = time.perf_counter()
    worker_ticks = [t for t in ticks[mark:] if t < done - shown["s"]]
    out["search_s"] = round(done - t0 - shown["s"], 2)
    out["max_gap_during_search_ms"] = round(1000 * float(np.diff(worker_ticks).max()), 1)
    out["show_first_candidates_s"] = shown["s"]
    rv = dock.review
    out["candidates"] = len(rv.scores)
    def slide(v):  # the dock recolours once the slider rests (debounced): time the recolour itself
        dock.score.value = v
        dock._apply_score()

    out["slider_move_s"] = max(gui(lambda v=v: slide(v)) for v in (0.9, 0.5, 0.2))
    out["accept_above_s"] = gui(dock.accept_above)
    out["accepted"] = len(rv.accepted)
    dock.score.value = 0.0
    ids = rv.visible_ids()
    if ids.size:
        r, c = np.argwhere(np.asarray(rv.candidates.labels) == ids[0])[0]
        out["click_accept_s"] = gui(lambda: rv._on_click(rv.layer, (r, c), type("E", (), {"button": 1,
                                                                                          "modifiers": []})()))
    out["undo_s"] = gui(dock.undo)
    out["accept_above_max_stall_ms"] = stall_ms(dock.accept_above)
    out["undo_max_stall_ms"] = stall_ms(dock.undo)
    shown.clear()
    dock.next_round()
    run_until(lambda: "s" in shown)
    out["show_next_round_s"] = shown["s"]
    run_until(lambda: dock.worker is None, 30)
    clock.stop()
    out["load_avg_1min"] = os.getloadavg()[0]
    out["cpus"] = os.cpu_count()
    out["platform"] = platform.platform()
    out["napari"] = napari.__version__
    viewer.close()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", action="store_true", help="run the real FindSimilar (slow) instead of a script")
    print(json.dumps(main(real=ap.parse_args().real), indent=2))
