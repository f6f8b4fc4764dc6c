"""Kafka -> Kafka end-to-end latency of ``batch-serving stream``, measured by ``stream_bench``.

One Apache Kafka broker (KRaft, loopback, its own process group) for the run, started and
stopped here; ``batch-serving stream`` (``source: kafka``, ``sink: kafka``, micro-batch trigger)
as a child process in its own process group. This process produces churn-like JSON events at a
sustained rate (each event's send time, ``time.time()`` just before ``produce``, is also its
Kafka record timestamp) and reads the output topic with a ``read_committed`` consumer (a scored
event is readable once its micro-batch's transaction commits). Latency of an event = the time
this process read its scored event minus its send time: one clock, produced -> readable.

Per rate: p50/p99/max over the window's events (after a warm-up: 100 events, whose batch
starts Spark's Python workers, then 5 s at the first rate), events produced and read back,
the rates achieved. Over the run: every produced event exactly once in the output topic
(read_committed, after the stream's graceful stop), and a sample's scores equal to the
model's ``predict_proba`` in this process.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from batch_serving import sample_data
from batch_serving.config import JobConfig
from batch_serving.kafka_broker import KafkaBroker
from batch_serving.kafka_roundtrip import (
    Collector,
    PacedProducer,
    RoundTripError,
    StreamProcess,
    delivery,
    event_messages,
    latency,
    read_committed,
    score_check,
    stream_section,
)

KEY = sample_data.ENTITY
WARMUP_S = 5
TARGET_P50_S, TARGET_P99_S = 0.5, 1.5


class Load:
    """Events for the windows: rows of a fixed pool, each with a new id."""

    def __init__(self) -> None:
        self.pool = sample_data.customer_features(20_000, seed=5).drop(columns=["churned"])
        self.next_id = 0
        self.frames: list[pd.DataFrame] = []

    def take(self, count: int) -> pd.DataFrame:
        rows = self.pool.iloc[(np.arange(count) + self.next_id * 7) % len(self.pool)].copy()
        rows[KEY] = np.arange(self.next_id, self.next_id + count, dtype=np.int64)
        self.next_id += count
        self.frames.append(rows)
        return rows

    def all(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True)


def window(
    bootstrap: str, topic: str, collector: Collector, load: Load, rate: int, seconds: float
) -> dict[str, Any]:
    """``rate`` events/s for ``seconds``, then until they are read back (or a drain timeout)."""
    events = load.take(int(rate * seconds))
    producer = PacedProducer(bootstrap, topic, event_messages(events, KEY), rate)
    producer.start()
    producer.finish()
    drained = collector.wait_for(load.next_id, timeout_s=max(30.0, seconds))
    measured = latency(events[KEY].to_numpy(), producer.sent_at, collector.frame(KEY), KEY)
    return {"rate": rate, "seconds": seconds, "drained": drained, **asdict(measured)}


def job_file(base: JobConfig, work: Path, section: dict[str, Any]) -> Path:
    job = base.model_dump(mode="json", exclude_unset=True)
    job.update(
        job="stream_bench_kafka",
        output={**job["output"], "root": str(work / "out")},
        stream={**section, "checkpoint": str(work / "checkpoint")},
    )
    JobConfig.model_validate(job)
    path = work / "stream.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def kafka_bench(
    base: JobConfig, work: Path, rates: list[int], seconds: float, trigger_s: float
) -> dict[str, Any]:
    """The windows' latencies, then exactly-once and scores over every event of the run."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load, windows = Load(), []
    with KafkaBroker(work / "broker", heap_mb=1024) as broker:
        bootstrap = broker.bootstrap
        source, output = broker.create_topic("events"), broker.create_topic("scores")
        section = stream_section(sample_data.EVENT_DDL, bootstrap, source, output, trigger_s)
        with StreamProcess(job_file(base, work, section), work) as stream:
            stream.wait_started(work / "checkpoint")
            collector = Collector(bootstrap, output)
            collector.start()
            try:
                for rate, span in ((100, 1), (rates[0], WARMUP_S)):  # workers, then steady
                    warm = window(bootstrap, source, collector, load, rate, span)
                    if not warm["drained"]:
                        raise RoundTripError(f"warm-up not scored:\n{stream.tail()}")
                    print(f"warm-up (excluded): {warm}", flush=True)
                for rate in rates:
                    windows.append(window(bootstrap, source, collector, load, rate, seconds))
                    print(f"kafka {rate} events/s: {windows[-1]}", flush=True)
            finally:
                collector.stop()
            record = stream.stop()
        scored = read_committed(bootstrap, output)
    events = load.all()
    checked = score_check(
        f"models:/{base.model.name}@{base.model.alias}",
        base.model.tracking_uri,
        events,
        scored,
        key=KEY,
        features=list(sample_data.FEATURES),
        sample=500,
    )
    return {
        "trigger_s": trigger_s,
        "windows": windows,
        "delivery": delivery(events[KEY], scored, KEY),
        "scores_checked": checked,
        "stream": record,
    }


def table(result: dict[str, Any]) -> list[str]:
    """The short table ``make bench-stream`` prints."""
    d, (checked, equal) = result["delivery"], result["scores_checked"]
    lines = [
        f"Kafka -> Kafka, trigger {result['trigger_s']} s: latency = event produced -> scored "
        "event readable by a read_committed consumer of the output topic",
        "| rate ev/s | window | produced | read back | produced/s | scored/s | p50 | p99 | max "
        f"| targets p50<={TARGET_P50_S}s p99<={TARGET_P99_S}s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in result["windows"]:
        meets = w["p50_s"] <= TARGET_P50_S and w["p99_s"] <= TARGET_P99_S
        lines.append(
            f"| {w['rate']:,} | {w['seconds']:.0f} s | {w['events']:,} | {w['checked']:,} "
            f"| {w['produced_rows_per_s']:,.0f} | {w['scored_rows_per_s']:,.0f} "
            f"| {w['p50_s']:.2f} s | {w['p99_s']:.2f} s | {w['max_s']:.2f} s "
            f"| {'yes' if meets else 'no'} |"
        )
    lines += [
        f"exactly once over all {d.produced:,} events (warm-up included): "
        f"{'yes' if d.exactly_once else 'NO'} ({d.scored:,} scored once, {d.duplicates} "
        f"duplicates, {d.produced - d.scored} missing, {d.unexpected} unexpected)",
        f"scores: {equal} of {checked} sampled events equal the model's predict_proba in-process",
        f"stream: {result['stream']['batches']} micro-batches",
    ]
    return lines
