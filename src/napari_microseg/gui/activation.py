"""What napari-microseg does when napari activates it (npe2 ``on_activate``).

It makes the plugin napari's default for what it is for: its calibrated reader
opens micrograph files (unless the user assigned those files to another reader)
and its labels writer (TIFF + class sidecar) comes before napari's builtin one.
"""

from __future__ import annotations

import warnings


def on_activate(ctx=None) -> None:
    """Set the default reader and writer order; never fails the activation."""
    from .reader import prefer_plugin_reader
    from .writer import prefer_plugin_writers

    try:
        prefer_plugin_writers()
        prefer_plugin_reader()
    except Exception as e:  # a preference must never break the plugin's activation
        warnings.warn(f"napari-microseg could not set itself as the default reader/writer: {e}", stacklevel=2)
