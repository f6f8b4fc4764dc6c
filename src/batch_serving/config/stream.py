"""The ``stream:`` section of a job file: micro-batch scoring of a landing directory or of
Kafka topics, into the stream tables and/or a Kafka topic.

Kept apart from ``sections.py`` (the batch job's sections); the same rules apply: each field's
docstring is its description in the configuration reference and the JSON Schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from batch_serving.config.paths import overlap
from batch_serving.config.sections import Frozen

Sink = Literal["table", "kafka"]


class KafkaConfig(Frozen):
    """The Kafka side of a stream (`stream.kafka`): the topics it reads (`source: kafka`) and the
    topic it writes scored events to (`sink: kafka`), exactly once."""

    bootstrap_servers: str = Field(min_length=1)
    """Brokers, `host:port[,host:port...]`."""
    topics: list[str] = Field(default_factory=list)
    """Topics read by `source: kafka`; each message's value is one JSON object with the
    `columns`."""
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    """Where a new stream (empty checkpoint) starts; afterwards the checkpoint's offsets rule."""
    max_offsets_per_trigger: int | None = Field(default=None, ge=1)
    """Most messages one micro-batch takes (bounds batch size under a backlog); `null`: all."""
    source_options: dict[str, str] = Field(default_factory=dict)
    """More options of Spark's Kafka source, e.g. `{kafka.security.protocol: SASL_SSL}`
    (consumer settings take the `kafka.` prefix) or `{failOnDataLoss: "false"}`."""
    output_topic: str | None = None
    """Topic `sink: kafka` writes scored events to (it must exist); the sink also uses
    `<output_topic>.batches` (batch markers) and `<output_topic>.quarantine`, created if
    missing."""
    producer_options: dict[str, str] = Field(default_factory=dict)
    """More librdkafka settings of the sink's transactional producer, e.g.
    `{security.protocol: SASL_SSL}`; `transactional.id` is the stream's own."""

    @field_validator("source_options", "producer_options", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()
            }
        return value


class StreamConfig(Frozen):
    """Streaming micro-batch scoring (``batch-serving stream``): the same scoring core driven by
    Spark Structured Streaming over a landing directory or Kafka topics (or the rate source,
    for load tests)."""

    source: Literal["files", "rate", "kafka"] = "files"
    """`files`: new Parquet/JSON files landing in `path`; `kafka`: JSON messages of
    `kafka.topics`; `rate`: synthetic rows (load tests)."""
    sink: list[Sink] = Field(default_factory=lambda: list[Sink](["table"]), min_length=1)
    """Where scored events go: `table` (the `stream_predictions`/`stream_quarantine` Parquet
    tables), `kafka` (`kafka.output_topic`), or both, e.g. `[table, kafka]`; each exactly once."""
    kafka: KafkaConfig | None = None
    """Brokers and topics of `source: kafka` and `sink: kafka`."""
    path: str | None = None
    """Landing directory watched for new files (`files` source); API scoring requests land here."""
    format: Literal["parquet", "json"] = "parquet"
    """Format of the landing files (`json`: one JSON object per line)."""
    columns: str = Field(min_length=1)
    """Columns of the events as Spark DDL, e.g. `customer_id BIGINT, tenure_months BIGINT`
    (a stream cannot infer them safely; the API validates requests against them)."""
    event_time_column: str | None = None
    """Timestamp column giving each event's time; `null`: the file's landing (modification) time,
    or a Kafka message's timestamp."""
    checkpoint: str | None = None
    """Checkpoint directory (offsets and commits); `null`:
    `<output_root>/_checkpoints/stream/<model>`."""
    output_root: str | None = None
    """Root of `stream_predictions/<model>/ds=YYYY-MM-DD/` and `stream_quarantine/...`;
    `null`: `output.root`."""
    trigger_seconds: float = Field(default=1.0, ge=0)
    """Micro-batch trigger interval in seconds (0: start the next batch as soon as one ends)."""
    max_files_per_trigger: int = Field(default=100, ge=1)
    """Most new files one micro-batch takes (bounds batch size and latency under a backlog)."""
    rows_per_second: int = Field(default=1000, ge=1)
    """`rate` source: rows generated per second."""
    clean_source: Literal["off", "archive", "delete"] = "off"
    """What happens to a landing file once its batch is committed (Spark's `cleanSource`):
    `off` keeps it (the landing directory grows), `archive` moves it under `archive_dir`
    (keeping its path), `delete` removes it. Scored rows and request results are already
    written by then."""
    archive_dir: str | None = None
    """Where `clean_source: archive` moves landed files; outside the landing directory."""

    @field_validator("sink", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kafka_needs_topics(self) -> StreamConfig:
        kafka = self.kafka
        if self.source == "kafka" and (kafka is None or not kafka.topics):
            raise ValueError(
                "stream.source kafka needs `kafka.bootstrap_servers` and `kafka.topics`"
            )
        if "kafka" in self.sink and (kafka is None or not kafka.output_topic):
            raise ValueError(
                "stream.sink kafka needs `kafka.bootstrap_servers` and `kafka.output_topic`"
            )
        if kafka is not None and kafka.output_topic in kafka.topics:
            raise ValueError(
                f"stream.kafka.output_topic {kafka.output_topic} is also an input topic: the "
                "stream would score its own output"
            )
        if len(set(self.sink)) != len(self.sink):
            raise ValueError(f"stream.sink names a sink twice: {self.sink}")
        return self

    @model_validator(mode="after")
    def _files_need_path(self) -> StreamConfig:
        if self.source == "files" and not self.path:
            raise ValueError("stream.source files needs `path` (the landing directory)")
        if self.clean_source == "archive":
            if not self.archive_dir:
                raise ValueError("stream.clean_source archive needs `archive_dir`")
            relation = overlap(self.archive_dir, self.path) if self.path else None
            if relation is not None:
                raise ValueError(
                    f"stream.archive_dir {self.archive_dir} {relation} the landing directory "
                    f"{self.path}: they must not contain each other"
                )
        return self
