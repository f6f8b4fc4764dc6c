"""Where a stream's events come from: the ``StreamSource`` seam and its sources.

A source has two jobs. ``read`` gives Spark the unbounded frame it tracks (offsets,
checkpoint, ``maxFilesPerTrigger``, ``cleanSource``). ``batch_input`` turns one micro-batch
into *parts*, frames of rows sharing one schema, each validated and scored with a plan
built for that schema by the batch's own rules (``scoring.casts``). ``KafkaSource``
(``kafka_source``) is one more class: ``read`` the topics, ``batch_input`` a part per kind of
message (clean, malformed, mistyped or missing columns).

Every frame carries ``event_time`` and ``source_file`` (and ``_corrupt_record`` for JSON):
they ride through the scoring core as extra id columns, so each scored or quarantined row
still says when it happened and where it came from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamReader
from pyspark.sql.types import StructField, StructType

from batch_serving.config import StreamConfig
from batch_serving.stream.poison import batch_files, read_footer
from batch_serving.stream.schema import parse_ddl

log = logging.getLogger(__name__)
EVENT_TIME = "event_time"
SOURCE_FILE = "source_file"
CORRUPT = "_corrupt_record"
RATE_SOURCE = "rate"
KAFKA_SOURCE = "kafka"


@dataclass(frozen=True)
class BatchPart:
    """Rows of one micro-batch that share one schema: validated and scored with one plan.

    ``missing``: columns the source itself needed (the event-time column) and did not find;
    the part's rows are then quarantined naming them."""

    frame: DataFrame
    where: str
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class RowsPart:
    """Rows of one micro-batch already collected to the driver, in the stream's declared
    columns and types: scored there by the Arrow core with the stream's plan (no Spark job,
    no Python worker round trip; what makes a small micro-batch fast)."""

    rows: pa.Table
    where: str


@dataclass(frozen=True)
class BatchInput:
    """One micro-batch as its source found it: parts to score, files it could not read."""

    parts: Sequence[BatchPart | RowsPart]
    poison: dict[str, str] = field(default_factory=dict)  # file uri -> why it is unreadable


class StreamSource(Protocol):
    """The seam of the stream's inputs (files, rate, Kafka)."""

    def describe(self) -> str:
        """Where the events come from, for logs and error messages."""
        ...

    def passthrough_columns(self) -> list[str]:
        """Columns carried beside the entity ids through scoring into both output tables."""
        ...

    def read(self, spark: SparkSession) -> DataFrame:
        """The unbounded frame Spark tracks; with the declared ``columns``."""
        ...

    def batch_input(self, frame: DataFrame, batch_id: int, needed: Sequence[str]) -> BatchInput:
        """Micro-batch ``batch_id`` (``frame``: Spark's rows of it) as parts to score;
        ``needed``: the columns the plan reads."""
        ...


def source_for(cfg: StreamConfig, checkpoint: Path) -> StreamSource:
    """The source class for ``stream.source`` / ``stream.format``."""
    if cfg.source == RATE_SOURCE:
        return RateSource(cfg)
    if cfg.source == KAFKA_SOURCE:
        from batch_serving.stream.kafka_source import KafkaSource  # it builds on this module

        return KafkaSource(cfg)
    if cfg.format == "json":
        return JsonFileSource(cfg)
    return ParquetFileSource(cfg, checkpoint)


@dataclass(frozen=True)
class RateSource:
    """Synthetic rows for load tests: the schema's columns computed from the rate's counter
    (integers: ``value`` or ``value % 97``; floats: ``(value * 37) % 1000 / 10``; strings:
    ``v0``..``v2``)."""

    cfg: StreamConfig

    def describe(self) -> str:
        return "rate source"

    def passthrough_columns(self) -> list[str]:
        return [EVENT_TIME, SOURCE_FILE]

    def read(self, spark: SparkSession) -> DataFrame:
        rate = (
            spark.readStream.format("rate")
            .option("rowsPerSecond", self.cfg.rows_per_second)
            .option("numPartitions", 2)
            .load()
        )
        columns = [
            _rate_column(i, f).cast(_spark_type(f.type)).alias(f.name)
            for i, f in enumerate(parse_ddl(self.cfg.columns))
        ]
        frame = rate.select(*columns, F.col("timestamp").alias("_rate_time"))
        return _with_event_columns(
            frame, F.col("_rate_time"), F.lit(RATE_SOURCE), self.cfg.event_time_column
        ).drop("_rate_time")

    def batch_input(self, frame: DataFrame, batch_id: int, needed: Sequence[str]) -> BatchInput:
        return BatchInput([BatchPart(frame, f"rate source batch {batch_id}")])


@dataclass(frozen=True)
class JsonFileSource:
    """JSON lines with the declared schema: a malformed line becomes a row whose
    ``_corrupt_record`` holds the text (the sink quarantines it as ``malformed_record``)."""

    cfg: StreamConfig

    def describe(self) -> str:
        return str(self.cfg.path)

    def passthrough_columns(self) -> list[str]:
        return [EVENT_TIME, SOURCE_FILE, CORRUPT]

    def read(self, spark: SparkSession) -> DataFrame:
        reader = _file_reader(spark, self.cfg).option("columnNameOfCorruptRecord", CORRUPT)
        frame = reader.schema(f"{self.cfg.columns}, {CORRUPT} STRING").load(self.cfg.path)
        return _with_file_columns(frame, self.cfg.event_time_column)

    def batch_input(self, frame: DataFrame, batch_id: int, needed: Sequence[str]) -> BatchInput:
        return BatchInput([BatchPart(frame, f"{self.cfg.path} batch {batch_id}")])


@dataclass(frozen=True)
class ParquetFileSource:
    """Parquet files, each read with its own schema.

    Spark's file source reads every file with the declared schema: a file whose feature is
    of another type is dropped whole (``ignoreCorruptFiles``), one without a column gets
    nulls. So the stream uses Spark only to pick each batch's files (its source log in the
    checkpoint) and reads them itself, grouped by schema: a missing column or an
    impossible type then fails that group's plan and its rows are quarantined naming the
    column, exactly as the batch job refuses them. A file whose footer cannot be read is
    poison: reported once, never retried."""

    cfg: StreamConfig
    checkpoint: Path

    def describe(self) -> str:
        return str(self.cfg.path)

    def passthrough_columns(self) -> list[str]:
        return [EVENT_TIME, SOURCE_FILE]

    def read(self, spark: SparkSession) -> DataFrame:
        frame = _file_reader(spark, self.cfg).schema(self.cfg.columns).load(self.cfg.path)
        return _with_file_columns(frame, self.cfg.event_time_column)

    def batch_input(self, frame: DataFrame, batch_id: int, needed: Sequence[str]) -> BatchInput:
        wanted = [c for c in needed if c not in (EVENT_TIME, SOURCE_FILE)]
        if self.cfg.event_time_column and self.cfg.event_time_column not in wanted:
            wanted.append(self.cfg.event_time_column)
        groups: dict[tuple[pa.Field, ...], list[str]] = {}
        poison: dict[str, str] = {}
        for uri in batch_files(self.checkpoint, batch_id):
            schema = read_footer(uri, batch_id)
            if isinstance(schema, str):
                poison[uri] = schema
            if not isinstance(schema, pa.Schema):
                continue
            key = tuple(schema.field(c) for c in wanted if c in schema.names)
            groups.setdefault(key, []).append(uri)
        parts = [self._part(frame.sparkSession, list(k), uris) for k, uris in groups.items()]
        return BatchInput(parts, poison)

    def _part(self, spark: SparkSession, fields: list[pa.Field], uris: list[str]) -> BatchPart:
        names = [f.name for f in fields]
        event = self.cfg.event_time_column
        missing = (event,) if event and event not in names else ()
        landed = F.col("_metadata.file_modification_time")
        time = F.col(event) if event and not missing else landed
        part = _parquet_files(spark, fields, uris).select(
            *names,
            time.cast("timestamp").alias(EVENT_TIME),
            F.col("_metadata.file_path").alias(SOURCE_FILE),
        )
        shown = ", ".join(u.rsplit("/", 1)[-1] for u in uris[:3])
        more = f" (+{len(uris) - 3} more)" if len(uris) > 3 else ""
        return BatchPart(part, f"{shown}{more} in {self.cfg.path}", missing)


def _file_reader(spark: SparkSession, cfg: StreamConfig) -> DataStreamReader:
    """The file source's options: at most ``max_files_per_trigger`` new files per batch;
    with ``clean_source``, Spark moves/deletes a file once its batch is committed."""
    reader = spark.readStream.format(cfg.format).option(
        "maxFilesPerTrigger", cfg.max_files_per_trigger
    )
    if cfg.clean_source != "off":
        reader = reader.option("cleanSource", cfg.clean_source)
        if cfg.archive_dir:
            reader = reader.option("sourceArchiveDir", cfg.archive_dir)
    return reader


def _with_file_columns(frame: DataFrame, event_time_column: str | None) -> DataFrame:
    return _with_event_columns(
        frame,
        F.col("_metadata.file_modification_time"),
        F.col("_metadata.file_path"),
        event_time_column,
    )


def _with_event_columns(
    frame: DataFrame, landed: Column, source: Column, event_time_column: str | None
) -> DataFrame:
    event = F.col(event_time_column) if event_time_column else landed
    kept = [c for c in frame.columns if c not in (EVENT_TIME, SOURCE_FILE)]
    return frame.select(*kept, event.cast("timestamp").alias(EVENT_TIME), source.alias(SOURCE_FILE))


def _parquet_files(spark: SparkSession, fields: list[pa.Field], uris: list[str]) -> DataFrame:
    """The files as they are (their own types); the schema is given when Spark has a type
    for every column (no footer-reading job), else Spark infers it."""
    from pyspark.sql.pandas.types import from_arrow_type

    try:
        schema = StructType([StructField(f.name, from_arrow_type(f.type)) for f in fields])
    except Exception:  # a type pyspark cannot map: let Spark read the footer itself
        return spark.read.parquet(*uris)
    return spark.read.schema(schema).parquet(*uris)


def _rate_column(i: int, f: pa.Field) -> Column:
    value = F.col("value")
    if pa.types.is_integer(f.type):
        return value if i == 0 else value % 97
    if pa.types.is_floating(f.type):
        return ((value * 37 + i) % 1000) / 10.0
    if pa.types.is_string(f.type):
        return F.concat(F.lit("v"), (value % 3).cast("string"))
    if pa.types.is_boolean(f.type):
        return value % 2 == 0
    return F.col("timestamp")


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
