"""Statistics dock: event-loop stalls and wall time of a study of open fields; prints JSON.

A real napari window with ``--fields`` calibrated image + labels pairs (synthetic TEM
loops of ``--size`` px, the generator's exact labels), the Statistics dock docked. The dock
builds the study (measure every field in a worker, core study, phase fractions, plots
rendered off the GUI thread), then the class picker switches to another class (its plots
are rendered in a worker), then A / B are compared. A 10 ms QTimer in the GUI thread
measures the stalls: the largest gap between two ticks, and how many gaps exceed 100 ms.
The idle gap (no work) is measured first: on a loaded machine it is the floor.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_study_gui.py [--fields 12] [--size 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _gaps(ticks, t0, t1):
    t = np.array([x for x in ticks if t0 <= x <= t1])
    g = np.diff(t) if t.size > 1 else np.zeros(1)
    return {"wall_s": round(t1 - t0, 3), "max_gap_ms": round(1000 * float(g.max()), 1),
            "gaps_over_100ms": int((g > 0.1).sum())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=12)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(__file__))
    import napari
    from gui_clock import GuiClock
    from qtpy.QtWidgets import QApplication

    from napari_microseg.core.synth import generate
    from napari_microseg.gui.layer_data import labels_layer
    from napari_microseg.gui.widgets.study import StudyWidget
    from napari_microseg.gui.workers import stop_workers

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    objects = 0
    for i in range(args.fields):
        s = generate("tem-loops", shape=(args.size, args.size), seed=i)
        ps = s.pixel_size
        viewer.add_image(s.image, name=f"field{i:02d}", scale=ps.scale, units=("nm", "nm"),
                         metadata={"pixel_size": ps.to_dict()})
        data, kw, _ = labels_layer(s.labels, instance_classes=s.instance_classes, classes=s.classes,
                                   pixel_size=ps, name=f"field{i:02d} labels",
                                   metadata={"source_image": f"field{i:02d}"})
        viewer.add_labels(data, **kw)
        objects += int(len(np.unique(s.labels)) - 1)
    w = StudyWidget(viewer)
    viewer.window.add_dock_widget(w, area="right", name="Statistics")
    clock = GuiClock(app)
    clock.run_until(lambda: w._plot_worker is None or w._plot_worker.is_running is False, 30)
    t0 = time.perf_counter()
    clock.run_until(lambda: time.perf_counter() - t0 > 3.0, 4)  # the window settles (first paints)
    t0 = time.perf_counter()
    clock.run_until(lambda: time.perf_counter() - t0 > 2.0, 3)
    idle = _gaps(clock.ticks, t0, time.perf_counter())
    out = {"fields": args.fields, "size_px": args.size, "objects": objects, "idle": idle,
           "load_avg": os.getloadavg()[0]}
    t0 = time.perf_counter()
    w.build()
    clock.run_until(lambda: w.outcome is not None and w.build_button.enabled, 600)
    out["build_study"] = _gaps(clock.ticks, t0, time.perf_counter())
    pooled = w.outcome.study.pooled.set_index("class_name").loc["all"]
    out["study"] = {"fields": int(pooled["n_fields"]), "objects_counted": int(pooled["count"]),
                    "density_per_um2": round(float(pooled["density"]), 2),
                    "density_ci": [round(float(pooled["density_ci_low"]), 2), round(float(pooled["density_ci_high"]), 2)]}
    other = [c for c in w.outcome.study.classes if c != "all"]
    if other:
        t0 = time.perf_counter()
        w.klass.value = other[0]
        clock.run_until(lambda: w.shown_class == other[0], 120)
        out["switch_class"] = _gaps(clock.ticks, t0, time.perf_counter())
    for r in range(w.fields.rowCount()):
        if r % 2:
            w.set_field(w.fields.item(r, 0).text(), group="B")
    t0 = time.perf_counter()
    w.compare()
    clock.run_until(lambda: w.comparison is not None and w.build_button.enabled, 600)
    out["compare"] = _gaps(clock.ticks, t0, time.perf_counter())
    clock.stop()
    stop_workers()
    viewer.close()
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
