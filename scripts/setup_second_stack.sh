#!/usr/bin/env bash
# Make a virtual environment with the other Qt stack than scripts/setup.sh installed, to
# run the GUI tests there too (CI does; see .ci/run). Run scripts/setup.sh first: the
# environment reuses its packages (--system-site-packages: torch, SAM2, ...) and adds only
# napari, the Qt binding and the plugin itself on top.
#
#   MICROSEG_QT=pyqt5 bash scripts/setup_second_stack.sh [VENV_DIR]
#   QT_API=pyqt5 PYTEST_QT_API=pyqt5 VENV_DIR/bin/python -m pytest -m gui
#
# MICROSEG_QT: pyqt5 (napari 0.9 + PyQt5) or pyqt6 (napari 0.10 + PyQt6).
# VENV_DIR defaults to ${TMPDIR:-/tmp}/microseg-venv-$MICROSEG_QT. QT_API must be set
# when running in it: the main environment's binding is visible there too.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
STACK=${MICROSEG_QT:-pyqt5}
VENV=${1:-${TMPDIR:-/tmp}/microseg-venv-$STACK}
case "$STACK" in
  pyqt6) NAPARI_REQ="napari>=0.10.0rc1" ;;
  pyqt5) NAPARI_REQ="napari>=0.5,<0.10" ;;
  *) echo "setup_second_stack: MICROSEG_QT must be pyqt6 or pyqt5, not '$STACK'" >&2; exit 2 ;;
esac

export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_second_stack: creating $VENV (on top of $($PY -c 'import sys; print(sys.prefix)'))"
  $PY -m venv --system-site-packages "$VENV"
  # When $PY is itself a virtual environment, --system-site-packages reaches only its base
  # interpreter: also let the new environment see the packages setup.sh installed.
  parent=$($PY -c 'import sys, sysconfig; print(sysconfig.get_paths()["purelib"] if sys.prefix != sys.base_prefix else "")')
  if [ -n "$parent" ]; then
    "$VENV/bin/python" -c 'import sys, sysconfig; open(sysconfig.get_paths()["purelib"] + "/_microseg_main_env.pth", "w").write(sys.argv[1] + "\n")' "$parent"
  fi
fi
echo "setup_second_stack: installing the $STACK stack ($NAPARI_REQ) into $VENV"
"$VENV/bin/python" -m pip install -q -e ".[test,$STACK]" "$NAPARI_REQ"
# Fail here, with the versions, if the stack does not import (rather than in every test).
QT_API=$STACK "$VENV/bin/python" -c '
import napari, napari_microseg, qtpy
print("setup_second_stack: done (napari", napari.__version__, "|", qtpy.API_NAME, qtpy.QT_VERSION,
      "| napari-microseg", napari_microseg.__version__, ")")
'
