"""The package must run on any Qt binding napari supports (PyQt5 with napari <= 0.9,
PyQt6 with napari 0.10), so it talks to Qt only through ``qtpy`` and only with
spellings that exist in every binding.

These are source checks (no Qt needed): they read every module under ``src``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_microseg"
BINDINGS = ("PyQt5", "PyQt6", "PySide2", "PySide6", "sip", "shiboken2", "shiboken6")
QT_MODULES = {"QtCore", "QtGui", "QtWidgets", "QtTest", "QtSvg", "QtOpenGL", "QtOpenGLWidgets"}
#: ``Qt.AlignCenter`` / ``QFrame.NoFrame``: a member reached through its class without
#: naming its enum. PyQt6 only has the scoped form (``Qt.AlignmentFlag.AlignCenter``),
#: which PyQt5 >= 5.11 also has; the short form works on PyQt6 only through qtpy's patching.
SHORT_ENUM = re.compile(r"\b(Q[A-Z][A-Za-z]*|Qt)\.([A-Z][A-Za-z0-9_]*)\b(?!\s*[.(])")
#: Method names that exist in one binding only.
ONE_BINDING_CALLS = re.compile(r"\.(exec_|print_)\(|\.desktop\(\)|QRegExp\b|\bpyqtSignal\b|\bpyqtSlot\b")


def _modules() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert files, f"no modules found under {SRC}"
    return files


def _imported_roots(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value.split(".")[0]))
    return found


def _code_lines(path: Path):
    """(line number, text) of each line with comments and docstring-only lines stripped."""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield i, code


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_direct_binding_import(path):
    bad = [f"{path.name}:{n}: imports {mod}" for n, mod in _imported_roots(path) if mod in BINDINGS]
    assert not bad, "import Qt through qtpy only:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_single_binding_spelling(path):
    text = path.read_text(encoding="utf-8")
    if "qtpy" not in text:
        return
    bad = []
    for n, code in _code_lines(path):
        for m in SHORT_ENUM.finditer(code):
            if m.group(1) in QT_MODULES or m.group(2).isupper():
                continue
            bad.append(f"{path.name}:{n}: {m.group(0)} (use the scoped enum, e.g. Qt.AlignmentFlag.X)")
        for m in ONE_BINDING_CALLS.finditer(code):
            bad.append(f"{path.name}:{n}: {m.group(0)} exists in one Qt binding only")
    assert not bad, "\n".join(bad)


def test_checker_catches_short_enums(tmp_path):
    """The pattern flags the spellings PyQt6 lacks and passes the scoped ones."""
    assert SHORT_ENUM.search("p.drawText(r, Qt.AlignCenter, s)")
    assert SHORT_ENUM.search("scroll.setFrameShape(QFrame.NoFrame)")
    assert not SHORT_ENUM.search("p.drawText(r, Qt.AlignmentFlag.AlignCenter, s)")
    assert not SHORT_ENUM.search("QTimer.singleShot(0, f)")
    assert ONE_BINDING_CALLS.search("app.exec_()")
    mod = tmp_path / "m.py"
    mod.write_text("from PyQt5.QtWidgets import QWidget\nimport PyQt6\n", encoding="utf-8")
    assert [m for _, m in _imported_roots(mod)] == ["PyQt5", "PyQt6"]


def test_packaging_forces_no_binding():
    """Base requirements name qtpy only; each binding comes from an extra."""
    import tomllib

    meta = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in meta["dependencies"]]
    assert "qtpy" in base
    assert not {"pyqt5", "pyqt6", "pyside2", "pyside6"} & set(base), base
    extras = meta["optional-dependencies"]
    assert any(d.lower().startswith("pyqt6") for d in extras["pyqt6"])
    assert any(d.lower().startswith("pyqt5") for d in extras["pyqt5"])


def test_readme_names_the_stack_setup_installs():
    """Switching the default stack is one line in scripts/setup.sh; the README follows it."""
    repo = SRC.parents[1]
    setup = (repo / "scripts" / "setup.sh").read_text(encoding="utf-8")
    m = re.search(r"^MICROSEG_QT=\$\{MICROSEG_QT:-(pyqt[56])\}$", setup, re.M)
    assert m, "scripts/setup.sh must set the default Qt stack as MICROSEG_QT=${MICROSEG_QT:-pyqtN}"
    default = m.group(1)
    other = "pyqt5" if default == "pyqt6" else "pyqt6"
    readme = (repo / "README.md").read_text(encoding="utf-8")
    head = readme.split("\n---\n", 1)[0]  # the setup/run/test section at the top
    assert f"Both commands install the **{default.replace('pyqt', 'PyQt')} stack**" in head
    assert f"MICROSEG_QT={other}" in head, f"README must say how to pick the {other} stack"
