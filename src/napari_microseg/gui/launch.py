"""Open napari with every napari-microseg dock widget and a micrograph loaded."""

from __future__ import annotations

PLUGIN = "napari-microseg"


def manifest():
    """The plugin's npe2 manifest, discovering installed plugins if needed."""
    from npe2 import PluginManager

    pm = PluginManager.instance()
    try:
        return pm.get_manifest(PLUGIN)
    except KeyError:
        pm.discover()
        return pm.get_manifest(PLUGIN)


def widget_names() -> list[str]:
    """Display names of the plugin's dock widgets, in manifest order."""
    return [w.display_name for w in manifest().contributions.widgets or []]


def sample_keys() -> list[str]:
    """Keys of the plugin's sample micrographs."""
    return [s.key for s in manifest().contributions.sample_data or []]


#: Widest a dock may grow, so the canvas keeps most of the window.
DOCK_MAX_WIDTH = 440


def dock_all(viewer) -> dict:
    """Dock every plugin widget on the right, tabified; return ``{name: widget}``."""
    docked, docks = {}, []
    for name in widget_names():
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
        getattr(widget, "native", widget).setMaximumWidth(DOCK_MAX_WIDTH)
        docked[name] = widget
        docks.append(dock)
    if docks:
        from qtpy.QtCore import QTimer

        # The first capability in the manifest in front, once the tabs exist.
        QTimer.singleShot(0, docks[0].raise_)
    return docked


def open_viewer(paths=(), sample: str | None = "tem_loops", show: bool = True):
    """A napari viewer with the plugin docked and ``paths`` (or a sample) open.

    Parameters
    ----------
    paths : sequence of str
        Micrographs to open with the plugin's reader.
    sample : str, optional
        Sample key to open when ``paths`` is empty.
    show : bool
        Show the window (``False`` for tests).
    """
    import napari

    viewer = napari.Viewer(title="napari-microseg", show=show)
    viewer.window.resize(1500, 950)
    dock_all(viewer)
    if paths:
        for p in paths:
            viewer.open(p, plugin=PLUGIN)
    elif sample:
        viewer.open_sample(PLUGIN, sample)
    viewer.reset_view()
    return viewer
