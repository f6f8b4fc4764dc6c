"""``score_batch``: one Arrow batch of input rows in, predictions and quarantined rows out.

The one scoring core: casts, the model calls with row isolation, the served result, and the
lineage columns. Spark engines call it inside tasks, and so will a stream and the API. No
pyspark here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.scoring.cascade import StageRows
from batch_serving.scoring.casts import apply_casts
from batch_serving.scoring.isolation import score_and_split
from batch_serving.scoring.members import score_members
from batch_serving.scoring.plan import ScoringPlan


@dataclass(frozen=True)
class Scored:
    """One input batch, scored: rows in ``plan.output_schema`` and ``plan.quarantine_schema``."""

    predictions: pa.RecordBatch
    quarantined: pa.RecordBatch | None
    stages: tuple[StageRows, ...] = ()
    """A cascade's rows per stage in this batch (seen, answered, quarantined); else empty."""


class BatchScorer:
    """Scores batches for one plan with its loaded models (one per member, in plan order).

    The run-constant lineage columns are built once and sliced per batch: building them per
    batch from Python values cost more than scoring a LogisticRegression."""

    def __init__(self, plan: ScoringPlan, models: Sequence[Any]) -> None:
        self.plan = plan
        self.models = list(models)
        self._size = -1  # nothing built yet: an empty first batch still needs its lineage
        self._lineage: list[pa.Array] = []
        self._q_lineage: list[pa.Array] = []
        self._members: list[list[pa.Array]] = []

    def score(self, batch: pa.RecordBatch) -> Scored:
        self._ensure(batch.num_rows)
        cast = apply_casts(batch, dict(self.plan.casts))
        if self.plan.multi:
            return self._score_members(cast)
        plan = self.plan
        split = score_and_split(plan.served.spec, self.models[0], cast, plan.entity_columns)
        predictions = self._rows(split.scored, self._lineage, plan.output_schema)
        if not len(split.quarantined[0]):
            return Scored(predictions, None)
        return Scored(
            predictions, self._rows(split.quarantined, self._q_lineage, plan.quarantine_schema)
        )

    def _score_members(self, batch: pa.RecordBatch) -> Scored:
        plan = self.plan
        got = score_members(plan, self.models, batch)
        n = len(got.alive)
        structs = [
            pa.StructArray.from_arrays(
                [*fields, *(c.slice(0, n) for c in lineage)], fields=list(plan.member_type(m))
            )
            for m, fields, lineage in zip(plan.members, got.structs, self._members, strict=True)
        ]
        ids = _take(batch, plan.entity_columns, got.alive)
        predictions = self._rows([*ids, *got.served, *structs], self._lineage, plan.output_schema)
        bad = got.rejected
        if not bad.classes:
            return Scored(predictions, None, got.stages)
        columns = [
            *_take(batch, plan.entity_columns, bad.positions()),
            pa.array(bad.classes, pa.string()),
            pa.array(bad.messages, pa.string()),
            pa.array(bad.members, pa.string()),
        ]
        quarantined = self._rows(columns, self._q_lineage, plan.quarantine_schema)
        return Scored(predictions, quarantined, got.stages)

    @staticmethod
    def _rows(arrays: list[pa.Array], lineage: list[pa.Array], schema: pa.Schema) -> pa.RecordBatch:
        n = len(arrays[0])
        return pa.RecordBatch.from_arrays(
            [*arrays, *(c.slice(0, n) for c in lineage)], schema=schema
        )

    def _ensure(self, size: int) -> None:
        if size <= self._size:
            return
        plan, ref = self.plan, self.plan.served.ref
        self._size = size = max(size, 1)
        at = _repeat_time(plan, size)
        self._lineage = [*_repeat_model(ref.name, ref.version, ref.run_id, size), at]
        self._q_lineage = [*_repeat_model(ref.name, ref.version, plan.run_id, size), at]
        self._members = [
            _repeat_model(m.ref.name, m.ref.version, m.ref.run_id, size) for m in plan.members
        ]


def score_batch(plan: ScoringPlan, models: Sequence[Any], batch: pa.RecordBatch) -> Scored:
    """Score one batch (for callers that score a single batch; tasks keep a ``BatchScorer``)."""
    return BatchScorer(plan, models).score(batch)


def tagged(scored: Scored, schema: pa.Schema) -> list[pa.RecordBatch]:
    """Both parts of ``scored`` conformed to ``plan.tagged_schema`` (missing columns null)."""
    parts = [scored.predictions] if scored.predictions.num_rows else []
    if scored.quarantined is not None:
        parts.append(scored.quarantined)
    return [_conform(part, schema) for part in parts]


def _take(batch: pa.RecordBatch, columns: list[str], rows: np.ndarray) -> list[pa.Array]:
    if len(rows) == batch.num_rows and np.array_equal(rows, np.arange(batch.num_rows)):
        return [batch.column(c) for c in columns]
    index = pa.array(rows, type=pa.int64())
    return [batch.column(c).take(index) for c in columns]


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    names = set(batch.schema.names)
    arrays = [
        batch.column(f.name) if f.name in names else pa.nulls(batch.num_rows, f.type)
        for f in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _repeat_model(name: str, version: int, run_id: str | None, size: int) -> list[pa.Array]:
    """(model_name, model_version, run id) repeated ``size`` times, as dictionary-decoded
    arrays (cheap to build, sliced per batch)."""
    zeros = pa.array(np.zeros(size, dtype=np.int32))
    return [
        pa.DictionaryArray.from_arrays(zeros, pa.array([name])).cast(pa.string()),
        pa.array(np.full(size, version, dtype=np.int32)),
        pa.DictionaryArray.from_arrays(zeros, pa.array([run_id], pa.string())).cast(pa.string()),
    ]


def _repeat_time(plan: ScoringPlan, size: int) -> pa.Array:
    micros = int(plan.scored_at.timestamp() * 1_000_000)
    return pa.array(np.full(size, micros, dtype=np.int64)).view(pa.timestamp("us", tz="UTC"))
