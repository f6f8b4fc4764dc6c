"""``score_batch``: one Arrow batch of input rows in, predictions and quarantined rows out.

The one scoring core: casts, the model call with row isolation, and the lineage columns.
Spark engines call it inside tasks, and so will a stream and the API. No pyspark here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.scoring.casts import apply_casts
from batch_serving.scoring.isolation import score_and_split
from batch_serving.scoring.plan import ScoringPlan


@dataclass(frozen=True)
class Scored:
    """One input batch, scored: rows in ``plan.output_schema`` and ``plan.quarantine_schema``."""

    predictions: pa.RecordBatch
    quarantined: pa.RecordBatch | None


class BatchScorer:
    """Scores batches for one plan with its loaded models (one per member, in plan order).

    The run-constant lineage columns are built once and sliced per batch: building them per
    batch from Python values cost more than scoring a LogisticRegression."""

    def __init__(self, plan: ScoringPlan, models: Sequence[Any]) -> None:
        self.plan = plan
        self.models = list(models)
        self._size = 0
        self._lineage: list[pa.Array] = []
        self._q_lineage: list[pa.Array] = []

    def score(self, batch: pa.RecordBatch) -> Scored:
        plan = self.plan
        member = plan.served
        cast = apply_casts(batch, dict(plan.casts))
        split = score_and_split(member.spec, self.models[0], cast, plan.entity_columns)
        self._ensure(batch.num_rows)
        n = len(split.scored[0])
        arrays = split.scored + [c.slice(0, n) for c in self._lineage]
        predictions = pa.RecordBatch.from_arrays(arrays, schema=plan.output_schema)
        m = len(split.quarantined[0])
        if not m:
            return Scored(predictions, None)
        arrays = split.quarantined + [c.slice(0, m) for c in self._q_lineage]
        return Scored(
            predictions, pa.RecordBatch.from_arrays(arrays, schema=plan.quarantine_schema)
        )

    def _ensure(self, size: int) -> None:
        if size <= self._size:
            return
        ref, plan = self.plan.served.ref, self.plan
        self._size = max(size, 1)
        self._lineage = _constants((ref.name, ref.version, ref.run_id), plan, self._size)
        self._q_lineage = _constants((ref.name, ref.version, plan.run_id), plan, self._size)


def score_batch(plan: ScoringPlan, models: Sequence[Any], batch: pa.RecordBatch) -> Scored:
    """Score one batch (for callers that score a single batch; tasks keep a ``BatchScorer``)."""
    return BatchScorer(plan, models).score(batch)


def tagged(scored: Scored, schema: pa.Schema) -> list[pa.RecordBatch]:
    """Both parts of ``scored`` conformed to ``plan.tagged_schema`` (missing columns null)."""
    parts = [scored.predictions] if scored.predictions.num_rows else []
    if scored.quarantined is not None:
        parts.append(scored.quarantined)
    return [_conform(part, schema) for part in parts]


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    names = set(batch.schema.names)
    arrays = [
        batch.column(f.name) if f.name in names else pa.nulls(batch.num_rows, f.type)
        for f in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _constants(values: tuple[str, int, str | None], plan: ScoringPlan, size: int) -> list[pa.Array]:
    name, version, run_id = values
    zeros = pa.array(np.zeros(size, dtype=np.int32))
    micros = int(plan.scored_at.timestamp() * 1_000_000)
    return [
        pa.DictionaryArray.from_arrays(zeros, pa.array([name])).cast(pa.string()),
        pa.array(np.full(size, version, dtype=np.int32)),
        pa.DictionaryArray.from_arrays(zeros, pa.array([run_id], pa.string())).cast(pa.string()),
        pa.array(np.full(size, micros, dtype=np.int64)).view(pa.timestamp("us", tz="UTC")),
    ]
