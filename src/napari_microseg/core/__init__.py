"""Pure-Python core of napari-microseg.

Nothing in this package may import Qt, PyQt5, qtpy or napari; the test suite
imports every module here with those packages made unimportable.
"""
