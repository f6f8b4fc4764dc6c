"""Drift of a profile against its reference: PSI, Jensen-Shannon distance, binned KS.

All three work on the SAME bins (the reference's fixed edges or categories), from counts:

- distributions include one ``missing`` bin (nulls + NaN) after the value bins, so a column
  that suddenly goes null drifts;
- PSI = sum((p - q) * ln(p / q)), with empty bins floored at ``EPSILON`` in both p and q
  (equal to the symmetric KL divergence on the floored proportions);
- Jensen-Shannon distance, base 2 (0 = same, 1 = disjoint), on the unfloored proportions;
- binned KS = max |CDF_p - CDF_q| over the ordered value bins (numeric columns only; the
  missing bin left out, each CDF over its non-missing rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from batch_serving.monitoring.profile import ColumnCounts, ColumnSpec, Profile

EPSILON = 1e-6


def proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if total <= 0:
        return np.zeros(len(counts), dtype=np.float64)
    return np.asarray(counts, dtype=np.float64) / float(total)


def psi(current: np.ndarray, reference: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    p = np.maximum(proportions(current), EPSILON)
    q = np.maximum(proportions(reference), EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))


def js_distance(current: np.ndarray, reference: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) of two count vectors over the same bins."""
    p, q = proportions(current), proportions(reference)
    m = (p + q) / 2
    divergence = 0.0
    for a in (p, q):
        mask = a > 0
        divergence += float(np.sum(a[mask] * np.log2(a[mask] / m[mask]))) / 2
    return math.sqrt(max(divergence, 0.0))


def binned_ks(current: np.ndarray, reference: np.ndarray) -> float:
    """Largest gap between the two empirical CDFs at the bin edges."""
    p, q = proportions(current), proportions(reference)
    if not current.sum() or not reference.sum():
        return 0.0
    return float(np.max(np.abs(np.cumsum(p) - np.cumsum(q))))


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift numbers (None where undefined), for the manifest, report and gates."""

    name: str
    role: str
    kind: str
    rows: int
    psi: float
    js: float
    ks: float | None  # numeric columns only
    missing_rate: float
    reference_missing_rate: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def with_missing(spec: ColumnSpec, counts: ColumnCounts) -> np.ndarray:
    """Value bins, then the missing bin (nulls + NaN)."""
    return np.append(counts.counts, counts.nulls + counts.nans)


def column_drift(spec: ColumnSpec, current: ColumnCounts, reference: ColumnCounts) -> ColumnDrift:
    cur, ref = with_missing(spec, current), with_missing(spec, reference)
    return ColumnDrift(
        name=spec.name,
        role=spec.role,
        kind=spec.kind,
        rows=current.rows,
        psi=psi(cur, ref),
        js=js_distance(cur, ref),
        ks=binned_ks(current.counts, reference.counts) if spec.kind == "numeric" else None,
        missing_rate=_rate(current),
        reference_missing_rate=_rate(reference),
    )


def _rate(counts: ColumnCounts) -> float:
    return (counts.nulls + counts.nans) / counts.rows if counts.rows else 0.0


def compare(current: Profile, references: Sequence[Profile]) -> list[ColumnDrift]:
    """Drift of every column against the first reference binned the same way, sorted by PSI
    (largest first). Columns no reference bins the same way are left out."""
    drifts: list[ColumnDrift] = []
    for spec in current.spec.columns:
        mine = current.column(spec.name)
        if mine is None or not mine[1].rows:
            continue
        for reference in references:
            theirs = reference.column(spec.name)
            if theirs is not None and same_bins(spec, theirs[0]) and theirs[1].rows:
                drifts.append(column_drift(spec, mine[1], theirs[1]))
                break
    return sorted(drifts, key=lambda d: -d.psi)


def same_bins(a: ColumnSpec, b: ColumnSpec) -> bool:
    return a.kind == b.kind and a.edges == b.edges and a.categories == b.categories
