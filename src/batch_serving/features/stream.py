"""Windowed features in Spark Structured Streaming: ``windowed_frame`` adds them to a stream.

    frame -> watermark on the event time -> integers for times -> groupBy(entity)
          -> transformWithStateInPandas(WindowProcessor) -> times back -> enriched events

An event comes out once the watermark has passed it, with the features of its entity's
events strictly before it (``processor``); one arriving behind the watermark is dropped by
Spark and counted in the query's progress (``late_events``). The state lives in the RocksDB
state store (transformWithState needs it), in the query's checkpoint: start the query inside
``state_store_conf`` (a streaming query keeps a copy of its session's conf from its start).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, LongType, StructField, StructType, TimestampType

from batch_serving.errors import MissingColumnsError
from batch_serving.features.processor import (
    BUCKET,
    BUCKETS,
    TIME_US,
    WindowProcessor,
    output_schema,
)
from batch_serving.features.spec import WindowSpec

log = logging.getLogger(__name__)
STATE_STORE = "spark.sql.streaming.stateStore.providerClass"
ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
# The session reads local files through RawLocalFileSystem (no .crc files, spark.session);
# RocksDB's upload (FileSystem.copyFromLocalFile -> getLocal) casts to LocalFileSystem, so the
# query alone gets Hadoop's default local filesystem, uncached so the cached raw one is not
# reused. Its checkpoint then has .crc files; the job's tables are written elsewhere.
QUERY_CONF = {
    STATE_STORE: ROCKSDB,
    "fs.file.impl": "org.apache.hadoop.fs.LocalFileSystem",
    "fs.file.impl.disable.cache": "true",
}


def windowed_frame(frame: DataFrame, spec: WindowSpec) -> DataFrame:
    """``frame`` (a streaming frame with the entity, event-time and aggregated columns) with
    one column per feature, each event released once the watermark passes it."""
    _require(frame, spec)
    delay = f"{spec.watermark_us // 1000} milliseconds"
    watermarked = frame.withWatermark(spec.event_time, delay)
    encoded = watermarked.select(
        spec.event_time,  # as it is: the watermark (and Spark's late-event filter) is on it
        *(encode(f) for f in frame.schema.fields if f.name != spec.event_time),
        F.unix_micros(F.col(spec.event_time)).alias(TIME_US),
        F.pmod(F.xxhash64(F.col(spec.entity)), F.lit(BUCKETS)).alias(BUCKET),
    )
    pending = StructType([_encoded_field(f) for f in encoded.schema.fields[1:-1]])
    processed = encoded.groupBy(BUCKET).transformWithStateInPandas(
        statefulProcessor=WindowProcessor(spec, pending, encoded.columns),
        outputStructType=output_schema(pending, spec),
        outputMode="Append",
        timeMode="EventTime",
    )
    restored = {f.name: decode(f) for f in frame.schema.fields if f.name != spec.event_time}
    restored[spec.event_time] = F.timestamp_micros(F.col(TIME_US)).alias(spec.event_time)
    return processed.select(*(restored[c] for c in frame.columns), *spec.names)


@contextmanager
def state_store_conf(spark: SparkSession) -> Iterator[None]:
    """Start a windowed query inside this: the RocksDB state store and a local filesystem it
    can upload with, for that query only (the session's conf is restored on exit)."""
    previous: dict[str, str | None] = {key: spark.conf.get(key, None) for key in QUERY_CONF}
    for key, value in QUERY_CONF.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def late_events(progress: Iterable[Any]) -> int:
    """Events Spark dropped behind the watermark, over these query progress reports."""
    return sum(
        int(op.numRowsDroppedByWatermark) for p in progress for op in (p.stateOperators or [])
    )


def encode(field: StructField) -> Column:
    """Times and dates as integers (microseconds, days) through the state."""
    column = F.col(field.name)
    if isinstance(field.dataType, TimestampType):
        return F.unix_micros(column).alias(field.name)
    if isinstance(field.dataType, DateType):
        return F.unix_date(column).alias(field.name)
    return column


def decode(field: StructField) -> Column:
    column = F.col(field.name)
    if isinstance(field.dataType, TimestampType):
        return F.timestamp_micros(column).alias(field.name)
    if isinstance(field.dataType, DateType):
        return F.date_from_unix_date(column).alias(field.name)
    return column


def _encoded_field(field: StructField) -> StructField:
    kind = LongType() if isinstance(field.dataType, TimestampType) else field.dataType
    return StructField(field.name, kind, True)


def _require(frame: DataFrame, spec: WindowSpec) -> None:
    needed = [spec.entity, spec.event_time, *spec.columns]
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    if missing:
        raise MissingColumnsError(missing, frame.columns, "the stream's events (windows)")
