"""Check the input against what the model needs, before any scoring starts.

Only the entity and feature columns are kept (so only they cross into Python), and numeric
features are cast to the type the model signature declares. A missing column or a type that
cannot be converted is an ``InputValidationError`` that names the column.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch_serving.errors import ColumnTypeError, MissingColumnsError

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


def require_columns(df: DataFrame, columns: Sequence[str], where: str) -> None:
    present = df.columns
    missing = [c for c in columns if c not in present]
    if missing:
        raise MissingColumnsError(missing, present, where)


def select_for_scoring(
    df: DataFrame,
    entity_columns: Sequence[str],
    features: Sequence[str],
    feature_types: dict[str, str] | None,
    numeric_only: bool,
    where: str,
) -> DataFrame:
    """Entity columns + features, each feature cast to its declared type."""
    wanted = list(dict.fromkeys([*entity_columns, *features]))
    require_columns(df, wanted, where)
    schema = {f.name: f.dataType for f in df.schema.fields}
    exprs: list[Column] = [F.col(c) for c in entity_columns]
    for name in features:
        if name in entity_columns:
            continue
        expected = (feature_types or {}).get(name)
        if expected is None and numeric_only:
            expected = "double"
        exprs.append(_cast(name, schema[name], expected, where))
    return df.select(*exprs)


def _cast(name: str, actual: T.DataType, expected: str | None, where: str) -> Column:
    if expected is None or expected not in _SPARK_TYPES:
        return F.col(name)
    target = _SPARK_TYPES[expected]
    if actual == target:
        return F.col(name)
    if isinstance(target, _NUMERIC) and isinstance(actual, _NUMERIC):
        return F.col(name).cast(target).alias(name)
    if isinstance(target, T.StringType) and isinstance(actual, T.StringType | T.CharType):
        return F.col(name)
    raise ColumnTypeError(
        f"column {name!r} in {where} has type {actual.simpleString()}; the model expects {expected}"
    )
