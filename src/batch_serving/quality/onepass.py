"""Expectations answered from ONE Spark aggregation, evaluated by Great Expectations itself.

GX's own Spark validation resolves each expectation's metrics with separate Spark jobs (12
jobs for the demo's four input expectations, about half of a 200k-row run). Here, for each
GX expectation we ask GX which metrics it needs (``get_validation_dependencies``, the same
call GX's validator makes). When every one is in the table below (row count, column names,
null/between/in-set counts, min/max/mean/stdev), all declared expectations' metrics are
computed in one ``df.agg(...)``, with the same Spark expressions GX's metric providers use.
Only an expectation that found unexpected values runs one more small query for examples,
GX's own ``filter(...).limit(20)``. GX then evaluates each expectation from those metrics
(``metrics_validate``): success, ``mostly``, the result dict and the
``ExpectationValidationResult`` are GX's.

Anything else (window conditions such as ``unique``, ``row_condition``, parameters given as
``$PARAMETER`` dicts, ``between`` on a non-numeric column, a missing column) is returned as
"not planned" and runs through GX on the DataFrame (``gates.run_gate``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

RESULT_FORMAT = "SUMMARY"  # what ``Batch.validate`` uses by default
PARTIAL_UNEXPECTED = 20  # GX's partial_unexpected_count for SUMMARY
_COUNT, _VALUES = "unexpected_count", "unexpected_values"
_INDEX_METRICS = ("unexpected_index_list", "unexpected_index_query")  # None without index columns
_NUMERIC = ("ByteType", "ShortType", "IntegerType", "LongType", "FloatType", "DoubleType")
_MEAN_TYPES = ("IntegerType", "LongType", "FloatType", "DoubleType", "DecimalType")


def _between(column: Column, kw: dict[str, Any]) -> Column | None:
    """GX's ``column_values.between`` Spark condition (``column_values_between.py``)."""
    from pyspark.sql import functions as F

    low, high = kw.get("min_value"), kw.get("max_value")
    strict_min, strict_max = kw.get("strict_min"), kw.get("strict_max")
    if (low is None and high is None) or (low is not None and high is not None and low > high):
        return None  # GX raises for these: let GX report it
    above = None if low is None else (column > F.lit(low) if strict_min else column >= F.lit(low))
    below = (
        None if high is None else (column < F.lit(high) if strict_max else column <= F.lit(high))
    )
    if above is None:
        return below
    return above if below is None else above & below


def _in_set(column: Column, kw: dict[str, Any]) -> Column | None:
    from pyspark.sql import functions as F

    values = kw.get("value_set")
    return F.lit(True) if values is None else column.isin(list(values))


def _not_in_set(column: Column, kw: dict[str, Any]) -> Column | None:
    values = kw.get("value_set")
    return None if values is None else ~column.isin(list(values))


# map metric -> (expected condition, whether nulls are filtered out first: GX's
# ``filter_column_isnull``, False only for the null checks themselves)
_MAP_METRICS: dict[str, tuple[Callable[[Column, dict[str, Any]], Column | None], bool]] = {
    "nonnull": (lambda c, _: c.isNotNull(), False),
    "null": (lambda c, _: c.isNull(), False),
    "between": (_between, True),
    "in_set": (_in_set, True),
    "not_in_set": (_not_in_set, True),
}
_AGGREGATES = {
    "column.min": ("min", None),
    "column.max": ("max", None),
    "column.mean": ("mean", _MEAN_TYPES),
    "column.standard_deviation": ("stddev_samp", (*_NUMERIC, "DecimalType")),
}


@dataclass(frozen=True)
class _Values:
    """Examples of unexpected values, fetched only when the count is above zero."""

    column: str
    unexpected: Column
    count_id: Any


@dataclass
class MetricPlan:
    """Every metric the planned expectations need: aggregates (one job), constants, examples."""

    aggregates: dict[Any, Column]
    constants: dict[Any, Any]
    values: dict[Any, _Values]

    def merge(self, other: MetricPlan) -> None:
        self.aggregates.update(other.aggregates)
        self.constants.update(other.constants)
        self.values.update(other.values)


def runtime_configuration() -> dict[str, Any]:
    return {"result_format": RESULT_FORMAT}


def plan_expectation(expectation: Any, schema: StructType) -> MetricPlan | None:
    """The metrics ``expectation`` needs if all are computable here, else None."""
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
    plan = MetricPlan({}, {}, {})
    configs = deps.metric_configurations
    for name, config in configs.items():
        if not _plan_metric(plan, name, config, schema, configs):
            return None
    return plan


def _plan_metric(
    plan: MetricPlan, name: str, config: Any, schema: StructType, configs: dict[str, Any]
) -> bool:
    from pyspark.sql import functions as F

    domain = config.metric_domain_kwargs
    if domain.get("row_condition") is not None or domain.get("table") is not None:
        return False
    if name == "table.row_count":
        plan.aggregates[config.id] = F.count(F.lit(1))
        return True
    if name == "table.columns":
        plan.constants[config.id] = list(schema.fieldNames())
        return True
    column = domain.get("column")
    if column is None or column not in schema.fieldNames():
        return False
    dtype = type(schema[column].dataType).__name__
    if name in _AGGREGATES:
        function, types = _AGGREGATES[name]
        if types is not None and dtype not in types:
            return False
        plan.aggregates[config.id] = getattr(F, function)(F.col(column))
        return True
    prefix, _, suffix = name.rpartition(".")
    family, _, metric = prefix.partition(".")
    if family != "column_values" or metric not in _MAP_METRICS:
        return False
    if suffix in _INDEX_METRICS:
        plan.constants[config.id] = None
        return True
    if metric == "between" and dtype not in _NUMERIC:
        return False
    condition, filter_nulls = _MAP_METRICS[metric]
    expected = condition(F.col(column), config.metric_value_kwargs)
    if expected is None:
        return False
    unexpected = F.col(column).isNotNull() & ~expected if filter_nulls else ~expected
    if suffix == _COUNT:
        plan.aggregates[config.id] = F.sum(F.when(unexpected, 1).otherwise(0))
        return True
    count = configs.get(f"{prefix}.{_COUNT}")
    if suffix == _VALUES and count is not None:
        plan.values[config.id] = _Values(column, unexpected, count.id)
        return True
    return False


def compute(df: DataFrame, plan: MetricPlan) -> dict[Any, Any]:
    """All planned metrics: ONE Spark job for the aggregates, plus one small job per
    expectation that found unexpected values (for its examples)."""
    from pyspark.sql import functions as F

    metrics: dict[Any, Any] = dict(plan.constants)
    keys = list(plan.aggregates)
    if keys:
        aggregated = df.agg(*[plan.aggregates[k].alias(f"m{i}") for i, k in enumerate(keys)])
        (row,) = aggregated.collect()  # a global aggregation: one row
        metrics.update({k: row[f"m{i}"] for i, k in enumerate(keys)})
    for key, values in plan.values.items():
        if not metrics.get(values.count_id):
            metrics[key] = []
            continue
        flagged = df.withColumn("__unexpected", values.unexpected)
        query = (
            flagged.filter(F.col("__unexpected") == True)  # noqa: E712  (GX's own query)
            .select(F.col(values.column).alias(values.column))
            .limit(PARTIAL_UNEXPECTED)
        )
        metrics[key] = [row[values.column] for row in query.collect()]
    return metrics


def validate_in_one_pass(
    df: DataFrame, expectations: Sequence[Any]
) -> tuple[dict[int, Any], list[int]]:
    """GX results of the expectations computable in one pass (by index), and the indexes of
    those that GX must run itself."""
    plans: dict[int, MetricPlan] = {}
    rest: list[int] = []
    for i, expectation in enumerate(expectations):
        plan = plan_expectation(expectation, df.schema)
        if plan is None:
            rest.append(i)
        else:
            plans[i] = plan
    if not plans:
        return {}, rest
    combined = MetricPlan({}, {}, {})
    for plan in plans.values():
        combined.merge(plan)
    metrics = compute(df, combined)
    results: dict[int, Any] = {}
    for i in plans:
        try:
            results[i] = expectations[i].metrics_validate(
                metrics, runtime_configuration=runtime_configuration()
            )
        except Exception as exc:  # GX's own run reports the problem its usual way
            log.info("%s: evaluated by GX itself (%s)", type(expectations[i]).__name__, exc)
            rest.append(i)
    return results, sorted(rest)
