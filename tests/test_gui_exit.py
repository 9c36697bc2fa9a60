"""A test run (and the app) ends even when a background worker is still running.

QApplication's destructor waits for every thread of Qt's global pool: a worker left
running makes pytest hang after its last test for as long as the worker runs, then
abort (the worker's signals were deleted meanwhile). ``stop_workers`` (called by tests/conftest.py at
the end of the session, and by ``microseg gui`` when its window closes) ends them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]

LEFTOVER = '''
import time


def test_leaves_a_generator_worker_running(qapp):
    from napari_microseg.gui.workers import start_worker

    def forever():
        while True:
            time.sleep(0.05)
            yield

    start_worker(forever)
    time.sleep(0.2)


def test_leaves_a_function_worker_running(qapp):
    from napari_microseg.gui.workers import start_worker

    def slow():  # still running when the session ends
        time.sleep(5)
        return 1

    start_worker(slow)
'''


def test_session_ends_with_workers_left_running(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_leftover.py").write_text(LEFTOVER, encoding="utf-8")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_leftover.py"]
    t0 = time.monotonic()
    try:
        out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"pytest hung at exit with a worker running:\n{e.stdout}\n{e.stderr}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
    assert time.monotonic() - t0 < 120


def test_stop_workers_ends_generator_and_waits_for_function(qapp):
    from napari_microseg.gui.workers import start_worker, stop_workers

    ended = []

    def forever():
        while True:
            time.sleep(0.02)
            yield

    def slow():
        time.sleep(0.5)
        return "slow"

    start_worker(forever, on_finished=lambda: ended.append("forever"))
    start_worker(slow, on_finished=lambda: ended.append("slow"))  # its result is dropped
    time.sleep(0.1)
    assert stop_workers(msecs=10_000) == []
    assert sorted(ended) == ["forever", "slow"]


def test_stop_workers_names_a_worker_that_does_not_stop(qapp):
    from napari_microseg.gui.workers import start_worker, stop_workers

    release = []

    def stubborn():  # never yields, so quit() cannot stop it
        while not release:
            time.sleep(0.02)

    start_worker(stubborn)
    time.sleep(0.1)
    try:
        left = stop_workers(msecs=200)
    finally:
        release.append(True)
    assert left and "stubborn" in left[0]
    assert stop_workers(msecs=10_000) == []
