"""Row-level isolation: a batch the model rejects is split until the offending rows are found.

One bad value must neither kill a nightly job (mlflow's spark_udf fails the whole job) nor
slip through as garbage. ``score_isolating`` scores a batch; if the model raises, it first
retries without rows whose features are null/NaN/inf (the usual culprit, one extra call),
then bisects what still fails. Rows that fail alone are returned with the error class and
message, for the quarantine table. Cost: O(bad rows x log(batch)) model calls, and nothing
extra when the batch is clean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.errors import first_line
from batch_serving.models import adapters
from batch_serving.models.adapters import ModelSpec
from batch_serving.scoring.casts import CAST_ERROR_COLUMN

Predict = Callable[[ModelSpec, Any, pa.RecordBatch], list[pa.Array]]
MAX_MESSAGE = 500


@dataclass
class Isolated:
    """Scored rows (as positions in the input batch) plus the rows that could not be scored."""

    good_rows: np.ndarray
    outputs: list[pa.Array]
    bad_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    error_class: list[str] = field(default_factory=list)
    error_message: list[str] = field(default_factory=list)


def score_isolating(
    spec: ModelSpec, model: Any, batch: pa.RecordBatch, predict: Predict = adapters.predict
) -> Isolated:
    """Score ``batch``; rows the model cannot score are isolated instead of failing the batch."""
    n = batch.num_rows
    try:
        return Isolated(np.arange(n), predict(spec, model, batch))
    except MemoryError:
        raise  # not about the data: never quarantine rows for it
    except Exception:
        pass
    suspects = _non_finite_rows(spec, batch)
    if 0 < len(suspects) < n:
        clean = np.setdiff1d(np.arange(n), suspects)
        try:
            outputs = predict(spec, model, batch.take(pa.array(clean)))
        except Exception:
            return _bisect(spec, model, batch, np.arange(n), predict)
        bad = _bisect(spec, model, batch, suspects, predict)
        return _merge(spec, [Isolated(clean, outputs), bad])
    return _bisect(spec, model, batch, np.arange(n), predict)


def _bisect(
    spec: ModelSpec, model: Any, batch: pa.RecordBatch, rows: np.ndarray, predict: Predict
) -> Isolated:
    try:
        return Isolated(rows, predict(spec, model, batch.take(pa.array(rows))))
    except MemoryError:
        raise
    except Exception as exc:
        if len(rows) == 1:
            message = first_line(exc, default="")
            return Isolated(
                np.empty(0, dtype=np.int64),
                [pa.array([], type=f.type) for f in spec.output_fields()],
                rows,
                [type(exc).__name__],
                [message[:MAX_MESSAGE]],
            )
    mid = len(rows) // 2
    halves = [_bisect(spec, model, batch, part, predict) for part in (rows[:mid], rows[mid:])]
    return _merge(spec, halves)


def _merge(spec: ModelSpec, parts: list[Isolated]) -> Isolated:
    good = np.concatenate([p.good_rows for p in parts]).astype(np.int64)
    outputs = [
        pa.concat_arrays([p.outputs[i] for p in parts]) for i in range(len(spec.output_fields()))
    ]
    order = np.argsort(good, kind="stable")  # keep input order for the scored rows
    outputs = [o.take(pa.array(order)) for o in outputs]
    return Isolated(
        good[order],
        outputs,
        np.concatenate([p.bad_rows for p in parts]).astype(np.int64),
        [c for p in parts for c in p.error_class],
        [m for p in parts for m in p.error_message],
    )


def _non_finite_rows(spec: ModelSpec, batch: pa.RecordBatch) -> np.ndarray:
    """Rows with a null in any feature, or NaN/inf in a floating feature."""
    mask = np.zeros(batch.num_rows, dtype=bool)
    for name in spec.features:
        column = batch.column(batch.schema.get_field_index(name))
        mask |= column.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_floating(column.type):
            finite = pc.is_finite(column).fill_null(True).to_numpy(zero_copy_only=False)
            mask |= ~finite
    return np.flatnonzero(mask)


CAST_ERROR_CLASS = "CastError"
ERROR_FIELDS = [pa.field("error_class", pa.string()), pa.field("error_message", pa.string())]


@dataclass
class Split:
    """One input batch split into scored rows and quarantined rows (entity columns first)."""

    scored: list[pa.Array]
    quarantined: list[pa.Array]


def score_and_split(
    spec: ModelSpec, model: Any, batch: pa.RecordBatch, entities: list[str]
) -> Split:
    """Rows flagged by a failed cast skip the model; the rest go through ``score_isolating``."""
    n = batch.num_rows
    cast_index = batch.schema.get_field_index(CAST_ERROR_COLUMN)
    cast_errors = batch.column(cast_index) if cast_index >= 0 else pa.nulls(n, pa.string())
    flagged = cast_errors.is_valid().to_numpy(zero_copy_only=False)
    candidates = np.flatnonzero(~flagged)
    if len(candidates) == n:
        iso = score_isolating(spec, model, batch)
    else:
        iso = score_isolating(spec, model, batch.take(pa.array(candidates)))
        iso.good_rows = candidates[iso.good_rows]
        iso.bad_rows = candidates[iso.bad_rows]
    cast_rows = np.flatnonzero(flagged)
    bad_rows = np.concatenate([iso.bad_rows, cast_rows]).astype(np.int64)
    classes = iso.error_class + [CAST_ERROR_CLASS] * len(cast_rows)
    messages = iso.error_message + cast_errors.take(pa.array(cast_rows)).to_pylist()

    def ids(rows: np.ndarray) -> list[pa.Array]:
        if len(rows) == n and np.array_equal(rows, np.arange(n)):
            return [batch.column(batch.schema.get_field_index(c)) for c in entities]
        taken = pa.array(rows, type=pa.int64())
        return [batch.column(batch.schema.get_field_index(c)).take(taken) for c in entities]

    return Split(
        scored=ids(iso.good_rows) + iso.outputs,
        quarantined=[
            *ids(bad_rows),
            pa.array(classes, pa.string()),
            pa.array(messages, pa.string()),
        ],
    )
