"""Statistics with uncertainty: intervals, size distributions, studies, phases, comparisons.

Typical use::

    study = study_from_folder("batch_out")          # or study_from_tables(tables, fields)
    study.pooled                                    # densities, sizes, area fractions with CIs
    compare_studies(study_a, study_b)["densities"]  # B - A and B / A with CIs
    export_stats("stats_out", study.to_tables(), stats_provenance(), xlsx=True)

Every interval carries the name of its method (:mod:`.intervals`).
"""

from .compare import compare_studies
from .distributions import distribution_summary, histogram_with_band, lognormal_fit
from .export import METHODS, export_stats, stats_provenance
from .hardening_ci import hardening_interval, study_hardening
from .intervals import (
    Interval,
    area_fraction_ci,
    between_field_ci,
    binomial_ci,
    bootstrap_ci,
    mean_t_ci,
    median_order_ci,
    poisson_ci,
    rate_ci,
    weighted_quantile,
)
from .phases import phase_fractions, pooled_phase_fractions
from .study import Study, study_from_folder, study_from_inputs, study_from_tables

__all__ = [
    "METHODS",
    "Interval",
    "Study",
    "area_fraction_ci",
    "between_field_ci",
    "binomial_ci",
    "bootstrap_ci",
    "compare_studies",
    "distribution_summary",
    "export_stats",
    "hardening_interval",
    "histogram_with_band",
    "lognormal_fit",
    "mean_t_ci",
    "median_order_ci",
    "phase_fractions",
    "poisson_ci",
    "pooled_phase_fractions",
    "rate_ci",
    "stats_provenance",
    "study_from_folder",
    "study_from_inputs",
    "study_from_tables",
    "study_hardening",
    "weighted_quantile",
]
