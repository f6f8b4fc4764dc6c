"""Kafka topics as a stream's input: ``stream.source: kafka``, one JSON object per message.

Spark's Kafka source picks each micro-batch's offset range and keeps it in the checkpoint's
offset log, so a replayed batch reads exactly the same messages. Each message's value is
parsed with the declared ``columns``; its topic, partition and offset ride along as id columns
into both output tables, so any scored or quarantined row says which message it was.

Every consumed message ends up scored or quarantined, never dropped, never failing the query,
by the same rules as a landed file (``ParquetFileSource``):

- not a JSON object (or a null value): quarantined as ``malformed_record`` with its text;
- a needed column absent from the object: ``MissingColumnsError`` naming it;
- a value of another JSON type than declared (``"abc"`` or ``"12.5"`` for a DOUBLE): the
  column comes as its text in a part of its own, and the scoring casts score the values that
  parse and quarantine the others, naming the column; an id that is not of its declared type
  is a ``ColumnTypeError`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from batch_serving.config import StreamConfig
from batch_serving.config.stream import KafkaConfig
from batch_serving.stream.schema import parse_ddl
from batch_serving.stream.source import (
    CORRUPT,
    EVENT_TIME,
    SOURCE_FILE,
    BatchInput,
    BatchPart,
    RowsPart,
)

KAFKA_TOPIC = "kafka_topic"
KAFKA_PARTITION = "kafka_partition"
KAFKA_OFFSET = "kafka_offset"
# per-message defects, computed for a batch and dropped before its parts are scored
_KEYS, _TEXT, _MALFORMED, _FAILED, _MISSING = (
    "_kafka_keys",
    "_kafka_text",
    "_kafka_malformed",
    "_kafka_failed",
    "_kafka_missing",
)
_KIND = (_MALFORMED, _FAILED, _MISSING)
# a longer message is parsed three times (far below Jackson's 20 M characters per string)
_ONE_PARSE_MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class KafkaSource:
    """Spark's Kafka source over ``stream.kafka.topics``; values parsed as JSON objects."""

    cfg: StreamConfig
    # the defect marks' expressions per set of wanted columns, built once per run: building
    # them is a driver round trip per function call, tens of ms per micro-batch
    _marks: dict[tuple[str, ...], Marks] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kafka(self) -> KafkaConfig:
        assert self.cfg.kafka is not None  # StreamConfig refuses source kafka without it
        return self.cfg.kafka

    def describe(self) -> str:
        return f"kafka topics {','.join(self.kafka.topics)} on {self.kafka.bootstrap_servers}"

    def passthrough_columns(self) -> list[str]:
        return [EVENT_TIME, SOURCE_FILE, CORRUPT, KAFKA_TOPIC, KAFKA_PARTITION, KAFKA_OFFSET]

    def read(self, spark: SparkSession) -> DataFrame:
        """The declared columns parsed from each value; ``_corrupt_record`` holds the value's
        text (``batch_input`` parses it again for a message with a null in a needed column)."""
        kafka = self.kafka
        reader = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
            .option("subscribe", ",".join(kafka.topics))
            .option("startingOffsets", kafka.starting_offsets)
        )
        if kafka.max_offsets_per_trigger is not None:
            reader = reader.option("maxOffsetsPerTrigger", kafka.max_offsets_per_trigger)
        for key, value in kafka.source_options.items():
            reader = reader.option(key, value)
        return self.parse(reader.load())

    def parse(self, records: DataFrame) -> DataFrame:
        """Kafka records (``value``, ``topic``, ``partition``, ``offset``, ``timestamp``) as the
        stream's frame: ``read`` over the topics, tests over records they build."""
        text = F.col("value").cast("string")
        messages = records.select(
            F.from_json(text, self.cfg.columns).alias("_value"),
            text.alias(CORRUPT),
            F.col("topic").alias(KAFKA_TOPIC),
            F.col("partition").alias(KAFKA_PARTITION),
            F.col("offset").alias(KAFKA_OFFSET),
            F.col("timestamp").alias("_kafka_timestamp"),
        )
        event = self.cfg.event_time_column
        time = F.col(f"_value.{event}") if event else F.col("_kafka_timestamp")
        return messages.select(
            "_value.*",
            time.cast("timestamp").alias(EVENT_TIME),
            F.col(KAFKA_TOPIC).alias(SOURCE_FILE),
            CORRUPT,
            KAFKA_TOPIC,
            KAFKA_PARTITION,
            KAFKA_OFFSET,
        )

    def batch_input(self, frame: DataFrame, batch_id: int, needed: Sequence[str]) -> BatchInput:
        """One part per kind of message in the batch: clean ones, malformed ones, and one per
        set of (mistyped, missing) columns. One Spark job collects the batch with each
        message's defects; the clean messages (almost always all of them) are scored on the
        driver from those rows, each defective kind is a part of its own read again by Spark."""
        declared = parse_ddl(self.cfg.columns).names
        wanted = [c for c in needed if c in declared]
        event = self.cfg.event_time_column
        if event and event not in wanted:
            wanted.append(event)
        if tuple(wanted) not in self._marks:
            self._marks[tuple(wanted)] = _defect_marks(wanted)
        marked = _mark_defects(frame, self._marks[tuple(wanted)])
        rows = marked.select(*frame.columns, *_KIND).toArrow()
        where = f"{self.describe()} batch {batch_id}"
        parts: list[BatchPart | RowsPart] = []
        for kind in rows.select(list(_KIND)).group_by(list(_KIND)).aggregate([]).to_pylist():
            malformed, failed, missing = bool(kind[_MALFORMED]), kind[_FAILED], kind[_MISSING]
            if not (malformed or failed or missing):
                parts.append(RowsPart(_clean_rows(rows, frame.columns), where))
            else:
                parts.append(_part(marked, frame.columns, malformed, failed, missing, where))
        return BatchInput(parts)


Marks = tuple[dict[str, Column], dict[str, Column]]


def _defect_marks(wanted: list[str]) -> Marks:
    """Each message's defects, as two steps of columns to add to the batch: not a JSON
    object; columns whose value did not parse as the declared type (null typed, not null as
    text); wanted columns absent from the object.

    Only a message with a null in a wanted column is parsed again (as text, and for its keys):
    a message whose wanted columns all parsed is a JSON object that has each of them, of its
    declared type, so it is clean without the two extra parses (almost every message)."""
    raw = F.col(CORRUPT)
    suspect = F.lit(not wanted) | _parsers_may_differ(raw)
    for name in wanted:
        suspect = suspect | F.col(name).isNull()
    text_schema = StructType([StructField(c, StringType()) for c in wanted])
    parsed = {
        _KEYS: F.when(suspect, F.json_object_keys(raw)),
        _TEXT: F.when(suspect, F.from_json(raw, text_schema)),
    }
    failed = [F.when(F.col(c).isNull() & F.col(_TEXT)[c].isNotNull(), F.lit(c)) for c in wanted]
    missing = [F.when(~F.array_contains(F.col(_KEYS), c), F.lit(c)) for c in wanted]
    kinds = {
        _MALFORMED: suspect & F.col(_KEYS).isNull(),
        _FAILED: F.when(suspect, _listed(failed)).otherwise(""),
        _MISSING: F.when(suspect, _listed(missing)).otherwise(""),
    }
    return parsed, kinds


def _mark_defects(frame: DataFrame, marks: Marks) -> DataFrame:
    """``frame`` with each message's defect marks (``_defect_marks``)."""
    parsed, kinds = marks
    return frame.withColumns(parsed).withColumns(kinds)


def _parsers_may_differ(raw: Column) -> Column:
    """Whether the keys' parser (``json_object_keys``: Jackson's defaults) might refuse a
    message the typed parse reads: ``NaN``/``Infinity`` tokens (``from_json`` allows them) or
    a text long enough to meet Jackson's string length limit. Such messages take both parses."""
    tokens = [raw.contains(t) for t in ("NaN", "Inf", "INF")]
    return tokens[0] | tokens[1] | tokens[2] | (F.octet_length(raw) > _ONE_PARSE_MAX_BYTES)


def _listed(names: list[Column]) -> Column:
    """The non-null ``names`` joined by commas (``""`` for none): one part per distinct list."""
    return F.array_join(F.array_compact(F.array(*names)), ",")


def _clean_rows(rows: pa.Table, columns: list[str]) -> pa.Table:
    """The batch's clean messages with the frame's columns (``_corrupt_record`` null)."""
    clean = pc.and_(
        pc.invert(rows.column(_MALFORMED)),
        pc.and_(pc.equal(rows.column(_FAILED), ""), pc.equal(rows.column(_MISSING), "")),
    )
    picked = rows.filter(clean).select(columns)
    at = picked.schema.get_field_index(CORRUPT)
    return picked.set_column(at, CORRUPT, pa.nulls(picked.num_rows, pa.string()))


def _part(
    marked: DataFrame, columns: list[str], malformed: bool, failed: str, missing: str, where: str
) -> BatchPart:
    """The messages of one kind with the frame's columns: a malformed message keeps its text
    in ``_corrupt_record`` (quarantined as ``malformed_record``); other messages drop it, and
    their mistyped columns come as text for the scoring casts to judge value by value."""
    rows = marked.filter(
        (F.col(_MALFORMED) == F.lit(malformed))
        & (F.col(_FAILED) == F.lit(failed))
        & (F.col(_MISSING) == F.lit(missing))
    )
    as_text = set(failed.split(",")) - {""}
    absent = tuple(c for c in missing.split(",") if c)
    selected: list[Column] = []
    for name in columns:
        if name in absent:
            continue  # the error lists the columns the messages have
        if name == CORRUPT:
            text = F.coalesce(F.col(CORRUPT), F.lit("<null value>"))
            selected.append((text if malformed else F.lit(None).cast("string")).alias(CORRUPT))
        elif name in as_text:
            selected.append(F.col(_TEXT)[name].alias(name))
        else:
            selected.append(F.col(name))
    label = "not JSON objects" if malformed else f"text for {sorted(as_text)}" if as_text else ""
    shown = f"{where} ({label})" if label else where
    return BatchPart(rows.select(*selected), shown, absent)
