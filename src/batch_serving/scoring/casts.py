"""Feature casts, planned once from Arrow types and applied to every batch.

Each feature is cast to the type the model signature declares (numpy-fed models: float64).
A column whose type cannot be converted is an ``InputValidationError`` naming it, before any
scoring; a string value that does not parse flags only its row (``_cast_error``), so one bad
value is quarantined instead of failing the run. Both Spark engines, a stream and the API use
this one implementation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.errors import ColumnTypeError, MissingColumnsError

log = logging.getLogger(__name__)

CAST_ERROR_COLUMN = "_cast_error"

# MLflow signature type names -> Arrow types, and the name an error message shows for each
_ARROW_TYPES: dict[str, pa.DataType] = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}
_LABELS = {v: k for k, v in _ARROW_TYPES.items()}


@dataclass(frozen=True)
class Cast:
    """One feature's conversion: the Arrow target and its name for messages."""

    target: pa.DataType
    label: str


def plan_casts(
    schema: pa.Schema,
    entity_columns: Sequence[str],
    features: Sequence[str],
    feature_types: dict[str, str],
    numeric_only: bool,
    where: str,
) -> dict[str, Cast]:
    """Feature -> its cast, for features whose type differs from what the model expects."""
    wanted = list(dict.fromkeys([*entity_columns, *features]))
    present = list(schema.names)
    missing = [c for c in wanted if c not in present]
    if missing:
        raise MissingColumnsError(missing, present, where)
    casts: dict[str, Cast] = {}
    for name in features:
        if name in entity_columns:
            continue
        expected = feature_types.get(name) or ("double" if numeric_only else None)
        target = _target(name, schema.field(name).type, expected, where)
        if target is not None:
            casts[name] = Cast(target, _LABELS.get(target, str(target)))
    return casts


def log_ignored(schema: pa.Schema, used: Sequence[str], where: str) -> None:
    """Columns the models do not read never cross into Python; say which, once."""
    extra = [c for c in schema.names if c not in set(used)]
    if extra:
        log.info(
            "ignoring %d input columns not used by the model: %s (in %s)", len(extra), extra, where
        )


def _target(name: str, actual: pa.DataType, expected: str | None, where: str) -> pa.DataType | None:
    if expected is None or expected not in _ARROW_TYPES:
        return None
    target = _ARROW_TYPES[expected]
    if actual == target:
        return None
    if _numeric(target) and (_numeric(actual) or _string(actual)):
        return target
    if _string(target) and _string(actual):
        return None
    raise ColumnTypeError(
        f"column {name!r} in {where} has type {actual}; the model expects {expected}"
    )


def _numeric(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or (pa.types.is_boolean(t))
    )


def _string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def cast_error_prefix(column: str) -> str:
    return f"cannot cast column '{column}' value '"


def apply_casts(batch: pa.RecordBatch, casts: dict[str, Cast]) -> pa.RecordBatch:
    """``batch`` with features cast; rows whose strings do not parse are flagged in
    ``_cast_error`` (their value becomes null) instead of failing the batch."""
    if not casts:
        return batch
    arrays, names, errors = [], [], None
    for i, field in enumerate(batch.schema):
        column = batch.column(i)
        cast = casts.get(field.name)
        if cast is not None:
            column, flagged = _cast_column(field.name, column, cast)
            if flagged is not None:
                errors = flagged if errors is None else pc.coalesce(errors, flagged)
        arrays.append(column)
        names.append(field.name)
    if errors is not None:
        arrays.append(errors)
        names.append(CAST_ERROR_COLUMN)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _cast_column(name: str, column: pa.Array, cast: Cast) -> tuple[pa.Array, pa.Array | None]:
    try:
        return pc.cast(column, cast.target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if not _string(column.type):
            raise
    parse = int if pa.types.is_integer(cast.target) else float
    values: list[object] = []
    messages: list[str | None] = []
    for raw in column.to_pylist():
        try:
            values.append(None if raw is None else parse(raw.strip()))
            messages.append(None)
        except ValueError:
            values.append(None)
            messages.append(f"{cast_error_prefix(name)}{raw}' to {cast.label}")
    return pa.array(values, cast.target), pa.array(messages, pa.string())
