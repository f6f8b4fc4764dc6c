"""Planned expectations' metrics from ONE Spark aggregation, evaluated by Great Expectations.

GX's own Spark validation resolves each expectation's metrics with separate Spark jobs (12
jobs for the demo's four input expectations, about half of a 200k-row run). Here the metrics
GX asks for (``metric_plan``) are computed in one ``df.agg(...)``, with the same Spark
expressions GX's metric providers use. Only an expectation that found unexpected values runs
one more small query for examples, GX's own ``filter(...).limit(20)``. GX then evaluates each
expectation from those metrics (``metrics_validate``): success, ``mostly``, the result dict and
the ``ExpectationValidationResult`` are GX's.

This is the DataFrame backend; the ``arrow_direct`` engine counts the same metrics inside its
scoring tasks instead (``task_metrics``). Anything not planned (window conditions such as
``unique``, ``row_condition``, ``$PARAMETER`` dicts, ``between`` on a non-numeric column, a
missing column) runs through GX on the DataFrame (``gates``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from batch_serving.quality.metric_plan import (
    PARTIAL_UNEXPECTED,
    Condition,
    MetricPlan,
    MetricSpec,
    plan_expectation,
    runtime_configuration,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

log = logging.getLogger(__name__)

_FUNCTIONS = {"min": "min", "max": "max", "mean": "mean", "stddev": "stddev_samp"}


def spark_types(df: DataFrame) -> dict[str, str]:
    """Column -> Spark type name, in column order (the planner's vocabulary)."""
    return {f.name: type(f.dataType).__name__ for f in df.schema}


def _expected(column: Column, condition: Condition) -> Column:
    from pyspark.sql import functions as F

    kind = condition.kind
    if kind == "nonnull":
        return column.isNotNull()
    if kind == "null":
        return column.isNull()
    if kind == "in_set":
        return F.lit(True) if condition.values is None else column.isin(list(condition.values))
    if kind == "not_in_set":
        return ~column.isin(list(condition.values or ()))
    low, high = condition.low, condition.high
    above = None if low is None else (column > low if condition.strict_min else column >= low)
    below = None if high is None else (column < high if condition.strict_max else column <= high)
    if above is None or below is None:
        found = above if below is None else below
        assert found is not None  # the planner refuses a between with neither bound
        return found
    return above & below


def unexpected(condition: Condition, name: str) -> Column:
    """GX's unexpected-row condition for ``condition`` on column ``name``."""
    from pyspark.sql import functions as F

    column = F.col(name)
    failed = ~_expected(column, condition)
    return column.isNotNull() & failed if condition.filter_nulls else failed


def aggregate(spec: MetricSpec) -> Column:
    from pyspark.sql import functions as F

    if spec.kind == "row_count":
        return F.count(F.lit(1))
    assert spec.column is not None
    if spec.kind == "unexpected_count":
        assert spec.condition is not None
        return F.sum(F.when(unexpected(spec.condition, spec.column), 1).otherwise(0))
    function: Any = getattr(F, _FUNCTIONS[spec.kind])
    column: Column = function(F.col(spec.column))
    return column


def compute(df: DataFrame, plan: MetricPlan) -> dict[Any, Any]:
    """All planned metrics: ONE Spark job for the aggregates, plus one small job per
    expectation that found unexpected values (for its examples)."""
    from pyspark.sql import functions as F

    metrics: dict[Any, Any] = dict(plan.constants)
    keys = [k for k, s in plan.metrics.items() if s.kind != "unexpected_values"]
    if keys:
        aggregated = df.agg(
            *[aggregate(plan.metrics[k]).alias(f"m{i}") for i, k in enumerate(keys)]
        )
        (row,) = aggregated.collect()  # a global aggregation: one row
        metrics.update({k: row[f"m{i}"] for i, k in enumerate(keys)})
    for key, spec in plan.metrics.items():
        if spec.kind != "unexpected_values":
            continue
        if not metrics.get(plan.counts[key]):
            metrics[key] = []
            continue
        assert spec.column is not None and spec.condition is not None
        flagged = df.withColumn("__unexpected", unexpected(spec.condition, spec.column))
        query = (
            flagged.filter(F.col("__unexpected") == True)  # noqa: E712  (GX's own query)
            .select(F.col(spec.column).alias(spec.column))
            .limit(PARTIAL_UNEXPECTED)
        )
        metrics[key] = [row[spec.column] for row in query.collect()]
    return metrics


def evaluate(
    expectations: Sequence[Any], plans: dict[int, MetricPlan], metrics: dict[Any, Any]
) -> tuple[dict[int, Any], list[int]]:
    """GX's results of the planned expectations from ``metrics`` (by index), and the indexes
    of those GX refused to evaluate that way (they go to GX's own run)."""
    results: dict[int, Any] = {}
    refused: list[int] = []
    for i in plans:
        try:
            results[i] = expectations[i].metrics_validate(
                metrics, runtime_configuration=runtime_configuration()
            )
        except Exception as exc:  # GX's own run reports the problem its usual way
            log.info("%s: evaluated by GX itself (%s)", type(expectations[i]).__name__, exc)
            refused.append(i)
    return results, refused


def validate_in_one_pass(
    df: DataFrame, expectations: Sequence[Any], skip: Sequence[int] = ()
) -> tuple[dict[int, Any], list[int]]:
    """GX results of the expectations computable in one pass (by index), and the indexes of
    those that GX must run itself. ``skip``: indexes answered elsewhere (neither)."""
    types = spark_types(df)
    plans: dict[int, MetricPlan] = {}
    rest: list[int] = []
    for i, expectation in enumerate(expectations):
        if i in skip:
            continue
        plan = plan_expectation(expectation, types)
        if plan is None:
            rest.append(i)
        else:
            plans[i] = plan
    if not plans:
        return {}, rest
    combined = MetricPlan()
    for plan in plans.values():
        combined.merge(plan)
    results, refused = evaluate(expectations, plans, compute(df, combined))
    return results, sorted([*rest, *refused])
