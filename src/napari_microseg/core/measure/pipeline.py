"""One call from labels to every number: :func:`measure_image`.

The Measure dock, ``microseg measure`` and the batch runner all go through
here, so the same :class:`MeasureSettings` give the same tables everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .. import bounds
from ..calibration import PixelSize
from ..classes import ClassTable
from ..errors import MicrosegError
from . import blockwise
from .hardening import HardeningParameters, HardeningResult, dispersed_barrier_hardening
from .objects import measure_objects
from .statistics import (
    EDGE_MODES,
    Counting,
    SizeDistribution,
    count_objects,
    size_distributions,
    summarize,
)

#: Largest foil thickness accepted (nm): 1 mm.
THICKNESS_MAX_NM = 1e6


@dataclass
class MeasureSettings:
    """Everything that decides the statistics of a labels image.

    Parameters
    ----------
    edges : {"include", "exclude", "guard"}
        How objects at the image (or analysed-region) edge are counted.
    guard : float
        Guard-frame width in the table's unit (nm when calibrated).
    thickness_nm : float, optional
        Foil thickness; enables volumetric density and barrier hardening.
    bins : int
        Number of equal-width size-histogram bins.
    lognormal : bool
        Fit a log-normal to each size distribution.
    hardening : HardeningParameters
        Dispersed-barrier-hardening constants and α per class.
    """

    edges: str = "include"
    guard: float = 0.0
    thickness_nm: float | None = None
    bins: int = 20
    lognormal: bool = False
    hardening: HardeningParameters = field(default_factory=HardeningParameters)

    def validate(self, where: str = "measure") -> None:
        """Raise :class:`~napari_microseg.core.bounds.SettingsError` when a field is unusable.

        The one check of measurement settings: :func:`measure_image`, recipes
        and the CLI all go through it. Messages name ``where.field``, the value
        and the allowed range.
        """
        def name(f):
            return f"{where}.{f}" if where else f

        bounds.check_choice(name("edges"), self.edges, EDGE_MODES)
        bounds.check_real(name("guard"), self.guard, 0.0, None)
        if self.thickness_nm is not None:
            t = bounds.check_real(name("thickness_nm"), self.thickness_nm, 0.0, THICKNESS_MAX_NM, "nm")
            if t <= 0:
                raise bounds.SettingsError(f"{name('thickness_nm')} {t!r} must be > 0 nm or null.")
        bounds.check_int(name("bins"), self.bins, *bounds.BINS_RANGE)
        bounds.check_bool(name("lognormal"), self.lognormal)
        h = self.hardening
        for f in ("taylor_factor", "shear_modulus_gpa", "burgers_vector_nm"):
            v = bounds.check_real(name(f"hardening.{f}"), getattr(h, f), 0.0, None)
            if v <= 0:
                raise bounds.SettingsError(f"{name(f'hardening.{f}')} {v!r} must be > 0.")
        for cls_name, a in dict(h.alpha or {}).items():
            bounds.check_real(name(f"hardening.alpha[{cls_name!r}]"), a, 0.0, None)

    def to_dict(self) -> dict:
        """JSON-ready form (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        d["hardening"] = self.hardening.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MeasureSettings:
        """Rebuild from :meth:`to_dict` output."""
        d = dict(d)
        h = d.pop("hardening", None)
        s = cls(**d)
        if h:
            s.hardening = HardeningParameters(
                taylor_factor=h.get("taylor_factor", 3.06),
                shear_modulus_gpa=h.get("shear_modulus_gpa", 82.0),
                burgers_vector_nm=h.get("burgers_vector_nm", 0.249),
                alpha=dict(h.get("alpha", {})) or HardeningParameters().alpha,
            )
        return s


@dataclass
class MeasureResult:
    """Output of :func:`measure_image`."""

    table: pd.DataFrame
    summary: pd.DataFrame
    counting: Counting
    distributions: dict[str, SizeDistribution]
    hardening: HardeningResult | None
    settings: MeasureSettings
    pixel_size: PixelSize

    def tables(self) -> dict[str, pd.DataFrame]:
        """Tables to export: ``objects``, ``summary`` and ``hardening`` when computed."""
        out = {"objects": self.table, "summary": self.summary}
        if self.hardening is not None:
            out["hardening"] = self.hardening.per_class
        return out

    def settings_record(self) -> dict:
        """Settings and key results for the provenance header."""
        rec = {**self.settings.to_dict(), **self.counting.settings()}
        rec["analysed_area_px"] = int(self.counting.reference_area_px)
        if self.hardening is not None:
            rec["hardening_total_linear_mpa"] = self.hardening.total_linear_mpa
            rec["hardening_total_rss_mpa"] = self.hardening.total_rss_mpa
        return rec


def measure_image(
    labels,
    pixel_size: PixelSize | None = None,
    *,
    intensity=None,
    instance_classes: dict | None = None,
    classes: ClassTable | None = None,
    analysis_mask=None,
    settings: MeasureSettings | None = None,
) -> MeasureResult:
    """Per-object table, counts, densities, size distributions and hardening.

    Parameters
    ----------
    labels : array-like
        2-D instance labels; above :data:`.blockwise.BLOCKWISE_PIXELS` pixels
        they (and ``intensity``) may be lazy (zarr, memmap) and are measured
        block by block (:func:`.blockwise.measure_objects_blockwise`, same table).
    pixel_size : PixelSize, optional
        Calibration; uncalibrated (px) when omitted.
    intensity : array-like, optional
        The grey image, for intensity columns.
    instance_classes, classes
        ``{instance_id: class_id}`` and the class table.
    analysis_mask : array-like of bool, optional
        Analysed pixels (``True``); excludes an SEM bar or user exclusions.
    settings : MeasureSettings, optional
        Counting rule, thickness, bins, hardening constants.

    Raises
    ------
    MicrosegError
        When a thickness is given for an uncalibrated image.
    SettingsError
        When ``settings`` fail :meth:`MeasureSettings.validate`.
    """
    settings = settings or MeasureSettings()
    settings.validate()
    pixel_size = pixel_size or PixelSize.uncalibrated()
    if settings.thickness_nm is not None and not pixel_size.calibrated:
        raise MicrosegError("A foil thickness needs a calibrated image: set the pixel size first.")
    # above blockwise.BLOCKWISE_PIXELS the labels (possibly lazy) are read region by region
    measure = (blockwise.measure_objects_blockwise
               if blockwise.use_blockwise(np.shape(labels)[:2]) else measure_objects)
    table = measure(
        labels, pixel_size, intensity=intensity, instance_classes=instance_classes,
        classes=classes, analysis_mask=analysis_mask,
    )
    counting = count_objects(table, edges=settings.edges, guard=settings.guard, analysis_mask=analysis_mask)
    summary = summarize(table, counting=counting, thickness_nm=settings.thickness_nm, classes=classes)
    dists = size_distributions(table, settings.bins, counting=counting, lognormal=settings.lognormal)
    hardening = None
    if settings.thickness_nm is not None:
        hardening = dispersed_barrier_hardening(
            table, settings.thickness_nm, params=settings.hardening, counting=counting
        )
    return MeasureResult(table, summary, counting, dists, hardening, settings, pixel_size)
