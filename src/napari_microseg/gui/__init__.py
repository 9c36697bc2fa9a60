"""napari side of napari-microseg: reader, writer, sample data and dock widgets.

Everything here is thin: it gathers parameters, calls :mod:`napari_microseg.core`
and turns results into layers.
"""

from .torch_guard import block_triton

# Any napari-side import comes through here, before sam2/torchvision can pull Triton in.
block_triton()
