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
    exprs: list[Column] = [F.col(c) for c in entity_columns]
    exprs += [F.col(n) if t is None else F.col(n).cast(t).alias(n) for n, t in casts.items()]
    return df.select(*exprs)


def _target(name: str, actual: T.DataType, expected: str | None, where: str) -> T.DataType | None:
    if expected is None or expected not in _SPARK_TYPES:
        return None
    target = _SPARK_TYPES[expected]
    if actual == target:
        return None
    if isinstance(target, _NUMERIC) and isinstance(actual, _NUMERIC):
        return target
    if isinstance(target, T.StringType) and isinstance(actual, T.StringType | T.CharType):
        return None
    raise ColumnTypeError(
        f"column {name!r} in {where} has type {actual.simpleString()}; the model expects {expected}"
    )
