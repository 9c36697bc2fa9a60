"""Shared fixtures and marker handling for the napari-microseg test suite."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real labelled micrographs, read in place (never copied into the repo).
SHARED_DATA = Path(os.environ.get("MICROSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
#: Where GUI tests put screenshots for a person to look at.
ARTIFACTS = Path(os.environ.get("MICROSEG_TEST_ARTIFACTS", REPO / "test-artifacts"))

# The plugin sets napari's reader preferences when it is activated: tests must not
# change the settings of the person who runs them (napari reads NAPARI_CONFIG at import).
_SETTINGS_DIR = Path(tempfile.mkdtemp(prefix="microseg-test-settings-"))
os.environ.setdefault("NAPARI_CONFIG", str(_SETTINGS_DIR / "napari-settings.yaml"))
os.environ.setdefault("MICROSEG_CONFIG_DIR", str(_SETTINGS_DIR / "napari-microseg"))
# qtpy (so napari and the plugin) picks the binding QT_API names; pytest-qt guesses its
# own (PyQt6 before PyQt5) unless told: with both installed they must not differ.
if os.environ.get("QT_API") and not os.environ.get("PYTEST_QT_API"):
    os.environ["PYTEST_QT_API"] = os.environ["QT_API"]


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is available")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


def pytest_sessionfinish(session, exitstatus):
    """Stop the plugin's background workers before the interpreter exits.

    QApplication's destructor waits (holding the interpreter) for every thread of
    Qt's global pool: a worker a test left running made the run hang after its
    last test (seen on napari 0.10 + PyQt6). Stop them here; fail the run, naming
    them, when they do not stop.
    """
    workers = sys.modules.get("napari_microseg.gui.workers")
    if workers is None:
        return
    left = workers.stop_workers(msecs=60_000)
    if left:
        session.config._microseg_stuck_workers = left
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nbackground workers still running after the tests: {', '.join(left)}", file=sys.stderr)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without QApplication's wait when workers never stopped (the run already failed)."""
    if getattr(config, "_microseg_stuck_workers", None):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(pytest.ExitCode.TESTS_FAILED))


@pytest.fixture
def shared_data() -> Path:
    """The ``shared/data`` folder beside the checkout; skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real micrographs not available: {SHARED_DATA} does not exist (they live beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def creme(shared_data) -> Path:
    """The creme 316L in-situ TEM loops set (12 images with masks and COCO)."""
    path = shared_data / "creme-316L-loops"
    if not path.is_dir():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Folder for screenshots and other files a person should look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def torch_one_thread():
    """Run a test with one torch thread, restoring the setting afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- the user journeys (tests/test_journey*.py) ---------------------------------------------


@pytest.fixture
def journey_env(tmp_path, monkeypatch, torch_one_thread):
    """Private model, run, cache and config folders (a user who never ran napari-microseg:
    no reader preference recorded yet); one torch thread for the training child."""
    for var, sub in (("MICROSEG_MODELS_DIR", "models"), ("MICROSEG_RUNS_DIR", "runs"),
                     ("MICROSEG_CACHE_DIR", "cache"), ("MICROSEG_WEIGHTS_DIR", "weights"),
                     ("MICROSEG_CONFIG_DIR", "config"), ("XDG_CONFIG_HOME", "xdg-config")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setattr("napari_microseg.gui.widgets.train.training_threads", lambda: 1)
    return tmp_path


@pytest.fixture
def journey_window(journey_env, make_napari_viewer, monkeypatch, qtbot):
    """The window ``microseg gui`` opens (open_viewer), made through napari's test fixture."""
    import napari

    from napari_microseg.gui import launch

    docked = {}
    dock_all = launch.dock_all

    def keep(viewer):  # the docks open_viewer adds, by display name
        docked.update(dock_all(viewer))
        return docked

    # As at a fresh start of napari: the plugin is activated when its docks open (after
    # make_napari_viewer reset napari's settings), even if an earlier test activated it.
    from npe2 import PluginManager

    launch.manifest()  # discovered (the first GUI test of a run discovers the plugins)
    PluginManager.instance().deactivate(launch.PLUGIN)
    monkeypatch.setattr(napari, "Viewer", lambda **kw: make_napari_viewer(**kw))
    monkeypatch.setattr(launch, "dock_all", keep)
    viewer = launch.open_viewer((), sample=None, show=True)
    qtbot.waitExposed(viewer.window._qt_window)
    return viewer, docked
