"""The vectorized scoring step: ``mapInArrow`` over record batches with a worker-cached model."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_type

from batch_serving.delivery import ModelHandle
from batch_serving.registry import ModelRef
from batch_serving.scorer import ScoringSpec, predict_batch

MODEL_COLUMNS = ("model_name", "model_version", "model_run_id", "scored_at")


def output_schema(df: DataFrame, entity_columns: Sequence[str], spec: ScoringSpec) -> T.StructType:
    fields = [df.schema[c] for c in entity_columns]
    fields += [T.StructField(f.name, from_arrow_type(f.type), True) for f in spec.output_fields()]
    return T.StructType(fields)


def score(
    df: DataFrame, entity_columns: Sequence[str], spec: ScoringSpec, handle: ModelHandle
) -> DataFrame:
    """Entity columns followed by the spec's output columns, one row per input row."""
    entities = list(entity_columns)
    names = entities + [f.name for f in spec.output_fields()]

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = handle.get()
        for batch in batches:
            outputs = predict_batch(spec, model, batch)
            ids = [batch.column(batch.schema.get_field_index(c)) for c in entities]
            yield pa.RecordBatch.from_arrays(ids + outputs, names=names)

    return df.mapInArrow(score_batches, output_schema(df, entities, spec))


def with_model_columns(df: DataFrame, ref: ModelRef, scored_at: dt.datetime) -> DataFrame:
    """Lineage columns: which model version scored each row, and when (one instant per run)."""
    return df.select(
        "*",
        F.lit(ref.name).alias("model_name"),
        F.lit(ref.version).cast("int").alias("model_version"),
        F.lit(ref.run_id).cast("string").alias("model_run_id"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
    )
