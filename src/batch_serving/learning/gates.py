"""Promotion gates: is the challenger better than the champion on the same labelled rows, and
not different in ways that hurt (calibration, score distribution, decisions)?

Each gate is an MLflow ``MetricThreshold`` checked by ``mlflow.validate_evaluation_results``
(the metric margin against the champion as the baseline; ECE, score PSI and flip rate as
absolute thresholds on the challenger), one gate per call so the report says which passed.
Pure: scores in, a ``GateReport`` out; ``promote`` gets the scores from the scoring path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from batch_serving.learning import metrics
from batch_serving.learning.settings import GatesConfig


@dataclass(frozen=True)
class Gate:
    """One gate's outcome: the numbers compared and why it failed (empty if it passed)."""

    name: str
    passed: bool
    challenger: float
    champion: float | None
    threshold: float
    detail: str = ""

    def describe(self) -> str:
        against = "" if self.champion is None else f" vs champion {self.champion:.4f}"
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"{self.name} {verdict}: challenger {self.challenger:.4f}{against} "
            f"(threshold {self.threshold:g})"
        )


@dataclass(frozen=True)
class GateReport:
    """Every gate, plus the metrics of both models (logged as the promotion's evidence)."""

    gates: tuple[Gate, ...]
    rows: int
    champion_metrics: dict[str, float]
    challenger_metrics: dict[str, float]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if not g.passed)


def model_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": metrics.roc_auc(labels, scores),
        "log_loss": metrics.log_loss(labels, scores),
        "brier": metrics.brier(labels, scores),
        "ece": metrics.expected_calibration_error(labels, scores),
    }


def evaluate_gates(
    labels: np.ndarray, champion: np.ndarray, challenger: np.ndarray, cfg: GatesConfig
) -> GateReport:
    """Judge ``challenger`` scores against ``champion`` scores of the same labelled rows."""
    y = np.asarray(labels, dtype=np.int64)
    base, cand = model_metrics(y, champion), model_metrics(y, challenger)
    cand["score_psi"] = metrics.score_psi(challenger, champion)
    cand["flip_rate"] = metrics.flip_rate(challenger, champion, cfg.threshold)
    gates = [_rows_gate(len(y), cfg.min_rows)]
    better = cfg.metric == "roc_auc"
    gates.append(_check(cfg.metric, cand, base, cfg.min_improvement, better, relative=True))
    for name, limit in (
        ("ece", cfg.max_ece),
        ("score_psi", cfg.max_score_psi),
        ("flip_rate", cfg.max_flip_rate),
    ):
        if limit is not None:
            gates.append(_check(name, cand, None, limit, False, relative=False))
    return GateReport(tuple(gates), len(y), base, cand)


def _rows_gate(rows: int, minimum: int) -> Gate:
    return Gate("min_rows", rows >= minimum, float(rows), None, float(minimum))


def _check(
    name: str,
    candidate: dict[str, float],
    baseline: dict[str, float] | None,
    limit: float,
    greater_is_better: bool,
    relative: bool,
) -> Gate:
    """One MetricThreshold through mlflow's validator: a margin over the baseline when
    ``relative``, else an absolute threshold on the candidate."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult

    value = candidate[name]
    reference = baseline[name] if baseline is not None else None
    if np.isnan(value) or (reference is not None and np.isnan(reference)):
        return Gate(name, False, value, reference, limit, "undefined (one class only)")
    threshold = (
        MetricThreshold(min_absolute_change=limit, greater_is_better=greater_is_better)
        if relative
        else MetricThreshold(threshold=limit, greater_is_better=greater_is_better)
    )
    base = EvaluationResult({name: reference}, {}) if reference is not None else None
    try:
        candidate_result = EvaluationResult({name: value}, {})
        mlflow.validate_evaluation_results({name: threshold}, candidate_result, base)
    except MlflowException as exc:
        return Gate(name, False, value, reference, limit, str(exc.message))
    return Gate(name, True, value, reference, limit)
