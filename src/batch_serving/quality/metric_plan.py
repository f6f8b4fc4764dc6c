"""Which metrics a GX expectation needs, as plain descriptions that two backends compute.

For each expectation we ask GX which metrics it needs (``get_validation_dependencies``, the
call GX's validator makes). Each metric we know how to compute becomes a ``MetricSpec``:
a row count, a column's min/max/mean/stdev, or the count and examples of rows failing one of
GX's map conditions (null, not null, between, in set, not in set), with GX's own semantics
(nulls filtered out first except for the null checks). The backends:

- ``quality.task_metrics``: inside the scoring tasks, on the Arrow batches they already read
  and write (no extra scan; ``arrow_direct``);
- ``quality.onepass``: one Spark aggregation over a DataFrame (any engine).

GX then evaluates the expectation from those values (``metrics_validate``). An expectation
needing anything else is "not planned" (None) and runs through GX itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

MetricKind = Literal[
    "row_count", "min", "max", "mean", "stddev", "unexpected_count", "unexpected_values"
]
ConditionKind = Literal["nonnull", "null", "between", "in_set", "not_in_set"]

RESULT_FORMAT = "SUMMARY"  # what ``Batch.validate`` uses by default
PARTIAL_UNEXPECTED = 20  # GX's partial_unexpected_count for SUMMARY
_COUNT, _VALUES = "unexpected_count", "unexpected_values"
_INDEX_METRICS = ("unexpected_index_list", "unexpected_index_query")  # None without index columns
NUMERIC = ("ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType")
_MEAN_TYPES = ("IntegerType", "LongType", "FloatType", "DoubleType", "DecimalType")
_AGGREGATES: dict[str, tuple[MetricKind, tuple[str, ...] | None]] = {
    "column.min": ("min", None),
    "column.max": ("max", None),
    "column.mean": ("mean", _MEAN_TYPES),
    "column.standard_deviation": ("stddev", (*NUMERIC, "DecimalType")),
}


@dataclass(frozen=True)
class Condition:
    """GX's *expected* condition of a map metric; a row is unexpected when it fails it (after
    dropping nulls, except for the null checks themselves: GX's ``filter_column_isnull``)."""

    kind: ConditionKind
    low: Any = None
    high: Any = None
    strict_min: bool = False
    strict_max: bool = False
    values: tuple[Any, ...] | None = None  # in_set without a value set: every value expected

    @property
    def filter_nulls(self) -> bool:
        return self.kind not in ("nonnull", "null")


@dataclass(frozen=True)
class MetricSpec:
    """One metric value to compute: picklable, shipped to the scoring tasks."""

    kind: MetricKind
    column: str | None = None
    condition: Condition | None = None


@dataclass
class MetricPlan:
    """Every metric the planned expectations need (by GX metric id), plus constants."""

    metrics: dict[Any, MetricSpec] = field(default_factory=dict)
    constants: dict[Any, Any] = field(default_factory=dict)
    counts: dict[Any, Any] = field(default_factory=dict)  # unexpected_values id -> its count id

    def merge(self, other: MetricPlan) -> None:
        self.metrics.update(other.metrics)
        self.constants.update(other.constants)
        self.counts.update(other.counts)


def runtime_configuration() -> dict[str, Any]:
    return {"result_format": RESULT_FORMAT}


def spark_type_names(schema: pa.Schema) -> dict[str, str]:
    """Column -> the name of the Spark SQL type Spark reads it as (the planner's vocabulary,
    whichever backend computes the metrics)."""
    return {f.name: _spark_type_name(f.type) for f in schema}


def _spark_type_name(dtype: pa.DataType) -> str:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    table = (
        (pa.types.is_int8, "ByteType"),
        (pa.types.is_int16, "ShortType"),
        (pa.types.is_uint8, "ShortType"),
        (pa.types.is_int32, "IntegerType"),
        (pa.types.is_uint16, "IntegerType"),
        (pa.types.is_int64, "LongType"),
        (pa.types.is_uint32, "LongType"),
        (pa.types.is_float32, "FloatType"),
        (pa.types.is_float64, "DoubleType"),
        (pa.types.is_decimal, "DecimalType"),
        (pa.types.is_string, "StringType"),
        (pa.types.is_large_string, "StringType"),
        (pa.types.is_boolean, "BooleanType"),
    )
    for test, name in table:
        if test(dtype):
            return name
    return type(dtype).__name__  # dates, timestamps, nested: never numeric for the planner


def plan_expectation(expectation: Any, types: dict[str, str]) -> MetricPlan | None:
    """The metrics ``expectation`` needs if all are computable here, else None.

    ``types``: column -> Spark type name, in column order (``spark_type_names``)."""
    try:
        deps = expectation.get_validation_dependencies(
            runtime_configuration=runtime_configuration()
        )
    except Exception:  # GX refuses the configuration: GX's own run reports it
        return None
    kwargs = expectation.configuration.kwargs
    if any(isinstance(v, dict) for v in kwargs.values()):
        return None  # $PARAMETER references: GX resolves them
    if any(kwargs.get(k) for k in ("result_format", "windows", "row_condition")):
        return None  # another result format (COMPLETE lists every value), GX Cloud windows
    plan = MetricPlan()
    configs = deps.metric_configurations
    for name, config in configs.items():
        if not _plan_metric(plan, name, config, types, configs):
            return None
    return plan


def _plan_metric(
    plan: MetricPlan, name: str, config: Any, types: dict[str, str], configs: dict[str, Any]
) -> bool:
    domain = config.metric_domain_kwargs
    if domain.get("row_condition") is not None or domain.get("table") is not None:
        return False
    if name == "table.row_count":
        plan.metrics[config.id] = MetricSpec("row_count")
        return True
    if name == "table.columns":
        plan.constants[config.id] = list(types)
        return True
    column = domain.get("column")
    if column is None or column not in types:
        return False
    dtype = types[column]
    if name in _AGGREGATES:
        kind, allowed = _AGGREGATES[name]
        if allowed is not None and dtype not in allowed:
            return False
        plan.metrics[config.id] = MetricSpec(kind, column)
        return True
    prefix, _, suffix = name.rpartition(".")
    family, _, metric = prefix.partition(".")
    if family != "column_values" or metric not in _CONDITIONS:
        return False
    if suffix in _INDEX_METRICS:
        plan.constants[config.id] = None
        return True
    if metric == "between" and dtype not in NUMERIC:
        return False
    condition = _CONDITIONS[metric](config.metric_value_kwargs)
    if condition is None:
        return False
    if suffix == _COUNT:
        plan.metrics[config.id] = MetricSpec("unexpected_count", column, condition)
        return True
    count = configs.get(f"{prefix}.{_COUNT}")
    if suffix == _VALUES and count is not None:
        plan.metrics[config.id] = MetricSpec("unexpected_values", column, condition)
        plan.counts[config.id] = count.id
        return True
    return False


def _between(kw: dict[str, Any]) -> Condition | None:
    """GX's ``column_values.between`` (``column_values_between.py``)."""
    low, high = kw.get("min_value"), kw.get("max_value")
    if (low is None and high is None) or (low is not None and high is not None and low > high):
        return None  # GX raises for these: let GX report it
    return Condition("between", low, high, bool(kw.get("strict_min")), bool(kw.get("strict_max")))


def _in_set(kw: dict[str, Any]) -> Condition | None:
    values = kw.get("value_set")
    return Condition("in_set", values=None if values is None else tuple(values))


def _not_in_set(kw: dict[str, Any]) -> Condition | None:
    values = kw.get("value_set")
    return None if values is None else Condition("not_in_set", values=tuple(values))


_CONDITIONS = {
    "nonnull": lambda _: Condition("nonnull"),
    "null": lambda _: Condition("null"),
    "between": _between,
    "in_set": _in_set,
    "not_in_set": _not_in_set,
}
