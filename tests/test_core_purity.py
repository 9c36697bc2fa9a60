"""The core must import without Qt or napari (architecture rule)."""

import subprocess
import sys
from pathlib import Path

import napari_microseg

CORE = Path(napari_microseg.__file__).parent / "core"

BLOCKER = r"""
import importlib, importlib.abc, sys

BANNED = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BANNED:
            raise ImportError(f"banned import in core: {name}")
        return None

sys.meta_path.insert(0, Block())
import pathlib
import napari_microseg.core as core
root = pathlib.Path(core.__file__).parent
mods = sorted(
    "napari_microseg.core." + ".".join(p.relative_to(root).with_suffix("").parts)
    for p in root.rglob("*.py") if p.name != "__init__.py"
)
for m in mods:
    importlib.import_module(m)
leaked = sorted(k for k in sys.modules if k.split(".")[0] in BANNED)
assert not leaked, leaked
print(len(mods))
"""


def test_every_core_module_imports_without_qt_or_napari():
    out = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    n = int(out.stdout.strip().splitlines()[-1])
    expected = len([p for p in CORE.rglob("*.py") if p.name != "__init__.py"])
    assert n >= expected, f"only {n} core modules imported, expected at least {expected}"


def test_blocker_really_blocks():
    """Guard against a vacuous test: the blocker must reject napari."""
    code = BLOCKER.replace("import napari_microseg.core as core", "import napari")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "banned import" in out.stderr
