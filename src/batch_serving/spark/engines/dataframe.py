"""The vectorized scoring step: ``mapInArrow`` over record batches with a worker-cached model."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_type

from batch_serving.models.adapters import ScoringSpec
from batch_serving.models.registry import ModelRef
from batch_serving.scoring.isolation import ERROR_FIELDS, score_and_split
from batch_serving.spark.delivery import ModelHandle

MODEL_COLUMNS = ("model_name", "model_version", "model_run_id", "scored_at")


ERROR_CLASS, ERROR_MESSAGE = "error_class", "error_message"


def output_schema(df: DataFrame, entity_columns: Sequence[str], spec: ScoringSpec) -> T.StructType:
    fields = [df.schema[c] for c in entity_columns]
    fields += [T.StructField(f.name, from_arrow_type(f.type), True) for f in spec.output_fields()]
    fields += [T.StructField(f.name, T.StringType(), True) for f in ERROR_FIELDS]
    return T.StructType(fields)


def score(
    df: DataFrame, entity_columns: Sequence[str], spec: ScoringSpec, handle: ModelHandle
) -> DataFrame:
    """Entity columns, output columns and ``error_class``/``error_message``: one row per input
    row; rows the model could not score have null outputs and a non-null ``error_class``."""
    entities = list(entity_columns)
    outputs = spec.output_fields()
    schema = output_schema(df, entities, spec)
    names = schema.fieldNames()

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = handle.get()
        for batch in batches:
            split = score_and_split(spec, model, batch, entities)
            good = len(split.scored[0])
            no_errors = [pa.nulls(good, pa.string()), pa.nulls(good, pa.string())]
            yield pa.RecordBatch.from_arrays(split.scored + no_errors, names=names)
            bad = len(split.quarantined[0])
            if bad:
                k = len(entities)
                no_outputs = [pa.nulls(bad, f.type) for f in outputs]
                arrays = split.quarantined[:k] + no_outputs + split.quarantined[k:]
                yield pa.RecordBatch.from_arrays(arrays, names=names)

    return df.mapInArrow(score_batches, schema)


def split_scored(df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(predictions, quarantined rows) of a ``score`` result; each write re-runs the scoring."""
    ok = F.col(ERROR_CLASS).isNull()
    return df.filter(ok).drop(ERROR_CLASS, ERROR_MESSAGE), df.filter(~ok)


def with_model_columns(df: DataFrame, ref: ModelRef, scored_at: dt.datetime) -> DataFrame:
    """Lineage columns: which model version scored each row, and when (one instant per run)."""
    return df.select(
        "*",
        F.lit(ref.name).alias("model_name"),
        F.lit(ref.version).cast("int").alias("model_version"),
        F.lit(ref.run_id).cast("string").alias("model_run_id"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
    )


def with_quarantine_columns(
    df: DataFrame, entity_columns: Sequence[str], ref: ModelRef, run_id: str, scored_at: dt.datetime
) -> DataFrame:
    """Quarantine rows: which entity, why, and which model version and run saw it."""
    return df.select(
        *entity_columns,
        ERROR_CLASS,
        ERROR_MESSAGE,
        F.lit(ref.name).alias("model_name"),
        F.lit(ref.version).cast("int").alias("model_version"),
        F.lit(run_id).alias("run_id"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
    )
