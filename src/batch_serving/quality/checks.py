"""Check the input against what the model needs, before any scoring starts.

Only the entity and feature columns are kept (so only they cross into Python), and numeric
features are cast to the type the model signature declares. A missing column or a type that
cannot be converted is an ``InputValidationError`` that names the column.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch_serving.errors import ColumnTypeError, InputValidationError, MissingColumnsError
from batch_serving.scoring.isolation import CAST_ERROR_COLUMN

log = logging.getLogger(__name__)

_SPARK_TYPES: dict[str, T.DataType] = {
    "double": T.DoubleType(),
    "float": T.FloatType(),
    "long": T.LongType(),
    "integer": T.IntegerType(),
    "boolean": T.BooleanType(),
    "string": T.StringType(),
}
_NUMERIC = (
    T.ByteType,
    T.ShortType,
    T.IntegerType,
    T.LongType,
    T.FloatType,
    T.DoubleType,
    T.DecimalType,
    T.BooleanType,
)


def plan_casts(
    schema: T.StructType,
    entity_columns: Sequence[str],
    features: Sequence[str],
    feature_types: dict[str, str] | None,
    numeric_only: bool,
    where: str,
) -> dict[str, T.DataType | None]:
    """Feature -> the type to cast it to (``None``: keep as is). Shared by both engines."""
    wanted = list(dict.fromkeys([*entity_columns, *features]))
    present = [f.name for f in schema.fields]
    missing = [c for c in wanted if c not in present]
    if missing:
        raise MissingColumnsError(missing, present, where)
    actual = {f.name: f.dataType for f in schema.fields}
    casts: dict[str, T.DataType | None] = {}
    for name in features:
        if name in entity_columns:
            continue
        expected = (feature_types or {}).get(name)
        if expected is None and numeric_only:
            expected = "double"
        casts[name] = _target(name, actual[name], expected, where)
    return casts


def select_for_scoring(
    df: DataFrame,
    entity_columns: Sequence[str],
    features: Sequence[str],
    feature_types: dict[str, str] | None,
    numeric_only: bool,
    where: str,
) -> DataFrame:
    """Entity columns + features, each feature cast to its declared type."""
    casts = plan_casts(df.schema, entity_columns, features, feature_types, numeric_only, where)
    log_ignored_columns(df.columns, [*entity_columns, *features], where)
    exprs: list[Column] = [F.col(c) for c in entity_columns]
    cast_errors: list[Column] = []
    for name, target in casts.items():
        if target is None:
            exprs.append(F.col(name))
        elif isinstance(df.schema[name].dataType, T.StringType):
            # per-row: values that do not parse become quarantined rows, not a failed job
            casted = F.col(name).try_cast(target)
            exprs.append(casted.alias(name))
            message = F.concat(
                F.lit(cast_error_prefix(name)), F.col(name), F.lit(f"' to {target.simpleString()}")
            )
            cast_errors.append(F.when(F.col(name).isNotNull() & casted.isNull(), message))
        else:
            exprs.append(F.col(name).cast(target).alias(name))
    if cast_errors:
        exprs.append(F.coalesce(*cast_errors).alias(CAST_ERROR_COLUMN))
    return df.select(*exprs)


def cast_error_prefix(column: str) -> str:
    return f"cannot cast column '{column}' value '"


def log_ignored_columns(present: Sequence[str], used: Sequence[str], where: str) -> None:
    extra = [c for c in present if c not in set(used)]
    if extra:
        log.info(
            "ignoring %d input columns not used by the model: %s (in %s)", len(extra), extra, where
        )


def _target(name: str, actual: T.DataType, expected: str | None, where: str) -> T.DataType | None:
    if expected is None or expected not in _SPARK_TYPES:
        return None
    target = _SPARK_TYPES[expected]
    if actual == target:
        return None
    if isinstance(target, _NUMERIC) and isinstance(actual, (*_NUMERIC, T.StringType)):
        return target
    if isinstance(target, T.StringType) and isinstance(actual, T.StringType | T.CharType):
        return None
    raise ColumnTypeError(
        f"column {name!r} in {where} has type {actual.simpleString()}; the model expects {expected}"
    )


def duplicate_ids_spark(df: DataFrame, entity_columns: Sequence[str]) -> tuple[int, list[Any]]:
    """(rows beyond the first per entity id, a few example ids), from the id columns only."""
    counts = df.groupBy(*entity_columns).count().filter(F.col("count") > 1)
    extra = int(counts.agg(F.sum(F.col("count") - 1)).collect()[0][0] or 0)
    if not extra:
        return 0, []
    examples = [list(r)[:-1] for r in counts.limit(5).collect()]
    return extra, [e[0] if len(e) == 1 else e for e in examples]


def duplicate_ids_arrow(
    files: Sequence[Any], entity_columns: Sequence[str]
) -> tuple[int, list[Any]]:
    import pandas as pd
    import pyarrow.parquet as pq

    ids = pd.concat(
        [pq.read_table(f, columns=list(entity_columns)).to_pandas() for f in files],
        ignore_index=True,
    )
    dup = ids.duplicated(keep="first")
    examples = ids[dup].drop_duplicates().head(5).to_numpy().tolist()
    return int(dup.sum()), [e[0] if len(e) == 1 else e for e in examples]


def check_duplicates(
    extra: int, examples: list[Any], entity_columns: Sequence[str], policy: str, where: str
) -> None:
    if extra and policy == "fail":
        raise InputValidationError(
            f"input partition {where} has {extra} duplicate values of {list(entity_columns)} "
            f"(e.g. {examples}); set validation.duplicate_ids to keep_last or allow"
        )
    if extra:
        log.warning("%d duplicate entity ids in %s (duplicate_ids: %s)", extra, where, policy)


def keep_last(df: DataFrame, entity_columns: Sequence[str]) -> DataFrame:
    """One row per entity id: the last one in read order (files, then rows within a file)."""
    from pyspark.sql.window import Window

    order = Window.partitionBy(*entity_columns).orderBy(F.col("_bs_seq").desc())
    return (
        df.withColumn("_bs_seq", F.monotonically_increasing_id())
        .withColumn("_bs_rank", F.row_number().over(order))
        .filter(F.col("_bs_rank") == 1)
        .drop("_bs_seq", "_bs_rank")
    )


def check_not_empty(rows: int, allow_empty: bool, where: str) -> None:
    if rows == 0 and not allow_empty:
        raise InputValidationError(
            f"input partition {where} is empty (0 rows); set validation.allow_empty: true "
            "to commit an empty predictions partition"
        )
