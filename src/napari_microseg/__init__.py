"""napari-microseg: calibrated defect statistics from SEM/TEM/STEM micrographs.

The package has two layers:

* :mod:`napari_microseg.core` -- pure Python (numpy, scikit-image, tifffile,
  torch). No Qt or napari import anywhere below it.
* :mod:`napari_microseg.gui` -- thin napari widgets, reader, writer and sample
  data that gather parameters, call the core and write layers.

The ``microseg`` command line (:mod:`napari_microseg.cli`) calls the same core
functions as the widgets.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
