"""What the Statistics dock runs in its worker: measure every field, then the core study.

Each field (a Labels layer with its image) is measured with the Measure dock's
call (:func:`~napari_microseg.gui.measure_inputs.gather_inputs` then
:func:`~napari_microseg.core.measure.measure_image`), so a field's numbers are
the ones the Measure dock shows. Every statistic comes from
:mod:`napari_microseg.core.stats`; nothing here computes an interval.

The functions take plain arrays and dicts (gathered in the GUI thread) and run
in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# Imported here (when the dock is created), not first in the worker: a first import in the
# worker holds the import lock and stalls the GUI thread for most of a second.
from ..core.errors import MicrosegError
from ..core.measure import measure_image
from ..core.stats.compare import compare_studies
from ..core.stats.phases import phase_fractions, pooled_phase_fractions
from ..core.stats.study import study_from_folder, study_from_tables
from ..core.study_figures import draw_class_distribution, draw_class_fields, render_rgba

#: Name of class 0 (no object) in phase fractions.
BACKGROUND = "background"


@dataclass
class FieldInput:
    """One field of view: the Measure dock's inputs for a Labels layer, and its condition."""

    name: str
    inputs: dict
    group: str = "A"


@dataclass
class StudyOutcome:
    """Everything the Statistics dock shows and exports for one study.

    Attributes
    ----------
    study : napari_microseg.core.stats.study.Study
        Per-field and pooled tables, outliers, size distributions.
    phases : DataFrame or None
        Phase (class area) fractions per field, pixel and point count.
    phases_pooled : DataFrame or None
        The same pooled over the fields (area-weighted, between-field interval).
    comparison : dict of DataFrame
        Condition A versus B (empty until compared).
    images : dict
        ``{class_name: {"distribution": RGBA, "fields": RGBA}}``: the plots,
        rendered in the worker (:func:`render_class`).
    """

    study: object
    phases: pd.DataFrame | None = None
    phases_pooled: pd.DataFrame | None = None
    comparison: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)

    @property
    def conf(self) -> float:
        """Confidence level of every interval."""
        return float(self.study.settings["conf"])

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table for export: the study's, phase fractions, the comparison."""
        out = dict(self.study.to_tables())
        if self.phases is not None and len(self.phases):
            out["phases_per_field"] = self.phases
            out["phases_pooled"] = self.phases_pooled
        for name, df in self.comparison.items():
            out[f"compare_{name}"] = df
        return out


#: Pixel size (width, height) of the dock's plots.
PLOT_PX = (560, 320)


def warm_plots() -> None:
    """Render a little text once: Matplotlib's first text loads fonts holding the GIL for ~0.3 s.

    The dock runs this in a worker when it is created, so that the first study does not stall.
    """
    render_rgba(lambda fig: fig.text(0.5, 0.5, "μ σ 0.1 nm"), (40, 20))


def render_class(study, class_name: str = "all", size_px: tuple[int, int] = PLOT_PX) -> dict:
    """The dock's plots of one class as RGBA images, drawn off the GUI thread (Agg)."""
    def dist(fig):
        if not draw_class_distribution(fig, study, class_name, theme="dark", fontsize=7):
            fig.set_facecolor("#262930")
            fig.text(0.5, 0.5, f"no {class_name} objects", color="#d0d0d0", ha="center")

    return {"distribution": render_rgba(dist, size_px),
            "fields": render_rgba(lambda fig: draw_class_fields(fig, study, class_name, theme="dark", fontsize=7),
                                  size_px)}


def semantic_map(labels: np.ndarray, instance_classes: dict) -> np.ndarray:
    """Class id of every pixel: instance ids mapped through ``instance_classes`` (0 elsewhere)."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    lut = np.zeros(top + 1, np.int64)
    for i, c in instance_classes.items():
        if 0 < int(i) <= top:
            lut[int(i)] = int(c)
    return lut[labels]


def is_semantic(instance_classes: dict) -> bool:
    """Whether a labels layer holds class ids (every id is its own class, as the Predict dock's)."""
    return bool(instance_classes) and all(int(i) == int(c) for i, c in instance_classes.items())


def measure_field(fi: FieldInput, settings) -> tuple[pd.DataFrame, dict]:
    """``(objects table with a counted column, fields row)`` of one field."""
    kwargs = {k: v for k, v in fi.inputs.items() if k != "image_path"}
    result = measure_image(settings=settings, **kwargs)
    table = result.table.copy()
    table["counted"] = np.asarray(result.counting.counted, bool)
    c = result.counting
    row = {"name": fi.name, "area": float(c.reference_area), "unit": c.unit,
           "thickness_nm": settings.thickness_nm if settings.thickness_nm else np.nan}
    return table, row


def field_phases(fi: FieldInput, *, grid_spacing_px: int, conf: float) -> pd.DataFrame:
    """Phase fractions of one field: its class image (instances mapped to their class)."""
    inp = fi.inputs
    sem = semantic_map(inp["labels"], inp.get("instance_classes") or {})
    mask = inp.get("analysis_mask")
    present = np.unique(sem if mask is None else sem[np.asarray(mask, bool)])
    table = inp.get("classes")
    known = table.names() if table is not None else {}
    names = {int(c): (BACKGROUND if c == 0 else known.get(int(c), f"class {int(c)}")) for c in present}
    step = min(int(grid_spacing_px), *sem.shape)
    df = phase_fractions(sem, names, grid_spacing_px=step, analysis_mask=mask, conf=conf)
    df.insert(0, "field", fi.name)
    return df


def phase_tables(fields: list[FieldInput], *, grid_spacing_px: int, conf: float, all_fields: bool):
    """``(per field, pooled)`` phase fractions of the class-labelled fields, or ``(None, None)``."""
    chosen = [fi for fi in fields if fi.inputs.get("instance_classes")
              and (all_fields or is_semantic(fi.inputs["instance_classes"]))]
    if not chosen:
        return None, None
    frames = [field_phases(fi, grid_spacing_px=grid_spacing_px, conf=conf) for fi in chosen]
    pooled = pooled_phase_fractions([f.drop(columns="field") for f in frames], conf=conf)
    if "field" in pooled:
        pooled = pooled.drop(columns="field")
    return pd.concat(frames, ignore_index=True), pooled


def measured_study(fields: list[FieldInput], settings, **opts):
    """Generator: measure every field (yields how many are done), return the core :class:`Study`."""
    tables, rows = {}, []
    for i, fi in enumerate(fields):
        tables[fi.name], row = measure_field(fi, settings)
        rows.append(row)
        yield i + 1
    units = {r["unit"] for r in rows}
    if len(units) > 1:
        px = [r["name"] for r in rows if r["unit"] == "px"]
        raise MicrosegError(f"Field(s) {', '.join(px)} are uncalibrated (px) while others are in nm: "
                            "set their pixel size in the Calibration dock or untick them.")
    return study_from_tables(tables, pd.DataFrame(rows), **opts)


def run_study(fields: list[FieldInput], settings, *, conf: float, seed: int, bins: int,
              phases: bool = True, grid_spacing_px: int = 16, all_phases: bool = False):
    """Generator: measure every field (yield the count done), then return a :class:`StudyOutcome`."""
    if not fields:
        raise MicrosegError("Tick at least one field (a Labels layer) for the study.")
    study = yield from measured_study(fields, settings, conf=conf, seed=seed, bins=bins)
    per, pooled = (phase_tables(fields, grid_spacing_px=grid_spacing_px, conf=conf, all_fields=all_phases)
                   if phases else (None, None))
    return StudyOutcome(study, per, pooled, images={"all": render_class(study)})


def folder_study(folder, **opts):
    """The core study of a folder of per-object tables (a batch output or measure exports)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MicrosegError(f"{folder} is not a folder.")
    return study_from_folder(folder, **opts)


def run_folder_study(folder, *, conf: float, seed: int, bins: int) -> StudyOutcome:
    """A :class:`StudyOutcome` of a folder of per-object tables."""
    study = folder_study(folder, conf=conf, seed=seed, bins=bins)
    return StudyOutcome(study, images={"all": render_class(study)})


def run_compare(a, b, *, settings=None, conf: float = 0.95, seed: int = 0):
    """Generator: study condition A and B (field lists or folders), return their comparison tables."""
    studies = []
    for which, src in (("A", a), ("B", b)):
        if isinstance(src, (str, Path)):
            studies.append(folder_study(src, conf=conf, seed=seed))
        else:
            if not src:
                raise MicrosegError(f"Condition {which} has no field: set some fields to {which}.")
            studies.append((yield from measured_study(src, settings, conf=conf, seed=seed)))
    return compare_studies(studies[0], studies[1], seed=seed, conf=conf)
