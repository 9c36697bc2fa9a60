"""napari side of napari-microseg: reader, writer, sample data and dock widgets.

Everything here is thin: it gathers parameters, calls :mod:`napari_microseg.core`
and turns results into layers.
"""
