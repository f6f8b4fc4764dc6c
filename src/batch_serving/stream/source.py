"""The streaming DataFrame: landing files (Parquet/JSON) or the rate source, plus the columns
the stream adds to every event: ``event_time`` and ``source_file``.

Those two (and ``_corrupt_record`` for JSON) ride through the scoring core as extra id
columns, so each scored or quarantined row still says when it happened and where it came from.
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_serving.config import StreamConfig
from batch_serving.stream.schema import parse_ddl

EVENT_TIME = "event_time"
SOURCE_FILE = "source_file"
CORRUPT = "_corrupt_record"
RATE_SOURCE = "rate"


def passthrough_columns(cfg: StreamConfig) -> list[str]:
    """Columns carried beside the entity ids through scoring into both output tables."""
    extra = [CORRUPT] if cfg.source == "files" and cfg.format == "json" else []
    return [EVENT_TIME, SOURCE_FILE, *extra]


def read_stream(spark: SparkSession, cfg: StreamConfig) -> DataFrame:
    """The unbounded input; for files, at most ``max_files_per_trigger`` new files per batch.

    Parquet: an unreadable file is skipped by Spark (``ignoreCorruptFiles``) and reported by
    the sink (``stream.poison``). JSON: a malformed line becomes a row whose ``_corrupt_record``
    holds the text; the sink quarantines it."""
    if cfg.source == RATE_SOURCE:
        return _rate(spark, cfg)
    reader = spark.readStream.format(cfg.format).option(
        "maxFilesPerTrigger", cfg.max_files_per_trigger
    )
    if cfg.clean_source != "off":  # Spark moves/deletes a file once its batch is committed
        reader = reader.option("cleanSource", cfg.clean_source)
        if cfg.archive_dir:
            reader = reader.option("sourceArchiveDir", cfg.archive_dir)
    if cfg.format == "json":
        reader = reader.schema(f"{cfg.columns}, {CORRUPT} STRING").option(
            "columnNameOfCorruptRecord", CORRUPT
        )
    else:
        reader = reader.schema(cfg.columns).option("ignoreCorruptFiles", "true")
    frame = reader.load(cfg.path)
    return _with_event_columns(
        frame,
        F.col("_metadata.file_modification_time"),
        F.col("_metadata.file_path"),
        cfg.event_time_column,
    )


def _rate(spark: SparkSession, cfg: StreamConfig) -> DataFrame:
    """Synthetic rows for load tests: the schema's columns computed from the rate's counter
    (integers: ``value`` or ``value % 97``; floats: ``(value * 37) % 1000 / 10``; strings:
    ``v0``..``v2``)."""
    rate = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", cfg.rows_per_second)
        .option("numPartitions", 2)
        .load()
    )
    columns = []
    for i, f in enumerate(parse_ddl(cfg.columns)):
        value = F.col("value")
        if pa.types.is_integer(f.type):
            col = value if i == 0 else value % 97
        elif pa.types.is_floating(f.type):
            col = ((value * 37 + i) % 1000) / 10.0
        elif pa.types.is_string(f.type):
            col = F.concat(F.lit("v"), (value % 3).cast("string"))
        elif pa.types.is_boolean(f.type):
            col = value % 2 == 0
        else:
            col = F.col("timestamp")
        columns.append(col.cast(_spark_type(f.type)).alias(f.name))
    frame = rate.select(*columns, F.col("timestamp").alias("_rate_time"))
    return _with_event_columns(
        frame, F.col("_rate_time"), F.lit(RATE_SOURCE), cfg.event_time_column
    ).drop("_rate_time")


def _with_event_columns(
    frame: DataFrame, landed: Column, source: Column, event_time_column: str | None
) -> DataFrame:
    event = F.col(event_time_column) if event_time_column else landed
    kept = [c for c in frame.columns if c not in (EVENT_TIME, SOURCE_FILE)]
    return frame.select(*kept, event.cast("timestamp").alias(EVENT_TIME), source.alias(SOURCE_FILE))


def _spark_type(arrow: pa.DataType) -> str:
    if pa.types.is_integer(arrow):
        return "bigint" if arrow == pa.int64() else "int"
    if pa.types.is_floating(arrow):
        return "double" if arrow == pa.float64() else "float"
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_string(arrow):
        return "string"
    return "timestamp" if pa.types.is_timestamp(arrow) else "date"
