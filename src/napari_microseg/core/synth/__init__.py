"""Synthetic micrographs (TEM, STEM, SEM) with exact instance ground truth.

See :mod:`.generator` for the API and truth conventions and :mod:`.recipes`
for the projection geometry of the defect families.
"""

from .generator import KINDS, SyntheticSample, generate, write_sample
from .nuisances import Noise, Nuisances

__all__ = ["KINDS", "Noise", "Nuisances", "SyntheticSample", "generate", "write_sample"]
