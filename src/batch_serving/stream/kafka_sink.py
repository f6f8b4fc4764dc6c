"""Scored events into a Kafka topic, exactly once: ``stream.sink: kafka``.

Each micro-batch is one Kafka transaction of a transactional producer whose
``transactional.id`` is fixed by the Spark query (``batch-serving-<query id>``, the id in the
checkpoint's ``metadata`` file, the same across restarts). The transaction holds the batch's
scored events (``output_topic``: key = the entity id, value = the scored row as JSON with its
``batch_id``), its quarantined rows (``<output_topic>.quarantine``) and, last, the batch's
marker (``<output_topic>.batches``: key = the query id, value = the batch's record with its
``batch_id``). Events and marker are committed together or not at all.

What holds: a consumer with ``isolation.level=read_committed`` sees each consumed message's
scored event (or quarantined row) once, whatever crashes happen:

- a crash before the commit: the transaction never commits; the restarted stream's producer
  (same ``transactional.id``) aborts it in ``init_transactions`` (fencing any zombie of the
  old process too) and Spark replays the batch from its checkpoint (same offsets);
- a crash after the Kafka commit but before Spark's own commit log: at start the sink reads
  the marker topic (read_committed) for this query's last committed batch; Spark replays that
  batch and ``committed`` says so, so it is skipped, not written twice.

What it relies on: Spark's offset log fixes each batch's messages (a replay reads the same
offsets; the input topic must still retain them); batch ids only grow within one checkpoint
(a new checkpoint is a new query id, a new transactional id, nothing skipped); one running
stream per checkpoint (a second one is fenced and fails); the marker topic keeps each query's
last marker (compacted by key, created so if missing). Consumers reading ``read_uncommitted``
(Kafka's default) can see events of aborted attempts: they must read committed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.config.stream import KafkaConfig
from batch_serving.errors import ConfigError, StorageError
from batch_serving.stream.sink import BATCH_ID
from batch_serving.stream.source import CORRUPT

log = logging.getLogger(__name__)
MARKERS_SUFFIX = ".batches"
QUARANTINE_SUFFIX = ".quarantine"
TIMEOUT_S = 60.0
MARKER_TAIL = 1000  # marker records read first (per partition) before a full scan
MARKER_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.ms": str(3_600_000)}


@dataclass
class KafkaSink:
    """A transactional producer per query; started at the first batch (the query id is in the
    checkpoint once the query runs)."""

    kafka: KafkaConfig
    checkpoint: Path
    key_columns: Sequence[str]
    _producer: Any = field(default=None, init=False, repr=False)
    _query_id: str = field(default="", init=False)
    _last: int | None = field(default=None, init=False)  # this query's last committed batch

    @property
    def topic(self) -> str:
        assert self.kafka.output_topic is not None  # StreamConfig refuses sink kafka without it
        return self.kafka.output_topic

    def committed(self, batch_id: int) -> bool:
        self._start()
        return self._last is not None and batch_id <= self._last

    def write(self, batch_id: int, scored: pa.Table, quarantined: pa.Table) -> list[str]:
        """Begin the batch's transaction and produce its rows (committed by ``commit``)."""
        self._start()
        try:
            self._producer.begin_transaction()
            events = self._produce(self.topic, scored, batch_id)
            bad = self._produce(self.topic + QUARANTINE_SUFFIX, quarantined, batch_id)
        except Exception as exc:
            self._abort(batch_id)
            raise StorageError(f"Kafka sink: batch {batch_id} to {self.topic}: {exc}") from exc
        return [f"kafka:{self.topic} ({events})", f"kafka:{self.topic}{QUARANTINE_SUFFIX} ({bad})"]

    def commit(self, batch_id: int, record: dict[str, Any]) -> None:
        """The marker, then the transaction's commit: events and marker become visible
        together."""
        marker = {**record, "query_id": self._query_id, BATCH_ID: batch_id}
        try:
            self._produce_one(self.topic + MARKERS_SUFFIX, self._query_id, _json(marker))
            self._producer.commit_transaction(TIMEOUT_S)
        except Exception as exc:
            self._abort(batch_id)
            raise StorageError(
                f"Kafka sink: batch {batch_id} to {self.topic} did not commit: {exc}"
            ) from exc
        self._last = batch_id

    def close(self) -> None:
        """Flush, then drop the producer (librdkafka's client goes with the last reference);
        a later batch would start it again."""
        if self._producer is not None:
            self._producer.flush(TIMEOUT_S)
            self._producer = None

    def _start(self) -> None:
        """Topics checked, the producer's transactions initialised (aborting what a crashed
        process left open), this query's last committed batch read back."""
        if self._producer is not None:
            return
        from confluent_kafka import Producer

        self._query_id = _query_id(self.checkpoint)
        self._ensure_topics()
        settings = {
            "bootstrap.servers": self.kafka.bootstrap_servers,
            **self.kafka.producer_options,
            "transactional.id": f"batch-serving-{self._query_id}",
        }
        producer = Producer(settings)
        try:
            producer.init_transactions(TIMEOUT_S)
        except Exception as exc:
            raise StorageError(
                f"Kafka sink: transactions of {self.topic} on {self.kafka.bootstrap_servers} "
                f"could not start: {exc}"
            ) from exc
        self._last = last_committed_batch(self.kafka, self.topic + MARKERS_SUFFIX, self._query_id)
        self._producer = producer
        log.info(
            "Kafka sink %s: query %s, last committed batch %s",
            self.topic,
            self._query_id,
            self._last,
        )

    def _ensure_topics(self) -> None:
        """The output topic must exist; the sink's own two are created (1 partition) if not."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(_client_settings(self.kafka))
        try:
            present = set(admin.list_topics(timeout=TIMEOUT_S).topics)
        except Exception as exc:
            raise StorageError(
                f"Kafka sink: brokers {self.kafka.bootstrap_servers} unreachable: {exc}"
            ) from exc
        if self.topic not in present:
            raise ConfigError(
                f"stream.kafka.output_topic {self.topic} does not exist on "
                f"{self.kafka.bootstrap_servers}; create it first"
            )
        wanted = {
            self.topic + MARKERS_SUFFIX: MARKER_TOPIC_CONFIG,
            self.topic + QUARANTINE_SUFFIX: {},
        }
        new = [NewTopic(t, 1, config=c) for t, c in wanted.items() if t not in present]
        for name, future in (admin.create_topics(new) if new else {}).items():
            try:
                future.result(timeout=TIMEOUT_S)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):  # another stream made it meanwhile
                    raise StorageError(f"Kafka sink: cannot create topic {name}: {exc}") from exc

    def _produce(self, topic: str, rows: pa.Table, batch_id: int) -> int:
        """Every row as a JSON value keyed by its entity id (``_corrupt_record`` only where
        set: the text of a malformed message)."""
        keys = row_keys(rows, self.key_columns)
        for key, value in zip(keys, json_values(rows, batch_id), strict=True):
            self._produce_one(topic, key, value)
        return rows.num_rows

    def _produce_one(self, topic: str, key: str | None, value: str) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value)
                return
            except BufferError:  # the local queue is full: let it drain
                self._producer.poll(0.5)

    def _abort(self, batch_id: int) -> None:
        try:
            self._producer.abort_transaction(TIMEOUT_S)
        except Exception as exc:  # the restart's init_transactions aborts it anyway
            log.warning("Kafka sink: abort of batch %d failed: %s", batch_id, exc)


def last_committed_batch(kafka: KafkaConfig, topic: str, query_id: str) -> int | None:
    """The newest batch id among ``query_id``'s committed markers: the topic's tail first
    (``MARKER_TAIL`` records per partition), all of it when the tail has none."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **_client_settings(kafka),
            "group.id": f"batch-serving-markers-{query_id}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        found = _scan(consumer, topic, query_id, lambda low, high: max(low, high - MARKER_TAIL))
        if found is None:
            found = _scan(consumer, topic, query_id, lambda low, high: low)
        return found
    finally:
        consumer.close()


def _scan(consumer: Any, topic: str, query_id: str, start: Callable[[int, int], int]) -> int | None:
    """Read ``topic`` from ``start(low, high)`` of each partition to its end (read_committed
    stops at the last stable offset); the newest batch id of ``query_id``'s markers."""
    from confluent_kafka import KafkaError, TopicPartition

    partitions = consumer.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions
    assigned = []
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S)
        if high > low:
            assigned.append(TopicPartition(topic, p, start(low, high)))
    if not assigned:
        return None
    consumer.assign(assigned)
    ended: set[int] = set()
    newest: int | None = None
    while len(ended) < len(assigned):
        message = consumer.poll(TIMEOUT_S)
        if message is None:
            raise StorageError(f"Kafka sink: reading {topic} timed out after {TIMEOUT_S} s")
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                ended.add(message.partition())
                continue
            raise StorageError(f"Kafka sink: reading {topic}: {error}")
        if message.key() == query_id.encode():
            batch = int(json.loads(message.value())[BATCH_ID])
            newest = batch if newest is None else max(newest, batch)
    consumer.unassign()
    return newest


def _query_id(checkpoint: Path) -> str:
    """Spark's query id, kept in the checkpoint's ``metadata`` file across restarts."""
    metadata = checkpoint / "metadata"
    try:
        return str(json.loads(metadata.read_text())["id"])
    except (OSError, ValueError, KeyError) as exc:
        raise StorageError(f"Kafka sink: no query id in {metadata}: {exc}") from exc


def _client_settings(kafka: KafkaConfig) -> dict[str, str | int | float | bool]:
    """Connection settings shared by the sink's admin, producer and marker consumer."""
    return {"bootstrap.servers": kafka.bootstrap_servers, **kafka.producer_options}


def json_values(rows: pa.Table, batch_id: int) -> list[str]:
    """Each row as ``_json`` writes it (keys sorted, times in ISO format, ``batch_id`` added),
    built column-wise: UTC times formatted by Arrow and the columns put in key order first,
    so a row's dict needs no per-value encoder nor sorting (half the cost of a batch's
    produce)."""
    columns: dict[str, pa.ChunkedArray] = {}
    for f in rows.schema:
        column = rows.column(f.name)
        if f.name == CORRUPT and column.null_count == len(column):
            continue  # set only on malformed messages: absent elsewhere
        columns[f.name] = _iso_utc(column) if _is_utc_micros(f.type) else column
    columns[BATCH_ID] = pa.chunked_array([pa.array([batch_id] * rows.num_rows, pa.int64())])
    ordered = pa.table({name: columns[name] for name in sorted(columns)})
    values = []
    for row in ordered.to_pylist():
        if CORRUPT in row and row[CORRUPT] is None:
            del row[CORRUPT]
        values.append(_json(row))
    return values


def row_keys(rows: pa.Table, columns: Sequence[str]) -> list[str | None]:
    """Each row's message key: its entity id (several: a JSON list), None when all null."""
    names = rows.column_names
    picked = [rows.column(c).to_pylist() if c in names else [None] * rows.num_rows for c in columns]
    return [_key(list(values)) for values in zip(*picked, strict=True)]


def _key(values: list[Any]) -> str | None:
    if all(v is None for v in values):
        return None
    return str(values[0]) if len(values) == 1 else _json(values)


def _is_utc_micros(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) and kind.unit == "us" and kind.tz in ("UTC", "+00:00")


def _iso_utc(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``datetime.isoformat()`` of UTC times: microseconds only when not zero, ``+00:00``."""
    text = pc.strftime(column, "%Y-%m-%dT%H:%M:%S")  # %S has the microseconds
    text = pc.replace_substring_regex(text, r"\.000000$", "")
    return pc.binary_join_element_wise(text, pa.scalar("+00:00"), "")


def _json(value: Any) -> str:
    return json.dumps(value, default=_encode, sort_keys=True)


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)
