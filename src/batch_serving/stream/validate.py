"""Each part of a micro-batch checked by the batch job's rules before it is scored.

The batch job refuses an input whose columns are missing or of a type the model cannot take
(``MissingColumnsError``, ``ColumnTypeError``, planned by ``scoring.casts``). A stream cannot
refuse: it quarantines the part's rows instead, each with the error naming the column (and
the types), so every landed row is scored, quarantined or in a poison report. Values that
do not parse (a numeric feature landed as strings) are flagged row by row by the same casts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_type, to_arrow_schema

from batch_serving.errors import ColumnTypeError, InputValidationError, MissingColumnsError
from batch_serving.scoring.plan import (
    ERROR_CLASS,
    ERROR_MESSAGE,
    MODEL_FIELDS,
    QUARANTINE_LINEAGE,
    SCORED_AT,
    ScoringPlan,
)
from batch_serving.stream.source import BatchPart

Planner = Callable[[pa.Schema, str], ScoringPlan]


@dataclass(frozen=True)
class Checked:
    """A part ready to score (``plan`` set) or refused (``error`` set, rows to quarantine)."""

    frame: DataFrame
    plan: ScoringPlan | None
    error: InputValidationError | None = None


def check_part(
    part: BatchPart, base: ScoringPlan, declared: pa.Schema, planner: Planner
) -> Checked:
    """The plan for ``part``: ``base`` when its columns are the declared ones, else planned
    from its own types; ids of another type are widened to the declared type or refused."""
    schema = to_arrow_schema(part.frame.schema, timezone="UTC")
    try:
        if part.missing:
            raise MissingColumnsError(list(part.missing), schema.names, part.where)
        frame = _conform_ids(part.frame, schema, base, part.where)
        schema = to_arrow_schema(frame.schema, timezone="UTC")
        if _same_columns(schema, declared, base.input_columns):
            return Checked(frame, base)
        return Checked(frame, planner(schema, part.where))
    except (MissingColumnsError, ColumnTypeError) as exc:
        return Checked(part.frame, None, exc)


def refused_rows(
    frame: DataFrame, base: ScoringPlan, error: InputValidationError, scored_at: dt.datetime
) -> pa.Table:
    """Every row of a refused part in ``base.tagged_schema``: its ids (null where a column is
    missing or cannot be read as declared), the error, the quarantine lineage."""
    present = set(frame.columns)
    ids = [
        F.col(f.name).try_cast(from_arrow_type(f.type)).alias(f.name)
        if f.name in present
        else F.lit(None).cast(from_arrow_type(f.type)).alias(f.name)
        for f in base.entity_fields
    ]
    table = frame.select(*ids).toArrow()
    n = table.num_rows
    ref = base.served.ref
    values = {
        ERROR_CLASS: type(error).__name__,
        ERROR_MESSAGE: str(error),
        MODEL_FIELDS[0].name: ref.name,
        MODEL_FIELDS[1].name: ref.version,
        QUARANTINE_LINEAGE[2].name: base.run_id,
        SCORED_AT.name: scored_at,
    }
    columns = []
    for field in base.tagged_schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.name in values:
            columns.append(pa.array([values[field.name]] * n, field.type))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(columns, schema=base.tagged_schema)


def _conform_ids(frame: DataFrame, schema: pa.Schema, base: ScoringPlan, where: str) -> DataFrame:
    """Id columns in the declared types (one type per table): widened when lossless (int32
    -> int64, float -> double), else a ``ColumnTypeError`` naming the column and both types."""
    for declared in base.entity_fields:
        if declared.name not in schema.names:
            continue  # the plan names it as missing
        actual = schema.field(declared.name).type
        if actual == declared.type:
            continue
        if not _widens(actual, declared.type):
            raise ColumnTypeError(
                f"column {declared.name!r} in {where} has type {actual}; the stream declares "
                f"{declared.type}"
            )
        frame = frame.withColumn(
            declared.name, F.col(declared.name).cast(from_arrow_type(declared.type))
        )
    return frame


def _widens(actual: pa.DataType, declared: pa.DataType) -> bool:
    for kind in (pa.types.is_signed_integer, pa.types.is_floating):
        if kind(actual) and kind(declared):
            return bool(actual.bit_width <= declared.bit_width)
    return False


def _same_columns(schema: pa.Schema, declared: pa.Schema, columns: list[str]) -> bool:
    return all(
        c in schema.names and c in declared.names and schema.field(c).type == declared.field(c).type
        for c in columns
    )
