"""Measurements of segmented defects: per-object table, statistics, hardening, export.

Typical use::

    table = measure_objects(labels, pixel_size, intensity=image,
                            instance_classes=classes_of, analysis_mask=mask)
    summary = summarize(table, edges="guard", guard=20.0, analysis_mask=mask,
                        thickness_nm=100.0)
    export_tables("results.xlsx", {"objects": table, "summary": summary},
                  make_provenance(image_path=path, pixel_size=pixel_size))
"""

from .colors import label_color_dict, property_colors
from .export import (
    export_tables,
    file_sha256,
    make_provenance,
    read_csv,
    read_json,
    read_tables,
    read_xlsx,
    write_csv,
    write_json,
    write_xlsx,
)
from .hardening import (
    DEFAULT_ALPHA,
    HardeningParameters,
    HardeningResult,
    dbh_mpa,
    dispersed_barrier_hardening,
)
from .objects import UNCLASSIFIED, measure_objects
from .pipeline import MeasureResult, MeasureSettings, measure_image
from .statistics import (
    EDGE_MODES,
    Counting,
    SizeDistribution,
    count_objects,
    inner_frame,
    size_distribution,
    size_distributions,
    summarize,
)

__all__ = [
    "DEFAULT_ALPHA",
    "EDGE_MODES",
    "UNCLASSIFIED",
    "Counting",
    "HardeningParameters",
    "HardeningResult",
    "MeasureResult",
    "MeasureSettings",
    "SizeDistribution",
    "count_objects",
    "dbh_mpa",
    "dispersed_barrier_hardening",
    "export_tables",
    "file_sha256",
    "inner_frame",
    "label_color_dict",
    "make_provenance",
    "measure_image",
    "measure_objects",
    "property_colors",
    "read_csv",
    "read_json",
    "read_tables",
    "read_xlsx",
    "size_distribution",
    "size_distributions",
    "summarize",
    "write_csv",
    "write_json",
    "write_xlsx",
]
