"""Label five, find the rest, measure: the Find similar journey on a real micrograph.

A user opens a real bright-field TEM image of irradiated 316L steel (creme image 10,
read in place from ``../shared/data``; skipped with a reason when absent), types its
pixel size, commits five loops with one click each (the default offline model), asks
the Find similar dock for the others (the real method, the promptable model drawing
the masks), accepts those above the score slider, undoes and redoes that step, then
measures and exports. The exported numbers are checked against exact truth computed
from the layer's pixels and the typed pixel size: every object is a row, no class is
dropped, areas are pixel counts times the pixel size squared, and densities divide by
the field's area. The five committed loops are never changed by the proposals.

Screenshots: ``test-artifacts/journey_find_similar/NN_step.png``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.io import imread

from journey_helpers import (
    Dialogs,
    Journey,
    choose,
    classes_of,
    click_button,
    export_table,
    helper_layer,
    interior_point,
    measure_in_dock,
    menu_action,
    pixel_size_of,
    read_table,
    type_text,
    zoom_on,
)
from napari_events import click, press

pytestmark = pytest.mark.gui
CREME = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "creme-316L-loops"
IMAGE = "10"  # one of the images the offline model never trained on
NM = 0.390625  # 200 nm field of view over 512 px (the dataset's README)
KLASS = "<111> loop"
N_COMMIT = 5
WAIT = 120_000  # ms: model preparation and the search, on a busy 2-core machine

needs_data = pytest.mark.skipif(not (CREME / "images" / f"{IMAGE}.png").exists(),
                                reason=f"real data not found at {CREME} (see ../shared/data/README.md)")
needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")


def truth_loops() -> np.ndarray:
    """Instance labels of image 10's loops (connected components of the binary mask)."""
    return ndi.label(imread(CREME / "masks" / f"{IMAGE}.png") > 0)[0]


def f1_at(labels: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> tuple[float, int]:
    """Detection F1 (one-to-one, IoU at least ``iou``) of ``labels`` against ``truth``, and the matches."""
    from napari_microseg.core.evaluate import match_instances

    m = match_instances(labels, truth, iou)
    return float(m.f1), len(m.matched_true)


@needs_data
@needs_display
def test_find_similar_journey_on_a_real_micrograph(journey_window, journey_env, qtbot, monkeypatch,
                                                    artifacts_dir):
    viewer, docks = journey_window
    dialogs = Dialogs(monkeypatch)
    j = Journey(viewer, qtbot, artifacts_dir / "journey_find_similar")
    out = journey_env / "outputs"
    out.mkdir()
    truth = truth_loops()
    assert {"Label", "Find similar", "Calibration", "Measure"} <= set(docks), docks

    # -- 1. open the micrograph, type its pixel size ------------------------------------------
    with j.step("open_and_calibrate"):
        dialogs.open_files.append([str(CREME / "images" / f"{IMAGE}.png")])
        menu_action(viewer.window, "Open File(s)...").trigger()
        qtbot.waitUntil(lambda: IMAGE in viewer.layers, timeout=WAIT)
        img = viewer.layers[IMAGE]
        cal = docks["Calibration"]
        j.show_dock(cal)
        choose(cal.image, img.name)
        type_text(qtbot, cal.pixel_size, f"{NM} nm")
        if hasattr(cal, "set_button"):
            click_button(qtbot, cal.set_button)
        j.check(pixel_size_of(img)[0] == NM, f"typed {NM} nm/px, the layer carries {pixel_size_of(img)}")

    # -- 2. commit five loops, one click each -------------------------------------------------
    label = docks["Label"]
    areas = np.bincount(truth.ravel())
    picks = [int(i) for i in np.argsort(areas[1:])[::-1][:N_COMMIT] + 1]  # the five largest loops
    with j.step("label_five"):
        zoom_on(viewer, qtbot, img)
        j.show_dock(label)
        choose(label.image, img.name)
        click_button(qtbot, label.start_button)
        qtbot.waitUntil(lambda: f"{img.name} labels" in viewer.layers
                        and helper_layer(viewer, img.name, "prompts") is not None, timeout=WAIT)
        qtbot.waitUntil(lambda: "click on objects" in label.status.text(), timeout=WAIT)
        choose(label.klass, KLASS)
        labels = viewer.layers[f"{img.name} labels"]
        prompts, preview = (helper_layer(viewer, img.name, r) for r in ("prompts", "preview"))
        for t in picks:
            n = len(np.unique(np.asarray(labels.data)))
            click(prompts, prompts.data_to_world(interior_point(truth == t)))
            qtbot.waitUntil(lambda: np.asarray(preview.data).any(), timeout=WAIT)
            press(prompts, "C")
            qtbot.waitUntil(lambda n=n: len(np.unique(np.asarray(labels.data))) == n + 1, timeout=WAIT)
        committed = np.asarray(labels.data).copy()
        j.check(len(np.unique(committed[committed > 0])) == N_COMMIT, "five objects committed")
        j.check(set(classes_of(labels).values()) == {KLASS}, f"classes {classes_of(labels)}")

    # -- 3. find the others, accept those above the slider -----------------------------------
    fs = docks["Find similar"]
    with j.step("find_similar"):
        j.show_dock(fs)
        choose(fs.image, img.name)
        choose(fs.labels, labels.name)
        choose(fs.klass, KLASS)
        j.check(fs.masks.value == "promptable model", f"masks from {fs.masks.value!r} by default")
        click_button(qtbot, fs.find_button)
        qtbot.waitUntil(lambda: fs.worker is None and fs.review is not None
                        and fs.review.candidates is not None, timeout=WAIT)
        n_cand = len(fs.review.scores)
        j.check(n_cand > 0, f"no candidate proposed: {fs.status.text()!r}")
        np.testing.assert_array_equal(np.asarray(labels.data), committed)  # proposing writes nothing
    with j.step("accept_above"):
        fs.score.value = 0.4  # the user drags the slider to where the outlines look right
        qtbot.waitUntil(lambda: fs.review.threshold == 0.4, timeout=5000)
        shown = len(fs.review.visible_ids())
        click_button(qtbot, fs.accept_button)
        after = np.asarray(labels.data).copy()
        new_ids = sorted(set(np.unique(after).tolist()) - set(np.unique(committed).tolist()))
        j.check(len(new_ids) == shown, f"{shown} candidates shown, {len(new_ids)} objects added")
        j.check(np.array_equal(after[committed > 0], committed[committed > 0]),
                "an accept changed a committed object's pixels")
        cls = classes_of(labels)
        j.check(all(cls.get(i) == KLASS for i in new_ids),
                f"accepted objects without the class {KLASS!r}: {[i for i in new_ids if cls.get(i) != KLASS]}")
    with j.step("undo_redo"):
        click_button(qtbot, fs.undo_button)
        j.check(np.array_equal(np.asarray(labels.data), committed), "undo did not take back the whole accept")
        j.check(set(classes_of(labels)) == set(np.unique(committed[committed > 0]).tolist()),
                f"classes after undo: {classes_of(labels)}")
        j.check(len(fs.review.visible_ids()) == shown and not fs.review.accepted,
                "the undone candidates are not shown again")
        labels.redo()
        j.check(np.array_equal(np.asarray(labels.data), after), "redo did not bring the accept back")
        j.check(all(classes_of(labels).get(i) == KLASS for i in new_ids), "classes after redo")
        j.check(len(fs.review.visible_ids()) == 0 and len(fs.review.accepted) == shown,
                f"after redo {len(fs.review.visible_ids())} accepted candidates are shown as undecided again")
    f1, matched = f1_at(np.asarray(labels.data), truth)
    print(f"creme {IMAGE}: {N_COMMIT} committed + {len(new_ids)} accepted of {n_cand} candidates; "
          f"{matched} of {truth.max()} loops matched at IoU 0.5, F1 {f1:.3f}")
    j.check(matched > N_COMMIT, f"no accepted object matches a true loop ({matched} matches)")

    # -- 4. measure and export; the numbers against exact truth -------------------------------
    data = np.asarray(labels.data).copy()
    ids = np.unique(data[data > 0])
    field_um2 = data.size * NM**2 / 1e6
    measure = docks["Measure"]
    with j.step("measure"):
        measure_in_dock(j, qtbot, measure, labels, img, WAIT)
    csv_path = out / "loops.csv"
    with j.step("export_csv"):
        table, header = export_table(qtbot, measure, dialogs, csv_path, WAIT)
        j.check((header.get("pixel_size") or {}).get("x_nm") == NM, f"CSV pixel size {header.get('pixel_size')}")
        rows = table.set_index("label")
        j.check(sorted(rows.index) == ids.tolist(), f"{len(rows)} rows for {len(ids)} objects in the layer")
        j.check(set(table["class_name"]) == {KLASS}, f"classes in the CSV {set(table['class_name'])}")
        counts = np.bincount(data.ravel())
        bad = [i for i in ids if i in rows.index
               and not math.isclose(rows.loc[i, "area_nm2"], counts[i] * NM**2, rel_tol=1e-12)]
        j.check(not bad, f"areas not px × {NM}² nm² for objects {bad[:5]}")
        summ, _ = read_table(out / "loops_summary.csv")
        row = summ[summ["class_name"] == KLASS]
        if j.check(len(row) == 1, f"summary rows {summ['class_name'].tolist()}"):
            row = row.iloc[0]
            j.check(int(row["count"]) == len(ids), f"summary count {row['count']} != {len(ids)}")
            j.check(math.isclose(row["density_per_um2"], len(ids) / field_um2, rel_tol=1e-9),
                    f"density {row['density_per_um2']!r} /µm² != {len(ids) / field_um2!r}")
    j.finish()
