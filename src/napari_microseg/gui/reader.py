"""npe2 reader: micrographs (with calibration) and napari-microseg labels files.

napari asks which plugin should open a TIFF or PNG (several readers accept them)
unless ``settings.plugins.extension2reader`` names one. :func:`prefer_plugin_reader`
(run when the plugin is activated) names napari-microseg for the micrograph
patterns the user has not assigned, once: a choice the user makes or removes in
Preferences > Plugins is never overridden.
"""

from __future__ import annotations

import json
from fnmatch import fnmatch
from pathlib import Path

from ..core.errors import MicrosegError
from ..core.labels_io import SIDECAR_FORMAT, read_labels, sidecar_path
from ..core.reading import is_supported, read_micrograph
from .layer_data import labels_layer, micrograph_layer


def get_reader(path):
    """Return a reader for one supported file, or ``None`` (napari then tries others)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not is_supported(path):
        return None
    return read_path


def is_labels_file(path) -> bool:
    """Whether ``path`` is a labels TIFF written by napari-microseg (has our sidecar)."""
    side = sidecar_path(path)
    if Path(path).suffix.lower() not in (".tif", ".tiff") or not side.exists():
        return False
    try:
        return json.loads(side.read_text()).get("format") == SIDECAR_FORMAT
    except (OSError, ValueError):
        return False


def read_path(path) -> list[tuple]:
    """Read one file into layer data; errors become napari notifications.

    A napari-microseg labels TIFF becomes a Labels layer with its classes;
    anything else an Image layer in nm with the instrument metadata.
    """
    from napari.utils.notifications import show_error, show_warning

    if isinstance(path, list):
        path = path[0]
    try:
        if is_labels_file(path):
            rec = read_labels(path)
            return [
                labels_layer(
                    rec.labels,
                    instance_classes=rec.instance_classes,
                    classes=rec.classes,
                    pixel_size=rec.pixel_size,
                    name=Path(path).stem,
                    metadata={"provenance": rec.metadata, "source_path": str(path)},
                )
            ]
        mg = read_micrograph(path)
    except (MicrosegError, FileNotFoundError) as e:
        show_error(str(e))
        # An empty list tells napari the file was handled (no second error dialog).
        return [(None,)]
    for w in mg.warnings:
        show_warning(w)
    return [micrograph_layer(mg)]


PLUGIN = "napari-microseg"


def reader_patterns() -> list[str]:
    """The filename patterns of the plugin's reader, from its npe2 manifest."""
    from .launch import manifest

    return [pat for r in manifest().contributions.readers or [] for pat in r.filename_patterns]


def preference_record() -> Path:
    """File listing the reader patterns already assigned to napari-microseg once.

    It lives in ``MICROSEG_CONFIG_DIR`` when that is set, else in the per-user
    configuration folder.
    """
    import os

    import platformdirs

    base = os.environ.get("MICROSEG_CONFIG_DIR") or platformdirs.user_config_dir("napari-microseg")
    return Path(base) / "reader_preferences.json"


def _user_chose(prefs: dict, pattern: str) -> bool:
    """Whether a reader preference of the user already covers files matching ``pattern``."""
    example = "micrograph" + pattern.lstrip("*")
    return pattern in prefs or any(fnmatch(example, key) or fnmatch("/" + example, key) for key in prefs)


def prefer_plugin_reader(settings=None, record: Path | None = None) -> list[str]:
    """Make napari-microseg napari's default reader for micrograph files, where the user has not chosen.

    Parameters
    ----------
    settings : napari.settings.NapariSettings, optional
        Settings to change (default: napari's own).
    record : Path, optional
        JSON file remembering the patterns assigned before (default
        :func:`preference_record`); a pattern listed there is never assigned again,
        so removing the association in Preferences sticks.

    Returns
    -------
    list of str
        The patterns newly assigned (``"*.tif"``, ...).
    """
    from napari.settings import get_settings

    settings = settings or get_settings()
    record = Path(record) if record is not None else preference_record()
    try:
        done = set(json.loads(record.read_text())) if record.exists() else set()
    except (OSError, ValueError):
        done = set()
    prefs = dict(settings.plugins.extension2reader)
    added = [pat for pat in reader_patterns() if pat not in done and not _user_chose(prefs, pat)]
    if added:
        prefs.update(dict.fromkeys(added, PLUGIN))
        settings.plugins.extension2reader = prefs
    try:
        from ..core.atomic import write_json_atomic

        write_json_atomic(record, sorted(done | set(reader_patterns())))
    except OSError:  # a read-only config folder only means we may ask again next time
        pass
    return added
