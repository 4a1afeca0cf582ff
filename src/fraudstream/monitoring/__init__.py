"""Drift monitoring: how far live traffic has moved from the data a model was trained on.

Training stores reference distributions in the bundle (:mod:`fraudstream.models.reference`);
serving counts each scored batch into a sliding window and compares it with them by the population
stability index (:mod:`.drift`). Nothing here imports the API, the worker or the commands; they use it.
"""

from __future__ import annotations

from fraudstream.models.reference import NO_REFERENCE, Reference
from fraudstream.monitoring.drift import DriftMonitor, DriftReport, FeatureDrift, compare, monitor_for, psi

__all__ = [
    "NO_REFERENCE",
    "DriftMonitor",
    "DriftReport",
    "FeatureDrift",
    "Reference",
    "compare",
    "monitor_for",
    "psi",
]
