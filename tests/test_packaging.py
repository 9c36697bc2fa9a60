"""The wheel carries the npe2 manifest and it validates from the installed files."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
    )
    (whl,) = out.glob("napari_microseg-*.whl")
    return whl


def test_wheel_contains_manifest_and_entry_points(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "napari_microseg/napari.yaml" in names
        manifest = z.read("napari_microseg/napari.yaml").decode()
        assert manifest == (REPO / "napari.yaml").read_text()
        ep = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "napari-microseg = napari_microseg:napari.yaml" in ep
    # the offline promptable model ships inside the wheel (resources/ is linked into the package)
    assert "napari_microseg/resources/models/microseg-promptable/weights.pt" in names
    assert "napari_microseg/resources/models/microseg-promptable/model_card.json" in names
    assert "microseg = napari_microseg.cli:main" in ep


def test_manifest_from_installed_wheel_validates_with_imports(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
    )
    manifest = target / "napari_microseg" / "napari.yaml"
    assert manifest.is_file() and not manifest.is_symlink()
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", str(manifest), "--imports"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout
    # the code validated is the wheel's, not the checkout's
    check = subprocess.run(
        [sys.executable, "-c", "import napari_microseg; print(napari_microseg.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert check.stdout.strip().startswith(str(target))
