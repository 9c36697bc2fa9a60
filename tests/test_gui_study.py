"""Statistics dock in a real viewer: a study of three calibrated fields of known counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from journey_helpers import click_button
from napari_microseg.core.calibration import PixelSize
from napari_microseg.gui.layer_data import labels_layer

pytestmark = pytest.mark.gui

NM = 0.5  # nm per pixel
NM2_PER_UM2 = 1e6
#: (name, shape, number of big discs (class 1, r = 7-11 px), number of small discs (class 3, r = 3-5 px))
FIELDS = [("f1", (200, 300), 2, 2), ("f2", (300, 300), 5, 4), ("f3", (150, 400), 1, 5)]


def make_field(shape, n_big, n_small, seed):
    """Instance labels of discs that touch neither each other nor the border; their classes."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    classes = {}
    radii = list(rng.integers(7, 12, n_big)) + list(rng.integers(3, 6, n_small))
    i = 0
    while i < len(radii):
        r = radii[i]
        c = rng.integers(r + 3, np.array(shape) - r - 3)
        rr, cc = disk(tuple(c), r + 3, shape=shape)
        if lab[rr, cc].any():
            continue
        lab[disk(tuple(c), r, shape=shape)] = i + 1
        classes[i + 1] = 1 if r >= 7 else 3
        i += 1
    return lab, classes


@pytest.fixture
def fields_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    truth = {}
    for k, (name, shape, n_big, n_small) in enumerate(FIELDS):
        lab, classes = make_field(shape, n_big, n_small, seed=k)
        ps = PixelSize.isotropic(NM, "user")
        viewer.add_image((100.0 - 40 * (lab > 0)).astype(np.float32), name=f"{name} image", scale=ps.scale,
                         units=("nm", "nm"), metadata={"pixel_size": ps.to_dict()})
        data, kw, _ = labels_layer(lab, instance_classes=classes, pixel_size=ps, name=name,
                                   metadata={"source_image": f"{name} image"})
        viewer.add_labels(data, **kw)
        area_um2 = shape[0] * shape[1] * NM * NM / NM2_PER_UM2
        truth[name] = {"count": n_big + n_small, "area_um2": area_um2, "labels": lab, "classes": classes}
    return viewer, truth


def wait_idle(qtbot, w, done):
    """Wait until the dock's worker ends; fail with the dock's message when it failed."""
    qtbot.waitUntil(lambda: (done() or w.bar.format() == "failed") and w.build_button.enabled, timeout=120000)
    assert done(), w.summary.text()


def test_study_dock_counts_pooled_compare_export(fields_viewer, qtbot, tmp_path, monkeypatch, artifacts_dir):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFileDialog

    from napari_microseg.gui.widgets.study import StudyWidget

    viewer, truth = fields_viewer
    w = StudyWidget(viewer)
    viewer.window.add_dock_widget(w, area="right", name="Statistics")
    assert [w.fields.item(r, 0).text() for r in range(w.fields.rowCount())] == ["f1", "f2", "f3"]
    assert [w.fields.item(r, 1).text() for r in range(w.fields.rowCount())] == ["f1 image", "f2 image", "f3 image"]
    w.all_phases.native.click()  # "… also of instance labels": classes as phases
    assert w.all_phases.value
    click_button(qtbot, w.build_button)
    wait_idle(qtbot, w, lambda: w.outcome is not None)
    study = w.outcome.study

    # per field: counts and densities equal the truth exactly
    pf = study.per_field[study.per_field["class_name"] == "all"].set_index("field")
    for name, t in truth.items():
        assert pf.loc[name, "count"] == t["count"]
        assert pf.loc[name, "density"] == pytest.approx(t["count"] / t["area_um2"], rel=1e-12)
        assert pf.loc[name, "density_ci_low"] < pf.loc[name, "density"] < pf.loc[name, "density_ci_high"]
    # pooled: the area-weighted density Σn / ΣA (not the plain mean of the fields' densities)
    pooled = study.pooled.set_index("class_name").loc["all"]
    n_tot = sum(t["count"] for t in truth.values())
    a_tot = sum(t["area_um2"] for t in truth.values())
    assert pooled["density"] == pytest.approx(n_tot / a_tot, rel=1e-12)
    assert pooled["density"] != pytest.approx(np.mean([t["count"] / t["area_um2"] for t in truth.values()]))
    assert pooled["density_ci_low"] < pooled["density"] < pooled["density_ci_high"]
    assert int(pooled["count"]) == n_tot
    # the dock's table shows the per-field rows of the chosen class, the summary names the intervals
    assert w.per_field.model().rowCount() == 3
    assert w.pooled.row_at(0)["class_name"] == "all"  # the tables keep their order until a header click
    text = w.summary.text()
    assert "3 field(s)" in text and f"{n_tot} objects" in text and "exact Poisson" in text
    # phase fractions (classes as phases): exact pixel fractions, point count beside them
    ph = w.outcome.phases.set_index(["field", "class_name"])
    for name, t in truth.items():
        lab, cls = t["labels"], t["classes"]
        big = np.isin(lab, [i for i, c in cls.items() if c == 1]).mean()
        assert ph.loc[(name, "<111> loop"), "pixel_fraction"] == pytest.approx(big, rel=1e-12)
        assert ph.loc[(name, "background"), "pixel_fraction"] == pytest.approx((lab == 0).mean(), rel=1e-12)
        assert abs(ph.loc[(name, "<111> loop"), "point_fraction"] - big) < 0.05
    assert w.tabs.isTabEnabled(w.tabs.indexOf(w.phase_view))

    # the class picker switches the per-field table to that class
    w.klass.value = "black dot"
    small = study.per_field[study.per_field["class_name"] == "black dot"].set_index("field")
    assert w.per_field.source.dataframe["class_name"].eq("black dot").all()
    assert [int(small.loc[n, "count"]) for n in ("f1", "f2", "f3")] == [2, 4, 5]
    qtbot.waitUntil(lambda: w.shown_class == "black dot", timeout=60000)  # plots rendered in a worker
    assert w.dist_plot.pixmap() is not None and not w.dist_plot.pixmap().isNull()
    w.klass.value = "all"
    assert w.shown_class == "all"  # cached: shown at once

    # compare: f1 is condition A, f2 and f3 condition B
    for name in ("f2", "f3"):  # a click on the condition cell switches A -> B
        cell = w.fields.visualRect(w.fields.model().index(w.field_row(name), 2)).center()
        qtbot.mouseClick(w.fields.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    assert [w.fields.item(r, 2).text() for r in range(3)] == ["A", "B", "B"]
    click_button(qtbot, w.compare_button)
    wait_idle(qtbot, w, lambda: w.comparison is not None)
    dens = w.comparison["densities"].set_index("class_name").loc["all"]
    a = truth["f1"]["count"] / truth["f1"]["area_um2"]
    b = (truth["f2"]["count"] + truth["f3"]["count"]) / (truth["f2"]["area_um2"] + truth["f3"]["area_um2"])
    assert dens["difference"] == pytest.approx(b - a, rel=1e-9)
    assert dens["difference_ci_low"] < b - a < dens["difference_ci_high"]
    sizes = w.comparison["sizes"].set_index("class_name").loc["all"]
    assert 0 <= sizes["ks_pvalue"] <= 1 and "Kolmogorov-Smirnov" in w.compare_text.text()

    # export: one CSV (+ JSON sidecar) per table and a workbook with one sheet per table,
    # all read back by pandas without options
    out = tmp_path / "export"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(out))
    click_button(qtbot, w.export_button)
    sheets = pd.read_excel(out / "stats.xlsx", sheet_name=None)
    assert {"per_field", "pooled", "outliers", "phases_pooled", "compare_densities"} <= set(sheets)
    back = sheets["per_field"]
    back = back[back["class_name"] == "all"].set_index("field")
    assert [int(back.loc[n, "count"]) for n in truth] == [truth[n]["count"] for n in truth]
    for name in sheets:
        if name == "provenance" or name.startswith("_"):  # provenance, exact-float helper sheet
            continue
        df = pd.read_csv(out / f"{name}.csv")
        assert (out / f"{name}.csv.json").is_file()
        assert list(df.columns) == list(sheets[name].columns), name
    pooled_csv = pd.read_csv(out / "pooled.csv").set_index("class_name")
    assert pooled_csv.loc["all", "density"] == pytest.approx(n_tot / a_tot, rel=1e-12)
    assert "density_interval" in pooled_csv.columns

    # screenshots for a person to look at
    folder = artifacts_dir / "study"
    folder.mkdir(parents=True, exist_ok=True)
    for tab, name in ((w.dist_plot, "distribution"), (w.pooled, "pooled"), (w.compare_box, "compare")):
        w.tabs.setCurrentWidget(tab)
        qtbot.wait(50)
        w.grab().save(str(folder / f"dock_{name}.png"))
    viewer.screenshot(str(folder / "window.png"), canvas_only=False, flash=False)


def test_study_dock_says_why_without_fields(make_napari_viewer, qtbot):
    from napari_microseg.gui.widgets.study import StudyWidget

    viewer = make_napari_viewer()
    w = StudyWidget(viewer)
    assert w.build() is None
    assert "Tick at least one field" in w.summary.text()
    w.source.value = "folder"
    assert w.build() is None and "Choose the folder" in w.summary.text()


def test_measure_dock_opens_the_statistics_dock(make_napari_viewer, qtbot):
    from napari_microseg.gui.widgets.measure import MeasureWidget
    from napari_microseg.gui.widgets.study import StudyWidget

    viewer = make_napari_viewer()
    measure = MeasureWidget(viewer)
    viewer.window.add_dock_widget(measure, area="right", name="Measure")
    click_button(qtbot, measure.study_button)
    docks = [d for d in viewer.window._qt_window.findChildren(StudyWidget)]
    assert len(docks) == 1
    click_button(qtbot, measure.study_button)  # a second click shows the same dock
    assert len(viewer.window._qt_window.findChildren(StudyWidget)) == 1


def test_study_dock_from_folders_of_measure_exports(make_napari_viewer, qtbot, tmp_path):
    """Fields saved with the Measure dock's export: condition A in one folder, B in another."""
    from napari_microseg.core.classes import ClassTable
    from napari_microseg.core.measure import measure_image
    from napari_microseg.gui.widgets.measure import export_result
    from napari_microseg.gui.widgets.study import StudyWidget

    truth = {}
    for k, (name, shape, n_big, n_small) in enumerate(FIELDS):
        lab, classes = make_field(shape, n_big, n_small, seed=k)
        result = measure_image(lab, PixelSize.isotropic(NM, "user"), instance_classes=classes, classes=ClassTable())
        folder = tmp_path / ("A" if name == "f1" else "B")
        folder.mkdir(exist_ok=True)
        export_result(folder / f"{name}.xlsx", result)
        truth[name] = (n_big + n_small, shape[0] * shape[1] * NM * NM / NM2_PER_UM2)
    viewer = make_napari_viewer()
    w = StudyWidget(viewer)
    w.source.value = "folder"
    assert not w.fields.isVisibleTo(w) and w.folder.native.isVisibleTo(w)
    w.folder.value = str(tmp_path / "B")
    click_button(qtbot, w.build_button)
    wait_idle(qtbot, w, lambda: w.outcome is not None)
    pf = w.outcome.study.per_field
    pf = pf[pf["class_name"] == "all"].set_index("field")
    assert sorted(pf.index) == ["f2", "f3"]
    for name in ("f2", "f3"):
        assert pf.loc[name, "count"] == truth[name][0]
        assert pf.loc[name, "density"] == pytest.approx(truth[name][0] / truth[name][1], rel=1e-12)
    w.folder.value, w.folder_b.value = str(tmp_path / "A"), str(tmp_path / "B")
    click_button(qtbot, w.compare_button)
    wait_idle(qtbot, w, lambda: w.comparison is not None)
    dens = w.comparison["densities"].set_index("class_name").loc["all"]
    a = truth["f1"][0] / truth["f1"][1]
    b = (truth["f2"][0] + truth["f3"][0]) / (truth["f2"][1] + truth["f3"][1])
    assert dens["difference"] == pytest.approx(b - a, rel=1e-9)


def test_cancel_stops_the_study_after_the_current_field(fields_viewer, qtbot, monkeypatch):
    import time

    import napari_microseg.gui.study_run as study_run
    from napari_microseg.gui.widgets.study import StudyWidget

    measured = []
    real = study_run.measure_field

    def slow(fi, settings):
        time.sleep(0.3)
        measured.append(fi.name)
        return real(fi, settings)

    monkeypatch.setattr(study_run, "measure_field", slow)
    viewer, _ = fields_viewer
    w = StudyWidget(viewer)
    click_button(qtbot, w.build_button)
    click_button(qtbot, w.cancel_button)
    qtbot.waitUntil(lambda: w.build_button.enabled, timeout=60000)
    assert w.outcome is None and w.bar.format() == "cancelled"
    assert len(measured) < 3
