"""The user journey of issue 12, end to end in a real napari window under Xvfb.

Two synthetic TEM micrographs with exact truth (an uncalibrated PNG and a calibrated
TIFF at another magnification, same shape) go through every dock the way a user
drives them: File > Open (napari's own open path and reader choice), the pixel size
typed into the Calibration dock, objects labelled in two classes with clicks and
boxes (the default model), one corrected, measured, exported as CSV, saved with the
default writer and reopened, a model trained from the layers, run on the second
image, a recipe saved and a batch run over both images.

Every step saves ``test-artifacts/journey/NN_step.png``. Input goes through napari's
mouse/key dispatch (``napari_events``), Qt test input (``qtbot``) and the File menu's
actions with the file dialogs patched; widget attributes are only used to find what
to click or type into. A failed check is recorded and the journey goes on, so one run
reports every failing step; the test fails at the end if any check failed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey_helpers import (
    BOX_CLASS,
    CLICK_CLASS,
    PNG_NM,
    SHAPE,
    TIFF_NM,
    Dialogs,
    Journey,
    choose,
    classes_of,
    click_button,
    drag,
    export_table,
    helper_layer,
    make_scene,
    measure_in_dock,
    menu_action,
    objects_on_canvas,
    pixel_size_of,
    read_table,
    type_text,
    zoom_on,
)
from napari_events import click, press

# not 'slow' on purpose: issue 12's acceptance test runs in every suite run (about a minute)
pytestmark = pytest.mark.gui
needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")

TINY_NET = {"encoder_name": "tu-mobilenetv3_small_050", "encoder_depth": 3, "decoder_channels": [16, 8, 4]}
WAIT = 60_000  # ms for a worker (model preparation, prediction, measurement)
WAIT_LONG = 150_000  # ms for training and the batch (child processes on busy cores)


@needs_display
def test_user_journey(journey_window, journey_env, qtbot, monkeypatch, artifacts_dir):
    viewer, docks = journey_window
    scene = make_scene(journey_env / "inputs")
    dialogs = Dialogs(monkeypatch)
    j = Journey(viewer, qtbot, artifacts_dir / "journey")
    out = journey_env / "outputs"
    out.mkdir()
    assert {"Label", "Correct", "Predict", "Train", "Calibration", "Measure", "Batch"} <= set(docks), docks

    # -- 1. open both micrographs through File > Open ---------------------------------------
    with j.step("open_files"):
        dialogs.open_files.append([str(scene.png), str(scene.tiff)])
        menu_action(viewer.window, "Open File(s)...").trigger()
        qtbot.waitUntil(lambda: len(viewer.layers) >= 2, timeout=WAIT)
        j.check(not dialogs.reader_prompts,
                f"napari asked which reader to use for {dialogs.reader_prompts}: no default reader")
    png = viewer.layers[scene.png.stem]
    tif = viewer.layers[scene.tiff.stem]
    with j.step("opened_layers"):
        j.check(png.metadata.get("pixel_size") is not None and not png.metadata["pixel_size"].get("x_nm"),
                f"the PNG should open uncalibrated, has {png.metadata.get('pixel_size')}")
        j.check(pixel_size_of(tif)[0] == TIFF_NM, f"the TIFF should open at {TIFF_NM} nm/px: {pixel_size_of(tif)}")

    # -- 2. type the PNG's pixel size in the Calibration dock ---------------------------------
    cal = docks["Calibration"]
    with j.step("calibrate_png"):
        j.show_dock(cal)
        choose(cal.image, png.name)
        type_text(qtbot, cal.pixel_size, f"{PNG_NM} nm")  # typed with its unit
        if hasattr(cal, "set_button"):
            click_button(qtbot, cal.set_button)
        nm, scale, units = pixel_size_of(png)
        j.check(nm == PNG_NM, f"typed {PNG_NM} nm/px, the PNG layer carries {nm} (field shows "
                              f"{cal.pixel_size.native.text()!r})")
        j.check(scale == (PNG_NM, PNG_NM) and all(u in ("nm", "nanometer") for u in units),
                f"PNG scale/units {scale} {units}")
        j.check(pixel_size_of(tif)[0] == TIFF_NM and pixel_size_of(tif)[1] == (TIFF_NM, TIFF_NM),
                f"the TIFF must keep {TIFF_NM} nm/px: {pixel_size_of(tif)}")

    # -- 3. label: clicks in one class, boxes in another (the default model) -----------------
    label = docks["Label"]
    labels = None
    with j.step("label_start"):
        tif.visible = False  # the user hides the other micrograph (eye icon) and zooms on this one
        zoom_on(viewer, qtbot, png)
        j.show_dock(label)
        choose(label.image, png.name)
        default_model = label.model.value
        click_button(qtbot, label.start_button)
        qtbot.waitUntil(lambda: f"{png.name} labels" in viewer.layers
                        and helper_layer(viewer, png.name, "prompts") is not None, timeout=WAIT)
        qtbot.waitUntil(lambda: "click on objects" in label.status.text(), timeout=WAIT)
        j.check(default_model == "microseg-promptable", f"default model is {default_model!r}")
    labels = viewer.layers[f"{png.name} labels"]
    prompts, preview, box_layer = (helper_layer(viewer, png.name, role) for role in ("prompts", "preview", "box prompts"))

    def n_objects():
        return len([i for i in np.unique(np.asarray(labels.data)) if i > 0])

    def click_commit(truth_id):
        n = n_objects()
        click(prompts, prompts.data_to_world(scene.interior(truth_id)))
        qtbot.waitUntil(lambda: np.asarray(preview.data).any(), timeout=WAIT)
        press(prompts, "C")
        qtbot.waitUntil(lambda: n_objects() == n + 1, timeout=WAIT)

    committed = {}  # truth id -> label id in the layer
    with j.step("label_clicks"):
        choose(label.klass, CLICK_CLASS)
        for t in [*scene.clicks, scene.mistake]:
            before = set(np.unique(np.asarray(labels.data)))
            click_commit(t)
            (new,) = set(np.unique(np.asarray(labels.data))) - before
            committed[t] = int(new)
    with j.step("label_boxes"):
        choose(label.klass, BOX_CLASS)
        viewer.layers.selection.active = box_layer
        box_layer.mode = "add_rectangle"
        n0 = n_objects()
        before = set(np.unique(np.asarray(labels.data)))
        for t in scene.boxes:
            a, b = scene.box(t)
            drag(box_layer, box_layer.data_to_world(a), box_layer.data_to_world(b))
            # the user looks at the box's preview before drawing the next one
            (r0, c0), (r1, c1) = np.floor(a).astype(int), np.ceil(b).astype(int) + 1
            qtbot.waitUntil(lambda r0=r0, r1=r1, c0=c0, c1=c1: np.asarray(preview.data)[r0:r1, c0:c1].any(),
                            timeout=WAIT)
        drawn = [np.asarray(r).min(0).round(1).tolist() + np.asarray(r).max(0).round(1).tolist()
                 for r in box_layer.data]
        wanted = [np.concatenate(scene.box(t)).round(1).tolist() for t in scene.boxes]
        j.check(drawn == wanted, f"boxes drawn {drawn} != dragged {wanted}")
        click_button(qtbot, label.boxes_button)
        qtbot.waitUntil(lambda: n_objects() == n0 + len(scene.boxes), timeout=WAIT)
        qtbot.waitUntil(lambda: len(box_layer.data) == 0, timeout=WAIT)
        qtbot.wait(200)
        j.check(not np.asarray(preview.data).any(),
                "after 'Segment every box' the preview layer still shows a mask (stale preview)")
        for t in scene.boxes:  # each box's object: the new label under the object's centre
            r, c = scene.interior(t).astype(int)
            got = int(np.asarray(labels.data)[r, c])
            if j.check(got not in before, f"box around truth object {t} gave no new object under its centre"):
                committed[t] = got
    with j.step("labelled"):
        cls = classes_of(labels)
        for group, name in ((scene.clicks, CLICK_CLASS), (scene.boxes, BOX_CLASS)):
            for t in group:
                got = committed.get(t)
                j.check(got is not None and cls.get(got) == name,
                        f"truth object {t}: committed as {got}, class {cls.get(got)!r} instead of {name!r}")
        for t, lab_id in committed.items():
            m, truth = np.asarray(labels.data) == lab_id, scene.mask(t)
            iou = np.count_nonzero(m & truth) / np.count_nonzero(m | truth)
            j.check(iou > 0.3, f"object {lab_id} overlaps truth object {t} with IoU {iou:.2f} only")
        j.check(not (problems := objects_on_canvas(viewer, qtbot, labels)), f"canvas after labelling: {problems}")

    # -- 4. correct: delete the object committed by mistake (Correct dock) -------------------
    correct = docks["Correct"]
    with j.step("correct_delete"):
        j.show_dock(correct)
        choose(correct.labels, labels.name)
        click_button(qtbot, correct.start_button)
        qtbot.waitUntil(lambda: helper_layer(viewer, labels.name, "correction points") is not None, timeout=WAIT)
        points = helper_layer(viewer, labels.name, "correction points")
        viewer.layers.selection.active = points
        points.mode = "add"
        click(points, points.data_to_world(scene.interior(scene.mistake)))
        j.check(len(points.data) == 1, f"{len(points.data)} correction points after one click")
        gone = committed.pop(scene.mistake)
        click_button(qtbot, correct.buttons["delete"])
        j.check(not np.any(np.asarray(labels.data) == gone), f"object {gone} is still in the layer")
        j.check(n_objects() == len(scene.clicks) + len(scene.boxes), f"{n_objects()} objects after the delete")
        j.check(gone not in classes_of(labels), "the deleted object keeps a class")
        j.check(not (problems := objects_on_canvas(viewer, qtbot, labels)), f"canvas after correcting: {problems}")

    # expected numbers, from the layer's pixels and the exact pixel size typed
    data = np.asarray(labels.data).copy()
    expected_area = {i: np.count_nonzero(data == i) * PNG_NM**2 for i in committed.values()}
    field_um2 = SHAPE[0] * SHAPE[1] * PNG_NM**2 / 1e6
    expected_counts = {CLICK_CLASS: len(scene.clicks), BOX_CLASS: len(scene.boxes)}

    # -- 5. measure (Measure dock button) ----------------------------------------------------
    measure = docks["Measure"]
    with j.step("measure"):
        measure_in_dock(j, qtbot, measure, labels, png, WAIT)
        j.check("nm" in measure.summary.text() and "UNCALIBRATED" not in measure.summary.text(),
                f"summary: {measure.summary.text()!r}")
        j.check(labels.visible and not (problems := objects_on_canvas(viewer, qtbot, labels)),
                f"canvas after Measure: {problems if labels.visible else 'the labels layer is hidden'}")

    # -- 6. export CSV -------------------------------------------------------------------------
    csv_path = out / "measurements.csv"
    with j.step("export_csv"):
        table, header = export_table(qtbot, measure, dialogs, csv_path, WAIT)
        j.check(header.get("unit") == "nm", f"CSV unit {header.get('unit')!r}")
        j.check((header.get("pixel_size") or {}).get("x_nm") == PNG_NM,
                f"CSV pixel size {header.get('pixel_size')} instead of {PNG_NM} nm/px")
        size_cols = [c for c in table.columns if c.endswith(("_px", "_px2")) and not c.startswith("centroid_")]
        j.check(not size_cols and "area_nm2" in table and "equivalent_diameter_nm" in table,
                f"sizes not in nm: {list(table.columns)}")
        if "area_nm2" in table:
            rows = table.set_index("label")
            j.check(set(rows.index) == set(expected_area), f"labels in CSV {sorted(rows.index)} vs {sorted(expected_area)}")
            for i, area in expected_area.items():
                if i not in rows.index:
                    continue
                r = rows.loc[i]
                j.check(math.isclose(r["area_nm2"], area, rel_tol=1e-12),
                        f"object {i}: area {r['area_nm2']!r} nm² != {area!r} (px * {PNG_NM}²)")
                d = 2 * math.sqrt(area / math.pi)
                j.check(math.isclose(r["equivalent_diameter_nm"], d, rel_tol=1e-9),
                        f"object {i}: equivalent diameter {r['equivalent_diameter_nm']!r} != {d!r} nm")
                j.check(math.isclose(r["centroid_x_nm"], r["centroid_x_px"] * PNG_NM, rel_tol=1e-12),
                        f"object {i}: centroid_x_nm {r['centroid_x_nm']!r} != px * {PNG_NM}")
            counts = table["class_name"].value_counts().to_dict()
            j.check(counts == expected_counts, f"counts per class in the CSV {counts} != labelled {expected_counts}")
        summary_path = out / "measurements_summary.csv"
        j.check(summary_path.exists(), "no summary table beside the CSV")
        if summary_path.exists():
            summ, _ = read_table(summary_path)
            j.check("density_per_um2" in summ, f"summary columns {list(summ.columns)}")
            for name, n in {**expected_counts, "all": sum(expected_counts.values())}.items():
                row = summ[summ["class_name"] == name]
                if j.check(len(row) == 1 and "density_per_um2" in summ, f"no summary row for {name}"):
                    row = row.iloc[0]
                    j.check(int(row["count"]) == n, f"{name}: count {row['count']} != {n}")
                    j.check(math.isclose(row["density_per_um2"], n / field_um2, rel_tol=1e-9),
                            f"{name}: density {row['density_per_um2']!r} /µm² != {n / field_um2!r}")
                    j.check(math.isclose(row["reference_area_nm2"], SHAPE[0] * SHAPE[1] * PNG_NM**2, rel_tol=1e-12),
                            f"{name}: reference area {row['reference_area_nm2']!r} nm²")

    # -- 7. save the labels with the default writer, reopen them -----------------------------
    saved = out / "labels_a.tif"
    with j.step("save_labels"):
        viewer.layers.selection.active = labels
        viewer.layers.selection = {labels}
        dialogs.save_file.append((saved, None))  # the user types a name, keeps the offered format
        menu_action(viewer.window, "Save Selected Layers...").trigger()
        qtbot.waitUntil(saved.exists, timeout=WAIT)
    with j.step("reopen_labels"):
        n_layers = len(viewer.layers)
        dialogs.open_files.append([str(saved)])
        menu_action(viewer.window, "Open File(s)...").trigger()
        qtbot.waitUntil(lambda: len(viewer.layers) > n_layers, timeout=WAIT)
        from napari.layers import Labels

        back = viewer.layers[-1]
        j.check(isinstance(back, Labels), f"the saved labels reopen as {type(back).__name__}")
        if isinstance(back, Labels):
            j.check(np.array_equal(np.asarray(back.data), data), "the reopened labels differ from the saved ones")
            j.check(classes_of(back) == classes_of(labels),
                    f"classes after the round trip {classes_of(back)} != {classes_of(labels)}")
            j.check(pixel_size_of(back)[0] == PNG_NM, f"reopened pixel size {pixel_size_of(back)}")
        back.visible = False  # the user hides the reopened copy
        j.check(not dialogs.reader_prompts, f"napari asked which reader to use for {dialogs.reader_prompts}")

    # -- 8. train a few steps from the layers (Train dock) -----------------------------------
    train = docks["Train"]
    with j.step("train"):
        j.show_dock(train)
        choose(train.image, png.name)
        choose(train.labels, labels.name)
        train.name.value = "journey-unet"
        train.params.value = json.dumps(TINY_NET)
        train.patch.value, train.batch.value = 128, 2
        train.epochs.value, train.steps_per_epoch.value = 1, 2
        train.augment.value = False
        choose(train.device, "cpu")
        click_button(qtbot, train.start_button)
        qtbot.waitUntil(lambda: train.progress.format() in ("done", "failed", "stopped"), timeout=WAIT_LONG)
        j.check(train.progress.format() == "done", f"training ended {train.progress.format()!r}: {train.status.text()}")

    # -- 9. predict on the second image with the new model (Predict dock) --------------------
    predict = docks["Predict"]
    pred_name = f"{tif.name} journey-unet instances"
    with j.step("predict"):
        for layer in (png, labels):
            layer.visible = False
        tif.visible = True
        zoom_on(viewer, qtbot, tif)
        j.show_dock(predict)
        choose(predict.image, tif.name)
        choose(predict.model, "journey-unet")
        click_button(qtbot, predict.run_button)
        qtbot.waitUntil(lambda: pred_name in viewer.layers and predict.run_button.enabled
                        and "done" in predict.status.text(), timeout=WAIT)
        nm, scale, units = pixel_size_of(viewer.layers[pred_name])
        j.check(nm == TIFF_NM and scale == (TIFF_NM, TIFF_NM), f"prediction on the TIFF in {nm} nm/px, scale {scale}")
        j.check(pixel_size_of(tif)[0] == TIFF_NM, f"the TIFF now carries {pixel_size_of(tif)}")
        j.check(pixel_size_of(png)[0] == PNG_NM, f"the PNG now carries {pixel_size_of(png)}")
        for layer in viewer.layers:  # every output drawn on the TIFF's grid
            if layer.name.startswith(f"{tif.name} "):
                j.check(tuple(float(x) for x in layer.scale[-2:]) == (TIFF_NM, TIFF_NM),
                        f"{layer.name} is drawn at scale {tuple(layer.scale[-2:])}, not the TIFF's {TIFF_NM} nm/px")

    # -- 10. save a recipe, run a batch over both images (Batch dock) ------------------------
    recipe = out / "recipe.json"
    batch_out = out / "batch"
    with j.step("save_recipe"):
        dialogs.save_file.append((recipe, None))
        click_button(qtbot, predict.recipe_button)
        qtbot.waitUntil(recipe.exists, timeout=WAIT)
    batch = docks["Batch"]
    with j.step("batch"):
        j.show_dock(batch)
        batch.recipe.value = str(recipe)
        batch.inputs.value = str(scene.png.parent)
        batch.out.value = str(batch_out)
        click_button(qtbot, batch.run_button)
        qtbot.waitUntil(lambda: batch.run_button.enabled and "processed" in batch.status.text(), timeout=WAIT_LONG)
        summary = pd.read_csv(batch_out / "summary.csv", comment=None)
        rows = {Path(str(r["image"])).name: r for _, r in summary.iterrows()}
        j.check(set(rows) == {scene.png.name, scene.tiff.name}, f"batch summary rows {sorted(rows)}")
        t = rows.get(scene.tiff.name)
        if j.check(t is not None and t["status"] == "ok", f"TIFF in the batch: {None if t is None else dict(t)}"):
            j.check(t["unit"] == "nm" and float(t["pixel_size_nm"]) == TIFF_NM,
                    f"TIFF batch output in {t['unit']} at {t['pixel_size_nm']} nm/px")
            objects, head = read_table(batch_out / f"{scene.tiff.stem}_objects.csv")
            j.check(head.get("unit") == "nm" and "area_nm2" in objects, f"TIFF objects table unit {head.get('unit')}")
        p = rows.get(scene.png.name)
        if p is not None:
            if p["status"] == "ok":
                j.check(p["unit"] == "nm" and float(p["pixel_size_nm"]) == PNG_NM,
                        f"the PNG's batch output is in {p['unit']} at {p['pixel_size_nm']} nm/px "
                        f"(neither nm at {PNG_NM} nor reported as an error)")
            else:
                j.check(p["status"] == "error" and any(w in str(p["error"]).lower() for w in ("pixel size", "calibrat")),
                        f"the uncalibrated PNG failed without saying why: {p['error']!r}")
        j.check(batch.status.text().count("failed") <= 1, batch.status.text())

    # -- the end: every committed object still on the canvas once the PNG is shown again -----
    with j.step("final_view"):
        for layer in (png, labels):
            layer.visible = True
        for name in (tif.name, pred_name):
            if name in viewer.layers:
                viewer.layers[name].visible = False
        zoom_on(viewer, qtbot, png)
        j.check(not (problems := objects_on_canvas(viewer, qtbot, labels)), f"canvas at the end: {problems}")
    j.finish()


def test_each_drawn_box_gets_its_own_preview(make_napari_viewer, qtbot, tmp_path, monkeypatch, torch_one_thread):
    """Boxes drawn one after the other: each preview outlines its own box's object (no refinement
    from the previous box's mask), and 'Segment every box' leaves no stale preview behind."""
    from napari_microseg.core.prompting.registry import make_backend
    from napari_microseg.gui.labeling import LabelingController
    from napari_microseg.gui.layer_data import labels_layer

    monkeypatch.setenv("MICROSEG_CACHE_DIR", str(tmp_path / "cache"))
    scene = make_scene(tmp_path / "inputs")
    viewer = make_napari_viewer()
    image = viewer.add_image(scene.a.image, name="a")
    data, kw, _ = labels_layer(np.zeros(SHAPE, np.int32), name="a labels")
    target = viewer.add_labels(data, **kw)
    ctl = LabelingController(viewer, make_backend("microseg-promptable"))
    ctl.set_target(image, target)
    qtbot.waitUntil(lambda: ctl.ready, timeout=WAIT)
    ctl.boxes.mode = "add_rectangle"
    for t in scene.boxes[:3]:
        a, b = scene.box(t)
        drag(ctl.boxes, a, b)
        qtbot.waitUntil(lambda: not ctl._busy and not ctl._dirty, timeout=WAIT)
        pred, truth = np.asarray(ctl.preview.data) > 0, scene.mask(t)
        iou = np.count_nonzero(pred & truth) / np.count_nonzero(pred | truth)
        assert iou > 0.3, f"the preview of the box around object {t} has IoU {iou:.2f} with it"
    done = []
    ctl.segment_all_boxes(on_done=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT)
    qtbot.waitUntil(lambda: not ctl._busy, timeout=WAIT)
    assert done == [3] and not np.asarray(ctl.preview.data).any()
