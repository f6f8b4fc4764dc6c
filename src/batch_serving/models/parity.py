"""The parity gate of ``export-onnx``: the ONNX model must decide like the model it replaces.

Both models score the same real partition through the same scoring core (``predict``): the
source with its own runtime, the ONNX graph with onnxruntime. The gate passes when the largest
absolute score difference is within ``tolerance`` AND no row changes side of any decision
threshold: 0.5 and every numeric threshold the job's rules compare the score with, each with
the rule's own operator (``>=`` and ``>`` differ exactly at the threshold). The report names
the worst rows by id, so a refusal can be checked by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.config.rules import OPERATOR_FUNCTIONS, ORDERINGS
from batch_serving.models.adapters import ModelSpec, predict

DEFAULT_TOLERANCE = 1e-5
WORST_ROWS = 5


@dataclass(frozen=True)
class Threshold:
    """One decision: ``score op value`` (from a rule, or the default 0.5)."""

    op: str
    value: float
    source: str

    def __str__(self) -> str:
        return f"score {self.op} {self.value:g}"


@dataclass(frozen=True)
class Flip:
    threshold: str
    rows: int
    examples: list[dict[str, Any]]


@dataclass(frozen=True)
class ParityReport:
    rows: int
    tolerance: float
    max_abs_diff: float
    mean_abs_diff: float
    onnx_dtype: str
    thresholds: list[str]
    flips: list[Flip]
    worst_rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def flipped(self) -> int:
        return sum(f.rows for f in self.flips)

    @property
    def passed(self) -> bool:
        return self.rows > 0 and self.max_abs_diff <= self.tolerance and self.flipped == 0

    def reasons(self) -> list[str]:
        out = []
        if self.rows == 0:
            out.append("no rows to compare")
        if self.max_abs_diff > self.tolerance:
            out.append(f"max |diff| {self.max_abs_diff:.3g} > tolerance {self.tolerance:g}")
        out += [f"{f.rows} decision flips at {f.threshold}" for f in self.flips if f.rows]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "flipped": self.flipped}

    def lines(self) -> list[str]:
        verdict = "PASSED" if self.passed else "FAILED: " + "; ".join(self.reasons())
        out = [
            f"parity gate  : {verdict}",
            f"rows compared: {self.rows}",
            f"onnx inputs  : {self.onnx_dtype}",
            f"max |diff|   : {self.max_abs_diff:.3g} (tolerance {self.tolerance:g}); "
            f"mean {self.mean_abs_diff:.3g}",
            "decision flips:",
            *(f"  {f.threshold:<24} {f.rows}" for f in self.flips),
            "worst rows (largest |diff|):",
            *(
                "  " + "  ".join(f"{k}={_fmt(v)}" for k, v in row.items())
                for row in self.worst_rows
            ),
        ]
        return out + [f"note: {n}" for n in self.notes]


def thresholds_from_rules(rules: Any, score_column: str) -> list[Threshold]:
    """0.5 plus every ``<score_column> OP number`` the rules compare (deduplicated)."""
    found = [Threshold(">=", 0.5, "default")]
    if rules is not None:
        for i, comparison in rules._comparisons():
            value = comparison.value
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if comparison.ref == score_column and comparison.op in ORDERINGS and numeric:
                found.append(Threshold(comparison.op, float(value), f"rules[{i}]"))
    unique: dict[tuple[str, float], Threshold] = {}
    for t in found:
        unique.setdefault((t.op, t.value), t)
    return list(unique.values())


def scores(spec: ModelSpec, model: Any, batch: pa.RecordBatch) -> np.ndarray:
    """The served score per row (binary: positive class probability; regression: value)."""
    if spec.kind == "multiclass":
        raise ValueError("the parity gate compares one score per row (binary or regression)")
    (values,) = predict(spec, model, batch)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def compare(
    ids: Sequence[Any],
    expected: np.ndarray,
    actual: np.ndarray,
    thresholds: Sequence[Threshold],
    tolerance: float = DEFAULT_TOLERANCE,
    onnx_dtype: str = "",
    notes: Sequence[str] = (),
) -> ParityReport:
    """The gate's numbers for source scores ``expected`` vs ONNX scores ``actual``."""
    diff = np.abs(actual - expected)
    diff = np.where(np.isnan(expected) & np.isnan(actual), 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    flips = []
    for t in thresholds:
        fn = getattr(np, OPERATOR_FUNCTIONS[t.op])  # a ufunc: NaN compares False
        changed = np.flatnonzero(fn(expected, t.value) != fn(actual, t.value))
        examples = [_row(ids, expected, actual, int(i)) for i in changed[:WORST_ROWS]]
        flips.append(Flip(str(t), len(changed), examples))
    worst: list[int] = np.argsort(-diff, kind="stable")[:WORST_ROWS].tolist()
    return ParityReport(
        rows=len(expected),
        tolerance=tolerance,
        max_abs_diff=float(diff.max()) if len(diff) else 0.0,
        mean_abs_diff=float(diff.mean()) if len(diff) else 0.0,
        onnx_dtype=onnx_dtype,
        thresholds=[str(t) for t in thresholds],
        flips=flips,
        worst_rows=[_row(ids, expected, actual, i) for i in worst],
        notes=list(notes),
    )


def _row(ids: Sequence[Any], expected: np.ndarray, actual: np.ndarray, i: int) -> dict[str, Any]:
    return {
        "id": ids[i],
        "source": float(expected[i]),
        "onnx": float(actual[i]),
        "diff": float(abs(actual[i] - expected[i])),
    }


def _fmt(value: Any) -> str:
    return f"{value:.9g}" if isinstance(value, float) else str(value)
