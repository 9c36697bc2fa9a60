"""Helpers for the end-to-end user journey (tests/test_journey.py).

The scene (two synthetic TEM micrographs with exact truth), simulated drags,
dialog patches, the menu actions, screenshots per step, soft checks that let
the journey go on after a failed assertion, and the read-back of committed
objects from the canvas screenshot.
"""

from __future__ import annotations

import contextlib
import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pytestqt.exceptions import TimeoutError as QtTimeout
from scipy import ndimage

from napari_events import MouseEvent

#: Pixel size typed for the uncalibrated PNG, and the TIFF's own (another magnification).
PNG_NM = 0.390625
TIFF_NM = 0.78125
SHAPE = (384, 384)
CLICK_CLASS, BOX_CLASS = "<111> loop", "black dot"
N_CLICK, N_BOX = 7, 6


# -- the scene -------------------------------------------------------------------------------


@dataclass
class Scene:
    """The two micrographs on disk, their exact truth and the objects a user labels."""

    png: Path
    tiff: Path
    a: object  # SyntheticSample drawn at PNG_NM
    b: object  # SyntheticSample drawn at TIFF_NM
    clicks: list = field(default_factory=list)  # truth ids labelled by a click (CLICK_CLASS)
    boxes: list = field(default_factory=list)  # truth ids labelled by a box (BOX_CLASS)
    mistake: int = 0  # truth id committed by mistake, then deleted in the Correct dock

    def mask(self, truth_id: int) -> np.ndarray:
        """Exact truth mask of object ``truth_id`` of the PNG."""
        return self.a.labels == truth_id

    def interior(self, truth_id: int) -> np.ndarray:
        """The (row, col) pixel of the object farthest from its border."""
        return interior_point(self.mask(truth_id))

    def box(self, truth_id: int, pad: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Opposite corners (row, col) of a box drawn tightly around the object."""
        rr, cc = np.nonzero(self.mask(truth_id))
        return (np.array([rr.min() - pad, cc.min() - pad], float),
                np.array([rr.max() + pad, cc.max() + pad], float))


def interior_point(mask: np.ndarray) -> np.ndarray:
    """(row, col) of the pixel of ``mask`` farthest from the background."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.array(np.unravel_index(int(np.argmax(dist)), mask.shape), float)


def isolated_objects(sample, class_name: str, min_px: int, max_px: int, gap: int = 8) -> list[int]:
    """Truth ids of ``class_name`` away from the edges and from every other object, largest first."""
    out = []
    for t in sample.truth:
        if t["class_name"] != class_name or t["touches_edge"] or not min_px <= t["area_px"] <= max_px:
            continue
        m = sample.labels == t["id"]
        ring = ndimage.binary_dilation(m, iterations=gap) & ~m
        if not np.any(sample.labels[ring]):
            out.append((t["area_px"], t["id"]))
    return [i for _, i in sorted(out, reverse=True)]


def make_scene(folder: Path) -> Scene:
    """Write ``micrograph_a.png`` (uncalibrated) and ``micrograph_b.tif`` (ImageJ, nm) in ``folder``."""
    import tifffile
    from PIL import Image

    from napari_microseg.core.synth import generate

    folder.mkdir(parents=True, exist_ok=True)
    a = generate("tem-loops", shape=SHAPE, pixel_size_nm=PNG_NM, seed=5, n_objects=40)
    b = generate("tem-loops", shape=SHAPE, pixel_size_nm=TIFF_NM, seed=6, n_objects=40)
    png, tiff = folder / "micrograph_a.png", folder / "micrograph_b.tif"
    Image.fromarray(a.image).save(png)
    tifffile.imwrite(tiff, b.image, imagej=True, resolution=(1 / TIFF_NM, 1 / TIFF_NM),
                     metadata={"unit": "nm"})
    loops = isolated_objects(a, CLICK_CLASS, 100, 700)
    dots = isolated_objects(a, BOX_CLASS, 36, 200)
    assert len(loops) > N_CLICK and len(dots) >= N_BOX, "the synthetic scene has too few objects"
    return Scene(png, tiff, a, b, clicks=loops[:N_CLICK], boxes=dots[:N_BOX], mistake=loops[N_CLICK])


# -- simulated input -------------------------------------------------------------------------


def drag(layer, world_from, world_to, steps: int = 4):
    """Press, move and release through napari's mouse dispatch (e.g. draw a rectangle)."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    a, b = np.asarray(world_from, float), np.asarray(world_to, float)
    event = MouseEvent("mouse_press", tuple(a), 1, [])
    mouse_press_callbacks(layer, ReadOnlyWrapper(event, exceptions=("handled",)))
    for t in np.linspace(0, 1, steps + 1)[1:]:
        move = MouseEvent("mouse_move", tuple(a + t * (b - a)), 1, [], is_dragging=True,
                          pos=np.array([10.0 * t, 10.0 * t]))
        mouse_move_callbacks(layer, ReadOnlyWrapper(move, exceptions=("handled",)))
    release = MouseEvent("mouse_release", tuple(b), 1, [], pos=np.array([10.0, 10.0]))
    mouse_release_callbacks(layer, ReadOnlyWrapper(release, exceptions=("handled",)))


def menu_action(window, title: str):
    """The QAction called ``title`` in the window's menu bar (searched through submenus)."""
    from qtpy.QtWidgets import QMenu

    def walk(actions):
        for act in actions:
            if act.text().replace("&", "") == title:
                return act
            menu = act.menu()
            if isinstance(menu, QMenu):
                found = walk(menu.actions())
                if found is not None:
                    return found
        return None

    act = walk(window._qt_window.menuBar().actions())
    assert act is not None, f"no menu action {title!r} in the menu bar"
    return act


def raise_dock(widget):
    """Bring the dock holding ``widget`` to the front (the user clicks its tab)."""
    qwidget = getattr(widget, "native", widget)
    dock = qwidget.parent()
    while dock is not None and not hasattr(dock, "setFloating"):
        dock = dock.parent()
    if dock is not None:
        dock.show()
        dock.raise_()
    return dock


def click_button(qtbot, button):
    """A real left click on a magicgui or Qt button."""
    from qtpy.QtCore import Qt

    native = getattr(button, "native", button)
    assert native.isEnabled(), f"button {native.text()!r} is disabled"
    qtbot.mouseClick(native, Qt.MouseButton.LeftButton)


def choose(combo, text: str):
    """Pick the entry ``text`` of a magicgui ComboBox the way a user does (its QComboBox)."""
    native = combo.native
    i = native.findText(text)
    assert i >= 0, f"{text!r} is not offered; choices: {[native.itemText(k) for k in range(native.count())]}"
    native.setCurrentIndex(i)


def type_text(qtbot, widget, text: str):
    """Select all in a field and type ``text`` key by key, then Enter."""
    from qtpy.QtCore import Qt

    native = getattr(widget, "native", widget)
    native.setFocus()
    native.selectAll()
    qtbot.keyClicks(native, text)
    qtbot.keyClick(native, Qt.Key.Key_Return)


class Dialogs:
    """Patched file dialogs: each call takes the next answer queued for it and is recorded."""

    def __init__(self, monkeypatch):
        from qtpy.QtWidgets import QFileDialog

        self.open_files: list = []
        self.save_file: list = []
        self.calls: list = []
        self.reader_prompts: list = []

        def get_open_file_names(*args, **kwargs):
            self.calls.append("getOpenFileNames")  # no widget kept: napari checks for leaks
            assert self.open_files, "an unexpected File > Open dialog"
            return self.open_files.pop(0), ""

        def get_save_file_name(*args, **kwargs):
            self.calls.append("getSaveFileName")
            assert self.save_file, "an unexpected save dialog"
            path, choice = self.save_file.pop(0)
            flt = kwargs.get("filter", args[3] if len(args) > 3 else "")
            # None: the user leaves the filter the dialog offers first
            return str(path), (str(flt).split(";;")[0] if choice is None else choice)

        monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(get_open_file_names))
        monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(get_save_file_name))
        from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog

        prompts = self.reader_prompts

        def reader_exec(dialog):
            # napari asks which plugin should read the file: record it and choose ours,
            # as a user would, so that the journey goes on (the step reports the prompt).
            prompts.append(dialog._extension or "?")
            for button in dialog.reader_btn_group.buttons():
                if button.text() == "napari-microseg":
                    button.setChecked(True)
                    return 1
            return 0

        monkeypatch.setattr(QtReaderDialog, "exec_", reader_exec)
        monkeypatch.setattr(QtReaderDialog, "exec", reader_exec, raising=False)


# -- the canvas -------------------------------------------------------------------------------


def canvas_shot(viewer) -> np.ndarray:
    """The canvas as an RGB array (what the user sees of the data)."""
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(int)


def data_to_canvas(viewer, layer, rc) -> np.ndarray:
    """(row, col) data pixel of ``layer`` -> (row, col) pixel of the canvas screenshot.

    Goes through the vispy transform of the layer's visual (data -> world -> camera -> canvas),
    then scales logical canvas pixels to screenshot pixels.
    """
    canvas = viewer.window._qt_viewer.canvas
    node = canvas.layer_to_visual[layer].node
    x, y = node.get_transform(map_from="visual", map_to="canvas").map([rc[1], rc[0], 0, 1])[:2]
    w, h = canvas._scene_canvas.size
    shot = canvas_shot(viewer)
    return np.array([y * shot.shape[0] / h, x * shot.shape[1] / w])


def objects_on_canvas(viewer, qtbot, layer, min_diff: float = 25.0) -> list[str]:
    """Committed objects of ``layer`` that the canvas does not show; empty when all are shown.

    For each object, the screenshot pixel at its innermost point (mapped through the canvas
    transform) is compared with the same pixel with the layer hidden, i.e. with whatever
    lies under it (the micrograph, the background).
    """
    data = np.asarray(layer.data)
    ids = [int(i) for i in np.unique(data) if i > 0]
    if not ids:
        return ["the layer has no objects"]
    qtbot.wait(50)
    shown = canvas_shot(viewer)
    was = layer.visible
    layer.visible = False
    qtbot.wait(50)
    hidden = canvas_shot(viewer)
    layer.visible = was
    qtbot.wait(50)
    problems = []
    h, w = shown.shape[:2]
    for i in ids:
        r, c = np.round(data_to_canvas(viewer, layer, interior_point(data == i))).astype(int)
        if not (1 <= r < h - 1 and 1 <= c < w - 1):
            problems.append(f"object {i} lies outside the visible canvas (at {r}, {c})")
            continue
        a = shown[r - 1:r + 2, c - 1:c + 2].reshape(-1, 3).mean(0)
        b = hidden[r - 1:r + 2, c - 1:c + 2].reshape(-1, 3).mean(0)
        if np.abs(a - b).max() < min_diff:
            problems.append(f"object {i} is not visible at canvas ({r}, {c}): {a.round()} vs background {b.round()}")
    return problems


# -- the journey's bookkeeping -------------------------------------------------------------------


class Journey:
    """Numbered steps with a screenshot each, and checks that record failures and go on.

    A failed :meth:`check` (or an assertion inside a step) is recorded with the step's name
    and the test fails at :meth:`finish` listing every failed step; the journey goes on so
    that one report shows every defect. Errors other than assertions stop the journey.
    """

    def __init__(self, viewer, qtbot, folder: Path):
        self.viewer, self.qtbot, self.folder = viewer, qtbot, folder
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        self.n = 0
        self.current = ""
        self.failures: list[str] = []
        self.passed: list[str] = []
        self.shots: list[Path] = []

    def check(self, cond, msg: str) -> bool:
        """Record ``msg`` as a failure of the current step when ``cond`` is false."""
        if not cond:
            self.failures.append(f"[{self.current}] {msg}")
        return bool(cond)

    @contextlib.contextmanager
    def step(self, name: str):
        """One user step: run it, check the window height, save ``NN_name.png``."""
        self.n += 1
        self.current = f"{self.n:02d}_{name}"
        before = len(self.failures)
        try:
            yield self
        except (AssertionError, TimeoutError, QtTimeout) as e:
            where = traceback.format_exc(limit=-3).strip().splitlines()
            self.failures.append(f"[{self.current}] {type(e).__name__}: {e} | {' / '.join(w.strip() for w in where[1:-1])}")
        finally:
            self.qtbot.wait(100)
            self.check_window_height()
            path = self.folder / f"{self.current}.png"
            self.viewer.screenshot(str(path), canvas_only=False, flash=False)
            self.shots.append(path)
            if len(self.failures) == before:
                self.passed.append(self.current)

    def show_dock(self, widget):
        """Click the dock's tab; check that its content fits its width (no sideways scrolling)."""
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QScrollBar

        dock = raise_dock(widget)
        self.qtbot.wait(50)
        if dock is not None:
            bars = [b for b in dock.findChildren(QScrollBar)
                    if b.orientation() == Qt.Orientation.Horizontal and b.isVisible() and b.maximum() > 0]
            self.check(not bars, f"the {dock.windowTitle()} dock is wider than its area: its content "
                                 f"scrolls sideways by {[b.maximum() for b in bars]} px")
        return dock

    def check_window_height(self):
        """The window (with its frame) fits the screen's available height."""
        win = self.viewer.window._qt_window
        screen = (win.screen() if hasattr(win, "screen") else None)
        if screen is None:
            from qtpy.QtWidgets import QApplication

            screen = QApplication.primaryScreen()
        avail = screen.availableGeometry().height()
        height = win.frameGeometry().height()
        self.check(height <= avail, f"the window is {height} px high, the screen {avail} px")

    def finish(self):
        """Fail with every recorded failure (the report lists the passed steps too)."""
        report = "passed steps: " + ", ".join(self.passed) + "\nscreenshots: " + str(self.folder)
        print(report)
        if self.failures:
            raise AssertionError(f"{len(self.failures)} failed checks:\n" + "\n".join(self.failures)
                                 + "\n" + report)


def zoom_on(viewer, qtbot, layer):
    """Centre the camera on ``layer`` and zoom until it fills the canvas (the user zooms in)."""
    scene = getattr(viewer, "scene", None)
    camera = scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
    lo, hi = (np.asarray(b, float) for b in layer.extent.world[:, -2:])
    w, h = viewer.window._qt_viewer.canvas._scene_canvas.size
    camera.center = tuple((lo + hi) / 2)
    camera.zoom = 0.95 * min(h / (hi - lo)[0], w / (hi - lo)[1])
    qtbot.wait(100)


def helper_layer(viewer, owner: str, role: str):
    """The helper layer a dock made (``"<owner> <role>"``, or plain ``role``), or ``None``."""
    for name in (f"{owner} {role}", role):
        if name in viewer.layers:
            return viewer.layers[name]
    return None


# -- fixtures and read-backs shared by the journeys --------------------------------------------


def read_table(path) -> tuple[pd.DataFrame, dict]:
    """A napari-microseg CSV read with pandas (no options) and its provenance from ``NAME.csv.json``."""
    side = Path(path).with_name(Path(path).name + ".json")
    header = json.loads(side.read_text(encoding="utf-8"))["provenance"] if side.exists() else {}
    return pd.read_csv(path), header


def pixel_size_of(layer) -> tuple:
    """(nm/px from the layer's metadata, its scale, its units) as the user's data carries them."""
    ps = (layer.metadata.get("pixel_size") or {})
    return ps.get("x_nm"), tuple(float(s) for s in layer.scale[-2:]), tuple(str(u) for u in layer.units[-2:])


def classes_of(layer) -> dict[int, str]:
    """{instance id: class name} from a Labels layer's features and class table."""
    table = {c["id"]: c["name"] for c in layer.metadata.get("classes") or []}
    f = layer.features
    if not len(f) or not {"index", "class_id"} <= set(f.columns):
        return {}
    return {int(i): table.get(int(c), "?") for i, c in zip(f["index"], f["class_id"], strict=False)
            if int(i) > 0 and int(c) > 0}


def measure_in_dock(journey, qtbot, measure, labels, image, timeout: int):
    """Show the Measure dock, choose ``labels`` and ``image``, press Measure, wait for it."""
    journey.show_dock(measure)
    choose(measure.labels, labels.name)
    choose(measure.image, image.name)
    click_button(qtbot, measure.measure_button)
    qtbot.waitUntil(lambda: measure.export_button.enabled and measure.measure_button.enabled, timeout=timeout)


def export_table(qtbot, measure, dialogs, path: Path, timeout: int) -> tuple[pd.DataFrame, dict]:
    """Press the Measure dock's export button, answer its save dialog with ``path`` (CSV), read it back."""
    dialogs.save_file.append((path, "CSV (*.csv)"))
    click_button(qtbot, measure.export_button)
    qtbot.waitUntil(path.exists, timeout=timeout)
    return read_table(path)
