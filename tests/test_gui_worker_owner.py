"""A worker that ends after its dock was closed does not write to the deleted dock.

Closing the viewer (or a dock) deletes its Qt widgets while Python still holds
them; a worker's callback that then sets a label's text raised "wrapped C/C++
object ... has been deleted" in Qt's event loop (the Label dock's model switch
did, in CI).
"""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.gui


def test_callbacks_are_skipped_once_their_owner_is_deleted(qtbot):
    from qtpy import sip
    from qtpy.QtWidgets import QLabel, QWidget

    from napari_microseg.gui.workers import alive, start_worker

    dock = QWidget()
    label = QLabel(dock)
    go, seen = threading.Event(), []

    def work():
        go.wait(10)
        return "done"

    worker = start_worker(work, on_returned=label.setText, on_finished=lambda: seen.append("finished"),
                          owner=dock)
    sip.delete(dock)  # what closing the window does to a dock's widgets
    assert not alive(dock) and not alive(label)
    ended = []
    worker.finished.connect(lambda: ended.append(True))
    go.set()
    qtbot.waitUntil(lambda: bool(ended), timeout=10000)  # no RuntimeError raised in the event loop
    assert seen == []


def test_callbacks_run_while_the_owner_lives(qtbot):
    from qtpy.QtWidgets import QLabel

    from napari_microseg.gui.workers import start_worker

    label = QLabel()
    qtbot.addWidget(label)
    worker = start_worker(lambda: "done", on_returned=label.setText, owner=label)
    qtbot.waitUntil(lambda: label.text() == "done", timeout=10000)
    assert worker is not None
