"""Kafka in and out of ``batch-serving stream`` on a real broker (issue #23 item 3).

A real Apache Kafka broker (``kafka_broker`` fixture), Spark's Kafka source, the sink's
transactional producer: every produced event is scored exactly once into the output topic
(read committed) and the stream table, with the model's own values; poison messages are
quarantined with their topic, partition and offset; replays after a commit and a producer
killed inside its transaction add nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import builders
import numpy as np
import pandas as pd
import pytest
from conftest import customers, labelled
from pyspark.sql import SparkSession
from test_stream import DDL, RULES, read_table

from batch_serving.config import JobConfig
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.runner import run_stream


@pytest.fixture
def logreg(register: Callable[..., tuple[str, int]]) -> tuple[str, Any]:
    model, oracle = builders.logreg_pipeline(labelled(800))
    name, _ = register(model, customers(50)[builders.FEATURES])
    return name, oracle


@pytest.fixture
def topics(kafka_broker: Any) -> tuple[str, str]:
    """A fresh input and output topic (2 partitions each)."""
    tag = uuid.uuid4().hex[:8]
    return kafka_broker.create_topic(f"events-{tag}"), kafka_broker.create_topic(f"scores-{tag}")


def kafka_job(
    job_config: Callable[..., JobConfig],
    name: str,
    bootstrap: str,
    topics: tuple[str, str],
    **stream: Any,
) -> JobConfig:
    section = {
        "source": "kafka",
        "sink": ["table", "kafka"],
        "columns": DDL,
        "trigger_seconds": 0.2,
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topics": [topics[0]],
            "output_topic": topics[1],
            "max_offsets_per_trigger": 120,
        },
        **stream,
    }
    return job_config(name, stream=section, rules=RULES)


def produce(bootstrap: str, topic: str, messages: list[tuple[str | None, str]]) -> list[Any]:
    """Each (key, value) delivered; their delivery reports (partition, offset), in order."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    delivered: dict[int, Any] = {}
    for i, (key, value) in enumerate(messages):
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda e, m, i=i: delivered.update({i: m})
        )
    assert producer.flush(30) == 0
    assert all(delivered[i].error() is None for i in range(len(messages)))
    return [delivered[i] for i in range(len(messages))]


def consume(bootstrap: str, topic: str) -> list[Any]:
    """Every message of ``topic`` a read_committed consumer sees, from the beginning."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    got: list[Any] = []
    ended: set[int] = set()
    try:
        while len(ended) < len(partitions):
            message = consumer.poll(30)
            assert message is not None, f"reading {topic} timed out"
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                ended.add(message.partition())
                continue
            assert error is None, error
            got.append(message)
    finally:
        consumer.close()
    return got


def values(messages: list[Any]) -> pd.DataFrame:
    return pd.DataFrame([json.loads(m.value()) for m in messages])


def as_json(frame: pd.DataFrame) -> list[tuple[str | None, str]]:
    return [(str(r["customer_id"]), json.dumps(r)) for r in frame.to_dict(orient="records")]


def test_kafka_config_errors_name_the_key(
    job_config: Callable[..., JobConfig], tmp_path: Path
) -> None:
    from pydantic import ValidationError

    from batch_serving.spark.session import connector_jars

    bootstrap = {"bootstrap_servers": "127.0.0.1:1"}
    with pytest.raises(ValidationError, match=r"source kafka needs .*`kafka.topics`"):
        job_config("m", stream={"source": "kafka", "columns": DDL})
    with pytest.raises(ValidationError, match=r"sink kafka needs .*`kafka.output_topic`"):
        job_config("m", stream={"path": "x", "columns": DDL, "sink": "kafka", "kafka": bootstrap})
    with pytest.raises(ValidationError, match="output_topic a is also an input topic"):
        job_config(
            "m",
            stream={
                "source": "kafka",
                "sink": ["kafka"],
                "columns": DDL,
                "kafka": {**bootstrap, "topics": ["a"], "output_topic": "a"},
            },
        )
    one = job_config("m", stream={"path": "x", "columns": DDL, "sink": "table"})
    assert one.stream is not None and one.stream.sink == ["table"]

    lib = tmp_path / "lib"
    assert connector_jars({}, lib) == {}  # no jars/lib (an installed wheel): nothing added
    lib.mkdir()
    (lib / "b.jar").touch()
    (lib / "a.jar").touch()
    assert connector_jars({}, lib) == {"spark.jars": f"{lib / 'a.jar'},{lib / 'b.jar'}"}
    assert connector_jars({"spark.jars": "/mine.jar"}, lib) == {}  # the job's own wins


def test_the_test_session_reads_kafka(spark: SparkSession, kafka_broker: Any) -> None:
    """The session got the connector jars: Spark's Kafka source reads a real topic."""
    topic = kafka_broker.create_topic(f"probe-{uuid.uuid4().hex[:8]}")
    produce(kafka_broker.bootstrap, topic, [("k", "v1"), ("k", "v2"), (None, "v3")])
    frame = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_broker.bootstrap)
        .option("subscribe", topic)
        .load()
    )
    assert sorted(r.value.decode() for r in frame.collect()) == ["v1", "v2", "v3"]
    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka_broker.bootstrap)
        .option("subscribe", topic)
        .load()
    )
    assert stream.isStreaming and "offset" in stream.columns


def test_kafka_to_table_and_topic_exactly_once_with_poison_quarantined(
    spark: SparkSession,
    job_config: Callable[..., JobConfig],
    kafka_broker: Any,
    topics: tuple[str, str],
    logreg: Any,
) -> None:
    """300 events and four odd messages through several micro-batches into both sinks; then
    the last batch replayed as after a crash past the sinks' commits (Spark's commit log
    lost): once with both sinks committed, once with only Kafka's. Each event stays once."""
    name, oracle = logreg
    bootstrap, (source, output) = kafka_broker.bootstrap, topics
    events = customers(300, seed=5)
    odd = customers(3, seed=6).assign(customer_id=[9001, 9002, 9003])
    abc, missing, parses = (r for _, r in odd.iterrows())
    poison = [
        ("junk", "not json {"),
        ("9001", json.dumps({**abc.to_dict(), "monthly_charges": "abc"}, default=int)),
        ("9002", json.dumps(missing.drop("usage_gb").to_dict(), default=int)),
        ("9003", json.dumps({**parses.to_dict(), "monthly_charges": "12.5"}, default=int)),
    ]
    sent = produce(bootstrap, source, [*as_json(events[:150]), *poison, *as_json(events[150:])])
    cfg = kafka_job(job_config, name, bootstrap, topics)

    result = run_stream(spark, cfg, available_now=True)

    scored_ids = [*events.customer_id, 9003]
    expected_rows = pd.concat([events, odd.iloc[[2]].assign(monthly_charges=12.5)])
    expected = dict(zip(expected_rows.customer_id, oracle(expected_rows)["score"], strict=True))
    layout = StreamLayout.for_job(cfg)
    assert result.batches >= 3 and result.scored_rows == 301 and result.quarantined_rows == 3

    out = consume(bootstrap, output)
    got = values(out)
    assert len(got) == 301 and got.customer_id.is_unique
    assert sorted(got.customer_id) == sorted(scored_ids)
    assert [m.key().decode() for m in out] == [str(i) for i in got.customer_id]
    assert np.allclose(got.score, got.customer_id.map(expected), rtol=0, atol=1e-12)
    assert (got.action == np.where(got.score >= 0.5, "block", "allow")).all()
    assert (got.model_name == name).all() and got.event_time.notna().all()
    assert set(got.batch_id) == set(layout.committed_batches())
    table = read_table(layout.predictions.table_dir)
    assert len(table) == 301 and sorted(table.customer_id) == sorted(scored_ids)
    assert np.allclose(table.score, table.customer_id.map(expected), rtol=0, atol=1e-12)

    bad = read_table(layout.quarantine.table_dir).sort_values("kafka_offset")
    where = {(m.partition(), m.offset()): i for i, m in enumerate(sent[150:153])}
    assert sorted(zip(bad.kafka_partition, bad.kafka_offset, strict=True)) == sorted(where)
    assert (bad.kafka_topic == source).all()
    reasons = {
        where[(p, o)]: (c, m)
        for p, o, c, m in zip(
            bad.kafka_partition, bad.kafka_offset, bad.error_class, bad.error_message, strict=True
        )
    }
    assert reasons[0][0] == "malformed_record" and "not json {" in reasons[0][1]
    assert "monthly_charges" in reasons[1][1] and "abc" in reasons[1][1]
    assert reasons[2][0] == "MissingColumnsError" and "['usage_gb']" in reasons[2][1]
    quarantined = values(consume(bootstrap, f"{output}.quarantine"))
    assert sorted(quarantined.kafka_offset) == sorted(bad.kafka_offset)
    # every consumed message is scored or quarantined
    assert len(got) + len(bad) == len(sent) == 304

    # Spark's commit log of the last batch lost after both sinks committed: replayed, skipped
    last = layout.committed_batches()[-1]

    def lose_spark_commit() -> None:
        (layout.checkpoint / "commits" / str(last)).unlink()
        (layout.checkpoint / "commits" / f".{last}.crc").unlink(missing_ok=True)

    lose_spark_commit()
    again = run_stream(spark, cfg, available_now=True)
    assert again.skipped_batches == 1 and again.scored_rows == 0
    # ... after Kafka's commit but before the table's marker: only the table is written again
    lose_spark_commit()
    layout.marker(last).unlink()
    once_more = run_stream(spark, cfg, available_now=True)
    assert once_more.batches == 1 and once_more.skipped_batches == 0
    assert layout.marker(last).exists()
    final = values(consume(bootstrap, output))
    assert len(final) == 301 and final.customer_id.is_unique
    table = read_table(layout.predictions.table_dir)
    assert len(table) == 301 and table.customer_id.is_unique


def test_a_producer_killed_inside_its_transaction_leaves_nothing_visible(
    kafka_broker: Any, topics: tuple[str, str], tmp_path: Path
) -> None:
    """A process that produced a batch's events and was killed (-9) before its commit: the
    next producer of the same query aborts that transaction, read_committed consumers never
    see its events, the batch is not committed and is then written once."""
    import os
    import subprocess
    import sys

    import pyarrow as pa

    from batch_serving.config.stream import KafkaConfig
    from batch_serving.stream.kafka_sink import KafkaSink

    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}))
    kafka = {"bootstrap_servers": kafka_broker.bootstrap, "output_topic": topics[1]}
    rows = pa.table({"customer_id": [1, 2, 3], "score": [0.1, 0.2, 0.3]})
    crash = f"""
import os, signal, pyarrow as pa
from pathlib import Path
from batch_serving.config.stream import KafkaConfig
from batch_serving.stream.kafka_sink import KafkaSink
sink = KafkaSink(KafkaConfig(**{kafka!r}), Path({str(checkpoint)!r}), ["customer_id"])
sink.write(0, pa.table({{"customer_id": [7, 8], "score": [0.5, 0.6]}}), pa.table({{}}))
sink._producer.flush(30)  # the events are on the broker, inside the open transaction
os.kill(os.getpid(), signal.SIGKILL)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    died = subprocess.run([sys.executable, "-c", crash], env=env, timeout=120, check=False)
    assert died.returncode == -9

    sink = KafkaSink(KafkaConfig(**kafka), checkpoint, ["customer_id"])
    assert not sink.committed(0)  # init_transactions aborted the killed one's transaction
    assert consume(kafka_broker.bootstrap, topics[1]) == []
    sink.write(0, rows, pa.table({}))
    sink.commit(0, {"scored_rows": 3})
    sink.close()
    got = values(consume(kafka_broker.bootstrap, topics[1]))
    assert sorted(got.customer_id) == [1, 2, 3] and (got.batch_id == 0).all()

    restarted = KafkaSink(KafkaConfig(**kafka), checkpoint, ["customer_id"])
    assert restarted.committed(0) and not restarted.committed(1)
    restarted.close()


@pytest.mark.slow
def test_kill9_mid_batch_then_restart_keeps_kafka_and_table_exactly_once(
    job_config: Callable[..., JobConfig],
    kafka_broker: Any,
    topics: tuple[str, str],
    tmp_path: Path,
    register: Callable[..., tuple[str, int]],
) -> None:
    """The stream as a subprocess (source and sinks Kafka + table), killed with -9 of its
    process group in the middle of a batch, restarted with --available-now: every event once
    in the output topic (read committed) and in the table, with the model's values."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    model, oracle = builders.custom_pyfunc(labelled(50))
    name, _ = register(
        builders.SlowScore(seconds=1.0), customers(20)[builders.NUMERIC], pyfunc=True
    )
    bootstrap = kafka_broker.bootstrap
    cfg = kafka_job(job_config, name, bootstrap, topics).model_dump(mode="json")
    cfg["stream"]["kafka"]["max_offsets_per_trigger"] = 20
    cfg["features"], cfg["rules"] = builders.NUMERIC, []
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(cfg))
    layout = StreamLayout.for_job(JobConfig.model_validate(cfg))
    events = customers(120, seed=8)
    produce(bootstrap, topics[0], as_json(events))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def start(*extra: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"stream-{time.monotonic_ns()}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "batch_serving.cli", "stream", "--config", str(config), *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    first = start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # batch 0 committed, batch 1 being scored
            assert first.poll() is None, "stream exited early"
            if layout.committed_batches() and (layout.checkpoint / "offsets" / "1").exists():
                break
            time.sleep(0.05)
        time.sleep(0.4)  # inside the model's 1 s predict
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        assert layout.committed_batches() == [0] and not layout.marker(1).exists()
        last = start("--available-now")
        assert last.wait(300) == 0
    finally:
        for proc in (first, locals().get("last")):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    expected = dict(zip(events.customer_id, oracle(events)["prediction"], strict=True))
    got = values(consume(bootstrap, topics[1]))
    assert len(got) == 120 and got.customer_id.is_unique
    assert set(got.customer_id) == set(events.customer_id)
    assert np.allclose(got.prediction, got.customer_id.map(expected), rtol=0, atol=1e-12)
    table = read_table(layout.predictions.table_dir)
    assert len(table) == 120 and table.customer_id.is_unique
    assert np.allclose(table.prediction, table.customer_id.map(expected), rtol=0, atol=1e-12)
    # Spark splits maxOffsetsPerTrigger over the partitions: at least 6 batches of <= 20
    batches = layout.committed_batches()
    assert batches == list(range(len(batches))) and len(batches) >= 6
    assert set(got.batch_id) == set(table.batch_id) == set(batches)
