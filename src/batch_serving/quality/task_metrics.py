"""Gate metrics counted inside the scoring tasks, on the Arrow batches they already hold.

The ``arrow_direct`` engine's tasks read every input row and produce every output row, so the
input and output gates' metrics (``metric_plan``) can be counted there: no Spark job, no second
read of the input, no read-back of the staged output. Each task keeps a ``MetricCounts`` (small,
picklable, mergeable); the driver merges them and hands GX the values.

Semantics follow Spark's, which GX's Spark metric providers use: NaN sorts above every number
(``max`` is NaN if any value is; ``between`` treats NaN as +inf), ``mean``/``stddev`` skip nulls,
``stddev`` is the sample deviation and None under two values. Metrics whose Spark semantics
differ from Arrow's in ways not handled here (min/max of strings or dates, decimals, sets with
values of another type) are not supported: ``supported`` says no and the gate computes that
expectation through Spark instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.quality.metric_plan import PARTIAL_UNEXPECTED, Condition, MetricSpec


def _value_type(dtype: pa.DataType) -> pa.DataType:
    return dtype.value_type if pa.types.is_dictionary(dtype) else dtype


def _numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype)


def supported(spec: MetricSpec, schema: pa.Schema) -> bool:
    """Whether the tasks can count ``spec`` on batches of ``schema`` exactly as Spark would."""
    if spec.kind == "row_count":
        return True
    if spec.column is None or spec.column not in schema.names:
        return False
    dtype = _value_type(schema.field(spec.column).type)
    if spec.kind in ("min", "max", "mean", "stddev"):
        return _numeric(dtype)
    condition = spec.condition
    if condition is None:
        return False
    if spec.kind == "unexpected_values" and condition.kind != "nonnull":
        plain = _numeric(dtype) or pa.types.is_string(dtype) or pa.types.is_boolean(dtype)
        if not plain:
            return False  # Python values of other types differ between Spark and Arrow
    if condition.kind == "between":
        return _numeric(dtype)
    if condition.kind in ("in_set", "not_in_set") and condition.values is not None:
        if any(v is None for v in condition.values):
            return False  # Spark's three-valued IN
        try:
            pc.is_in(pa.array([], dtype), value_set=pa.array(list(condition.values)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return False
    return True


@dataclass
class _State:
    """Running value of one metric in one task; ``merge`` combines two tasks'."""

    count: int = 0  # rows, unexpected rows, or non-null values (moments)
    total: float = 0.0  # mean: sum of values
    mean: float = 0.0  # stddev: running mean and sum of squared deviations (Chan et al.)
    m2: float = 0.0
    low: Any = None  # min/max over non-NaN values
    high: Any = None
    nan: bool = False
    examples: list[Any] = field(default_factory=list)

    def merge(self, other: _State, spec: MetricSpec) -> _State:
        out = _State(self.count + other.count, self.total + other.total)
        if spec.kind == "stddev" and out.count:
            delta = other.mean - self.mean
            out.mean = self.mean + delta * other.count / out.count
            out.m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / out.count
        out.low = _pick(min, self.low, other.low)
        out.high = _pick(max, self.high, other.high)
        out.nan = self.nan or other.nan
        out.examples = (self.examples + other.examples)[:PARTIAL_UNEXPECTED]
        return out


def _pick(choose: Any, a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else choose(a, b)


@dataclass
class MetricCounts:
    """One task's (or several merged) values of a gate's metrics, in spec order."""

    states: list[_State]

    @classmethod
    def empty(cls, specs: Sequence[MetricSpec]) -> MetricCounts:
        return cls([_State() for _ in specs])

    def add(self, specs: Sequence[MetricSpec], batch: pa.RecordBatch) -> None:
        masks: dict[tuple[str, Condition], pa.Array] = {}  # count and examples share one mask
        for spec, state in zip(specs, self.states, strict=True):
            if spec.kind == "row_count":
                state.count += batch.num_rows
                continue
            assert spec.column is not None
            values = batch.column(batch.schema.get_field_index(spec.column))
            if pa.types.is_dictionary(values.type):
                values = values.dictionary_decode()
            if spec.condition is None:
                _add_aggregate(spec, state, values)
                continue
            key = (spec.column, spec.condition)
            if key not in masks:
                masks[key] = _unexpected(values, spec.condition)
            mask = masks[key]
            if spec.kind == "unexpected_count":
                state.count += int(pc.sum(mask).as_py() or 0)
            elif len(state.examples) < PARTIAL_UNEXPECTED and pc.any(mask).as_py():
                room = PARTIAL_UNEXPECTED - len(state.examples)
                state.examples.extend(values.filter(mask).slice(0, room).to_pylist())

    def merge(self, other: MetricCounts, specs: Sequence[MetricSpec]) -> MetricCounts:
        return MetricCounts(
            [a.merge(b, s) for a, b, s in zip(self.states, other.states, specs, strict=True)]
        )

    def values(self, specs: Sequence[MetricSpec]) -> list[Any]:
        """The metric values, as Spark's aggregation would return them."""
        return [_final(spec, state) for spec, state in zip(specs, self.states, strict=True)]


@dataclass(frozen=True)
class MetricsObserver:
    """A gate's metrics as a scoring-task observer (``scoring.observers.TaskObserver``), counted
    on the input batches (``side`` "input") or on the predictions ("output"). Counts must be
    applied once per task (``exact``): only an engine whose tasks run in an action counts them.
    ``columns``: input columns the gate reads that the scoring plan may not."""

    key: str
    metrics: tuple[MetricSpec, ...]
    side: Literal["input", "output"]
    columns: tuple[str, ...] = ()
    exact: bool = True

    def zero(self) -> MetricCounts:
        return MetricCounts.empty(self.metrics)

    def observe(
        self, counts: MetricCounts, batch: pa.RecordBatch, predictions: pa.RecordBatch
    ) -> None:
        counts.add(self.metrics, batch if self.side == "input" else predictions)

    def merge(self, a: MetricCounts, b: MetricCounts) -> MetricCounts:
        return a.merge(b, self.metrics)


def _add_aggregate(spec: MetricSpec, state: _State, values: pa.Array) -> None:
    present = values.drop_null()
    if not len(present):
        return
    if spec.kind in ("min", "max"):
        floating = pa.types.is_floating(present.type)
        if floating:
            x = present.to_numpy(zero_copy_only=False)
            nan = np.isnan(x)
            state.nan = state.nan or bool(nan.any())
            x = x[~nan]
            if not len(x):
                return
            low, high = float(x.min()), float(x.max())
        else:
            found = pc.min_max(present).as_py()
            low, high = found["min"], found["max"]
        state.low = _pick(min, state.low, low)
        state.high = _pick(max, state.high, high)
        return
    x = np.asarray(present.to_numpy(zero_copy_only=False), dtype=np.float64)
    n = len(x)
    if spec.kind == "mean":
        state.count += n
        state.total += float(x.sum())
        return
    mean = float(x.mean())
    m2 = float(((x - mean) ** 2).sum())
    merged = state.merge(_State(n, mean=mean, m2=m2), spec)
    state.count, state.mean, state.m2 = merged.count, merged.mean, merged.m2


def _final(spec: MetricSpec, state: _State) -> Any:
    kind = spec.kind
    if kind in ("row_count", "unexpected_count"):
        return state.count
    if kind == "unexpected_values":
        return list(state.examples)
    if kind == "mean":
        return state.total / state.count if state.count else None
    if kind == "stddev":
        return math.sqrt(state.m2 / (state.count - 1)) if state.count > 1 else None
    if kind == "max":
        return math.nan if state.nan else state.high
    return state.low if state.low is not None else (math.nan if state.nan else None)


def _unexpected(values: pa.Array, condition: Condition) -> pa.Array:
    """Boolean mask without nulls: rows GX counts as unexpected (Spark's semantics)."""
    kind = condition.kind
    if kind == "nonnull":
        return pc.is_null(values)
    if kind == "null":
        return pc.is_valid(values)
    if kind == "in_set" and condition.values is None:
        return pa.array(np.zeros(len(values), dtype=bool))
    if kind in ("in_set", "not_in_set"):
        found = pc.is_in(values, value_set=pa.array(list(condition.values or ())))
        failed = pc.invert(found) if kind == "in_set" else found
    else:
        failed = pc.invert(_between(values, condition))
    return pc.and_(pc.is_valid(values), pc.fill_null(failed, False))


def _between(values: pa.Array, c: Condition) -> pa.Array:
    x = values
    if pa.types.is_floating(x.type):  # Spark orders NaN above every number
        x = pc.if_else(pc.is_nan(x), pa.scalar(math.inf, x.type), x)
    parts = []
    if c.low is not None:
        parts.append(pc.greater(x, c.low) if c.strict_min else pc.greater_equal(x, c.low))
    if c.high is not None:
        parts.append(pc.less(x, c.high) if c.strict_max else pc.less_equal(x, c.high))
    return parts[0] if len(parts) == 1 else pc.and_(parts[0], parts[1])
