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
#: Lowest a dock may be squeezed before its content scrolls.
DOCK_MIN_HEIGHT = 120


def make_scrollable(qwidget):
    """Move the content of ``qwidget``'s box layout into a scroll area inside it.

    The widget object (and its parent, the dock) stays the same, so code that
    holds the widget keeps working; only its content scrolls when the dock is
    shorter than the content. Returns the scroll area, or ``None`` (and changes
    nothing) for widgets without a box layout or that already scroll.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QBoxLayout, QFrame, QScrollArea, QVBoxLayout, QWidget

    lay = qwidget.layout()
    if not isinstance(lay, QBoxLayout) or lay.count() == 0:
        return None
    if lay.count() == 1 and isinstance(lay.itemAt(0).widget(), QScrollArea):
        return None
    inner = QWidget()
    inner.setObjectName("microseg_scroll_content")
    box = QVBoxLayout(inner)
    box.setContentsMargins(lay.contentsMargins())
    box.setSpacing(lay.spacing())
    while lay.count():
        stretch = lay.stretch(0)
        item = lay.takeAt(0)
        if item.widget() is not None:
            box.addWidget(item.widget(), stretch)
        elif item.layout() is not None:
            sub = item.layout()
            sub.setParent(None)
            box.addLayout(sub, stretch)
        else:
            box.addItem(item)
    scroll = QScrollArea(qwidget)
    scroll.setObjectName("microseg_scroll")
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    # Up and down only: a dock never scrolls sideways (its width is the dock's).
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(inner)
    # as wide as the content (with room for the vertical bar), so nothing is cut off
    scroll.setMinimumWidth(inner.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(scroll)
    qwidget.setMinimumHeight(0)
    return scroll


def fit_to_screen(window) -> None:
    """Shrink a top-level window so that its frame fits the screen's available area."""
    screen = window.screen() if hasattr(window, "screen") else None
    if screen is None:
        from qtpy.QtWidgets import QApplication

        screen = QApplication.primaryScreen()
    avail = screen.availableGeometry()
    frame = window.frameGeometry()
    extra_h = frame.height() - window.height()
    extra_w = frame.width() - window.width()
    w = min(window.width(), avail.width() - extra_w)
    h = min(window.height(), avail.height() - extra_h)
    if (w, h) != (window.width(), window.height()):
        window.resize(w, h)
    frame = window.frameGeometry()
    if not avail.contains(frame):
        window.move(max(avail.left(), min(frame.left(), avail.right() - frame.width() + 1)),
                    max(avail.top(), min(frame.top(), avail.bottom() - frame.height() + 1)))


def readable_dock_tabs(window) -> None:
    """Put tabified dock tabs on the side and never elide their names."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QTabBar, QTabWidget

    window.setTabPosition(Qt.DockWidgetArea.RightDockWidgetArea, QTabWidget.TabPosition.West)
    for bar in window.findChildren(QTabBar):
        if bar.parent() is window:  # dock-area tab bars (not tabs inside the docks)
            bar.setElideMode(Qt.TextElideMode.ElideNone)
            bar.setUsesScrollButtons(True)
            bar.setExpanding(False)


def dock_all(viewer) -> dict:
    """Dock every plugin widget on the right, tabified; return ``{name: widget}``.

    Each dock scrolls inside itself (the window never has to grow to show a
    long dock), its tab reads the widget's name, and the window is kept inside
    the screen.
    """
    from qtpy.QtCore import QTimer

    window = viewer.window._qt_window
    docked, docks = {}, []
    for name in widget_names():
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
        qwidget = getattr(widget, "native", widget)
        # magicgui containers manage their own layout
        scroll = None if hasattr(widget, "native") else make_scrollable(qwidget)
        need = scroll.minimumWidth() if scroll is not None else qwidget.minimumSizeHint().width()
        # at most DOCK_MAX_WIDTH, unless the content needs more (it is never cut off)
        qwidget.setMaximumWidth(max(DOCK_MAX_WIDTH, need))
        dock.setMinimumHeight(min(dock.minimumHeight(), DOCK_MIN_HEIGHT))
        dock.setWindowTitle(name)  # the tab text: "Measure", not "Measure (napari-microseg)"
        docked[name] = widget
        docks.append(dock)
    readable_dock_tabs(window)
    fit_to_screen(window)

    def settle():
        readable_dock_tabs(window)  # Qt creates the tab bars lazily
        if docks:
            docks[0].raise_()  # the first capability in the manifest in front
        fit_to_screen(window)

    QTimer.singleShot(0, settle)
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
    fit_to_screen(viewer.window._qt_window)
    if paths:
        for p in paths:
            viewer.open(p, plugin=PLUGIN)
    elif sample:
        viewer.open_sample(PLUGIN, sample)
    viewer.reset_view()
    return viewer
