"""Drift monitoring: binned profiles gathered in the scoring pass, drift numbers, the run
report and the drift gates on publish. Pure numpy/Arrow (no pyspark)."""

from batch_serving.monitoring.drift import ColumnDrift, binned_ks, compare, js_distance, psi
from batch_serving.monitoring.profile import (
    ColumnSpec,
    Profile,
    ProfilePartial,
    ProfileSpec,
    profile_table,
)

__all__ = [
    "ColumnDrift",
    "ColumnSpec",
    "Profile",
    "ProfilePartial",
    "ProfileSpec",
    "binned_ks",
    "compare",
    "js_distance",
    "profile_table",
    "psi",
]
