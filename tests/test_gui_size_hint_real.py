"""A user labels small defects on a real TEM frame: after five commits, first clicks fit better.

Ti frame 896 of ``ti-insitu-tem-defects`` (a validation frame: never trained or tuned on),
read in place, in a shown napari window with the Label dock and the offline model. Five
small defects (40-100 px) are clicked and their previews committed as they are (no
correction, as a hurried user would); then ten other small defects are clicked once with
"size first clicks like my objects" unticked and ticked, by clicking the check box. The
previews are compared with the annotation. Screenshots of one defect both ways go to
``test-artifacts/size_hint/``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_events import click

pytestmark = [pytest.mark.gui, pytest.mark.slow,
              pytest.mark.skipif(not os.environ.get("DISPLAY"),
                                 reason="needs a display (run the suite under xvfb-run)")]
FRAME = "Chip-4-Heat-1-Frame-896"


def _centre(labels, i):
    rr, cc = np.nonzero(labels == i)
    k = int(np.argmin((rr - rr.mean()) ** 2 + (cc - cc.mean()) ** 2))
    return float(rr[k]), float(cc[k])


def _iou(mask, truth):
    return np.count_nonzero(mask & truth) / np.count_nonzero(mask | truth)


def test_five_commits_size_the_next_first_clicks_on_a_real_frame(
        shared_data, make_napari_viewer, qtbot, artifacts_dir):
    from napari_microseg.core.prompting.eval_data import load_dataset
    from napari_microseg.gui.widgets.label import LabelWidget
    from napari_microseg.gui.widgets.measure import viewer_camera

    root = shared_data / "ti-insitu-tem-defects"
    if not root.is_dir():
        pytest.skip(f"{root} not available")
    _, (sample,) = load_dataset(root, images=[FRAME])
    truth = np.asarray(sample.target)
    ids, counts = np.unique(truth[truth > 0], return_counts=True)
    small = [int(i) for i, c in zip(ids, counts, strict=True) if 40 <= c < 100]
    assert len(small) >= 15, len(small)

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    image = viewer.add_image(sample.image, name=FRAME)
    objects = viewer.add_labels(np.zeros(truth.shape, np.int32), name="objects")
    dock = LabelWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Label")
    dock.reset_choices()
    dock.image.value, dock.labels.value = image, objects
    dock.model.value = "microseg-promptable"
    assert dock.size_prior.value  # on by default
    dock.start_button.native.click()
    qtbot.waitUntil(lambda: dock.controller is not None and dock.controller.ready, timeout=60000)
    ctl = dock.controller

    def first_click(i):
        click(ctl.points, _centre(truth, i))
        qtbot.waitUntil(lambda: not ctl._busy and not ctl._dirty, timeout=20000)
        return np.asarray(ctl.preview.data) > 0

    for i in small[:5]:
        first_click(i)
        dock.commit_button.native.click()
    assert "First clicks now look for objects of about" in dock.status.text()
    assert len(np.unique(objects.data)) == 6

    ious = {False: [], True: []}
    for i in small[5:15]:
        for on in (False, True):
            if dock.size_prior.value != on:
                dock.size_prior.native.click()  # the check box, as a user ticks it
            ious[on].append(_iou(first_click(i), truth == i))
            ctl.next_object()
    off, on = float(np.mean(ious[False])), float(np.mean(ious[True]))
    print(f"ten small defects, first click: hint off {off:.3f}, hint on {on:.3f}")
    assert on >= off + 0.1, (ious[False], ious[True])

    out = artifacts_dir / "size_hint"
    out.mkdir(parents=True, exist_ok=True)
    r, c = _centre(truth, small[5])
    camera = viewer_camera(viewer)
    camera.center, camera.zoom = (r, c), 5
    for on in (False, True):
        if dock.size_prior.value != on:
            dock.size_prior.native.click()
        first_click(small[5])
        ctl.points.visible = False
        qtbot.wait(50)
        viewer.screenshot(str(out / f"hint_{'on' if on else 'off'}.png"), canvas_only=False)
        ctl.points.visible = True
        ctl.next_object()
    assert np.unique(objects.data).size == 6  # nothing but the five commits was written
