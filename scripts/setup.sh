#!/usr/bin/env bash
# Set up napari-microseg on a fresh Debian/Ubuntu machine: system libraries for
# Qt under X11 (and Xvfb for headless tests), PyTorch, SAM2 and the plugin.
# Safe to run again: installed pieces are skipped by apt and pip.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# Qt stack (one line to switch the default): pyqt6 = napari 0.10 (pre-release until the
# final is on PyPI) + PyQt6; pyqt5 = napari 0.9 + PyQt5 (napari deprecated PyQt5 in 0.8
# and dropped it in 0.10). Pick the other one with MICROSEG_QT=pyqt5 bash scripts/setup.sh
MICROSEG_QT=${MICROSEG_QT:-pyqt6}
case "$MICROSEG_QT" in
  pyqt6) NAPARI_REQ="napari>=0.10.0rc1"; OTHER_BINDING=(PyQt5 PyQt5-Qt5 PyQt5-sip) ;;
  pyqt5) NAPARI_REQ="napari>=0.5,<0.10"; OTHER_BINDING=(PyQt6 PyQt6-Qt6 PyQt6-sip) ;;
  *) echo "setup: MICROSEG_QT must be pyqt6 or pyqt5, not '$MICROSEG_QT'" >&2; exit 2 ;;
esac
APT_PACKAGES=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0
  libxcb-render-util0 libxkbcommon-x11-0 libxcb-randr0 libxcb-shape0 libxcb-xfixes0
  libxcb-cursor0 libgl1 libegl1 libfontconfig1 libdbus-1-3)

if command -v apt-get >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not a Debian-like system; install Qt's X11 libraries (and Xvfb for tests) yourself" >&2
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
# PyTorch from PyPI (CUDA build; it also runs on CPU, and torchvision needs it).
$PY -m pip install -q torch torchvision
# SAM2 builds against the installed torch; no CUDA extension needed.
$PY -m pip install -q setuptools wheel
$PY -c "import sam2" 2>/dev/null || SAM2_BUILD_CUDA=0 $PY -m pip install -q --no-build-isolation sam2==1.1.0
echo "setup: Qt stack $MICROSEG_QT ($NAPARI_REQ)"
$PY -m pip install -q -e ".[test,$MICROSEG_QT]" "$NAPARI_REQ"
# One binding per environment: qtpy (so napari) picks PyQt5 first and pytest-qt PyQt6
# first when both are installed, and napari 0.10 refuses PyQt5.
for pkg in ${OTHER_BINDING[@]+"${OTHER_BINDING[@]}"}; do
  if $PY -m pip show -q "$pkg" >/dev/null 2>&1; then
    echo "setup: removing $pkg (the $MICROSEG_QT stack uses the other Qt binding)"
    $PY -m pip uninstall -q -y "$pkg"
  fi
done
echo "setup: done ($($PY -c 'import napari_microseg as m, napari, qtpy; print("napari-microseg", m.__version__, "| napari", napari.__version__, "|", qtpy.API_NAME, qtpy.QT_VERSION)'))"
