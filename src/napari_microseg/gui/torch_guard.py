"""Keep Triton out of the napari process.

Triton ships its own LLVM. Loaded into a process where Mesa's software OpenGL
driver (llvmpipe, common on VMs, remote desktops and Xvfb) has already loaded
the system LLVM, it crashes the interpreter with a segmentation fault. torch
and torchvision import Triton opportunistically, only for ``torch.compile`` on
GPUs, which napari-microseg never uses. In the GUI process we therefore make
``import triton`` fail cleanly before anything imports it; torch then behaves
as if Triton were not installed. Set ``MICROSEG_ALLOW_TRITON=1`` to opt out.
"""

from __future__ import annotations

import os
import sys


def block_triton() -> bool:
    """Make ``import triton`` raise ImportError in this process; return whether it did."""
    if os.environ.get("MICROSEG_ALLOW_TRITON") == "1" or "triton" in sys.modules:
        return False
    sys.modules["triton"] = None  # documented way to make an import fail
    return True
