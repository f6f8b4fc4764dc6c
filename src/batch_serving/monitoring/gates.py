"""Drift gates: the job's PSI thresholds against a run's recorded drift.

The numbers are recorded once, in the manifest's ``drift`` section; the thresholds are read
from the job config when they are checked, so ``publish`` applies today's thresholds (a
tightened gate applies to a partition scored yesterday) and ``runs`` shows the same outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from batch_serving.config.sections import DriftGatesConfig


@dataclass(frozen=True)
class GateOutcome:
    """``blocking``: why publish refuses (empty: it may publish); ``warnings``: logged only."""

    checked: int
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.blocking

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "success": self.success}


def evaluate(gates: DriftGatesConfig, columns: Mapping[str, Mapping[str, Any]]) -> GateOutcome:
    """Each column's PSI against the threshold of its role (``score``, ``member_score``,
    ``feature``); a message names the column, its PSI and the threshold."""
    blocking: list[str] = []
    warnings: list[str] = []
    limits = {
        "score": (gates.score_psi_max, None),
        "member_score": (gates.member_psi_max, None),
        "feature": (gates.feature_psi_max, gates.feature_psi_warn),
    }
    for name, values in sorted(columns.items(), key=lambda kv: -float(kv[1]["psi"])):
        value = float(values["psi"])
        block, warn = limits.get(str(values["role"]), (None, None))
        label = "score" if values["role"] != "feature" else "feature"
        if block is not None and value > block:
            blocking.append(f"{label} {name} PSI {value:.4f} > {block}")
        elif warn is not None and value > warn:
            warnings.append(f"{label} {name} PSI {value:.4f} > {warn} (warning)")
    return GateOutcome(len(columns), blocking, warnings)


def enforce_on_publish(
    gates: DriftGatesConfig, drift: Mapping[str, Any], partition: object
) -> GateOutcome:
    """PublishError (exit 8) naming every column over its blocking threshold; warnings logged."""
    import logging

    from batch_serving.errors import PublishError

    outcome = evaluate(gates, drift.get("columns", {}))
    for warning in outcome.warnings:
        logging.getLogger(__name__).warning("drift: %s", warning)
    if outcome.blocking:
        raise PublishError(
            f"{partition} drifted past the publish gate: {'; '.join(outcome.blocking)} "
            "(monitoring.gates in the job config; see the run report)"
        )
    return outcome
