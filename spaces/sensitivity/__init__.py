"""Per-layer sensitivity: how much each layer's compression alone costs the model.

Measured once per task and model (the teacher, each student), cached with the study
(:func:`cached_sensitivity`), and used twice: the warm-start allocations
(:mod:`search.allocation`) spend bits where they matter, and :func:`restricted_space` drops
per-layer bit widths that alone lose more than the accuracy budget.
"""

from __future__ import annotations

from spaces.sensitivity.measure import distortion, measure_sensitivity, study_forward_rows
from spaces.sensitivity.store import (
    HOPELESS_DISTORTION,
    cached_sensitivity,
    hopeless_bits,
    restricted_space,
    table_filename,
)
from spaces.sensitivity.table import (
    KINDS,
    METHODS,
    Probe,
    SensitivitySettings,
    SensitivityTable,
)

__all__ = [
    "HOPELESS_DISTORTION",
    "KINDS",
    "METHODS",
    "Probe",
    "SensitivitySettings",
    "SensitivityTable",
    "cached_sensitivity",
    "distortion",
    "hopeless_bits",
    "measure_sensitivity",
    "restricted_space",
    "study_forward_rows",
    "table_filename",
]
