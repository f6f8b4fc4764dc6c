"""Windowed features over Kafka: events produced out of order (within the watermark) to a
topic, scored into the stream table and a transactional output topic. Each event is in both
exactly once, with the features of a brute-force recomputation; the second run restarts on
the same checkpoint, with the state it left, and drops (and counts) events behind the
watermark."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from sklearn.linear_model import LogisticRegression
from windows_landing import COLUMNS, FLUSH_CARD
from windows_oracle import START, WINDOWS, brute_force, history, spec

from batch_serving.config import JobConfig
from batch_serving.features.offline import feature_mismatches, training_set
from batch_serving.kafka_broker import KafkaBroker
from batch_serving.kafka_roundtrip import read_committed
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.runner import run_stream

FEATURES = ["amount_count_10m", "amount_sum_10m", "amount_count_1h", "merchant_distinct_count_30m"]
EXACT = [f.name for f in spec().features if f.function != "mean"]  # counts, sums, min, max


def as_messages(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(key, JSON value) per event: times in UTC with a Z, NaN and None as null."""
    out = []
    for row in frame.to_dict("records"):
        row["ts"] = row["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        value = {k: (None if v is None or v != v else v) for k, v in row.items()}
        out.append((str(row["card_id"]), json.dumps(value)))
    return out


def produce(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def arrival_order(events: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Events ordered by time plus a random delay of up to 4 minutes: out of order, never
    more than 4 minutes behind an earlier arrival (inside the 5m watermark)."""
    delay = np.random.default_rng(seed).integers(0, 240, len(events))
    arrives = events["ts"] + pd.to_timedelta(delay, unit="s")
    return events.assign(_arrives=arrives).sort_values("_arrives").drop(columns="_arrives")


def flush(event_id: int, seconds: int) -> pd.DataFrame:
    """An event of another card hours later: moves the watermark past every event (Spark's
    last, no-data batch of an availableNow run releases them)."""
    at = START + pd.Timedelta(hours=4, seconds=seconds)
    return pd.DataFrame(
        {"event_id": [event_id], "card_id": [FLUSH_CARD], "ts": [at], "amount": [1.0]}
    ).assign(merchant="m1")


def late_total(metrics_file: Path, expected: int, timeout_s: float = 20) -> int:
    """The late-events counter of the metrics file (progress events are asynchronous)."""
    deadline, value = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        text = metrics_file.read_text() if metrics_file.exists() else ""
        lines = [ln for ln in text.splitlines() if ln.startswith("batch_serving_stream_late_")]
        value = int(float(lines[0].rsplit(" ", 1)[1])) if lines else -1
        if value == expected:
            break
        time.sleep(0.2)
    return value


def test_kafka_windowed_stream_scores_each_event_once_with_its_features(
    spark: SparkSession,
    register: Callable[..., tuple[str, int]],
    job_config: Callable[..., JobConfig],
    kafka_broker: KafkaBroker,
) -> None:
    events = history(n=200, seed=5, minutes=60)
    s = spec()
    offline = training_set(events, s)
    label = (offline["amount_count_10m"] >= 2).astype(int)
    model = LogisticRegression(max_iter=500).fit(offline[FEATURES], label)
    name, _ = register(model, offline[FEATURES].head(20))
    tag = uuid.uuid4().hex[:8]
    source = kafka_broker.create_topic(f"win-events-{tag}", partitions=1)
    output = kafka_broker.create_topic(f"win-scores-{tag}")
    stream = {
        "source": "kafka",
        "sink": ["table", "kafka"],
        "columns": COLUMNS,
        "event_time_column": "ts",
        "trigger_seconds": 0.2,
        "kafka": {
            "bootstrap_servers": kafka_broker.bootstrap,
            "topics": [source],
            "output_topic": output,
            "max_offsets_per_trigger": 80,
        },
    }
    ids = ["event_id", "card_id", "ts", *s.names]  # the features ride along into the output
    cfg = job_config(name, entity_columns=ids, stream=stream, windows=WINDOWS)
    layout = StreamLayout.for_job(cfg)
    arrived = arrival_order(events, seed=5)
    assert not arrived["ts"].is_monotonic_increasing  # out of order

    early, rest = arrived.iloc[:100], arrived.iloc[100:]
    produce(kafka_broker.bootstrap, source, as_messages(early))
    first = run_stream(spark, cfg, available_now=True)
    assert first.batches >= 2 and first.quarantined_rows == 0
    assert 0 < first.scored_rows < len(early)  # the newest wait for the watermark, in state
    # the restart on the same checkpoint: its events' windows hold events of the first run
    assert (brute_force(early, rest, s)["amount_count_1h"] > 0).any()
    late = events[events["ts"] < START + pd.Timedelta(minutes=10)].head(3)
    late = late.assign(event_id=[30_000, 30_001, 30_002])  # far behind the watermark
    later = pd.concat([late, rest, flush(20_000, 0)])
    produce(kafka_broker.bootstrap, source, as_messages(later))
    second = run_stream(spark, cfg, available_now=True)
    assert second.quarantined_rows == 0
    assert first.scored_rows + second.scored_rows == len(events)
    assert late_total(layout.metrics_file, 3) == 3

    files = layout.committed_files(layout.predictions)
    table = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    topic = read_committed(kafka_broker.bootstrap, output, timeout_s=30)
    expected = brute_force(events, events, s)
    scores = model.predict_proba(offline[FEATURES])[:, 1]
    want = dict(zip(offline["event_id"], scores, strict=True))
    for got in (table, topic):
        assert got["event_id"].value_counts().max() == 1  # each once
        assert sorted(got["event_id"]) == sorted(events["event_id"])  # no late, no flush
        assert feature_mismatches(got, expected, s, ["event_id"]).empty  # means: 1e-9
        joined = got.merge(expected, on="event_id", suffixes=("", "_want"), validate="1:1")
        for feature in EXACT:
            same = joined[feature].fillna(-1.0) == joined[f"{feature}_want"].fillna(-1.0)
            assert same.all(), feature
        np.testing.assert_allclose(got["score"], got["event_id"].map(want), rtol=1e-12)
