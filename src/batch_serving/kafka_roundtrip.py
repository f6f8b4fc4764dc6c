"""Events through Kafka, ``batch-serving stream`` and back, timed and counted: what
``make demo-stream`` and the Kafka part of the stream benchmark run.

- ``StreamProcess``: ``batch-serving stream --config`` as a child in its own process group;
  stopped gracefully (SIGTERM to the driver: the batch in flight commits), killed as a group
  when it does not stop or when the caller fails.
- ``PacedProducer``: events produced at a steady rate; each event's send time (``time.time()``
  just before ``produce``) is also its Kafka record timestamp, so the stream's ``event_time``
  is that time too.
- ``Collector``: a ``read_committed`` consumer of the output topic from its beginning; each
  scored event with the time this process could read it (same clock as the send times).
- ``read_committed``, ``delivery``, ``latency``, ``score_check``: what came out, counted
  against what went in.

A development harness around the package (like ``demo.py``, outside the import layers):
nothing in the package imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

POLL_S = 0.05
FETCH_WAIT_MS = 20  # the collector's long poll; Kafka's 500 ms default would blur latencies


class RoundTripError(RuntimeError):
    """The stream did not start, stop or deliver in time (its log's tail is in the message)."""


def stream_section(
    columns: str, bootstrap: str, source: str, output: str, trigger_s: float
) -> dict[str, Any]:
    """A job file's ``stream:`` section: JSON events of ``source`` scored into ``output``."""
    return {
        "source": "kafka",
        "sink": ["kafka"],
        "columns": columns,
        "trigger_seconds": trigger_s,
        "kafka": {"bootstrap_servers": bootstrap, "topics": [source], "output_topic": output},
    }


def event_messages(events: pd.DataFrame, key: str) -> list[tuple[str, str]]:
    """Each row as a (key, JSON object) message, encoded once before the clock starts."""
    values = events.to_json(orient="records", lines=True).splitlines()
    return list(zip(events[key].astype(str), values, strict=True))


class StreamProcess:
    """``batch-serving stream --config <job> --json`` in its own process group; stdout (the
    final JSON record) and the log go to files in ``workdir``."""

    def __init__(self, job_file: Path, workdir: Path) -> None:
        self.job_file, self.workdir = job_file, workdir
        self.log, self.out = workdir / "stream.log", workdir / "stream.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> StreamProcess:
        command = [sys.executable, "-m", "batch_serving.cli", "stream", "--json"]
        with self.out.open("wb") as out, self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, "--config", str(self.job_file)],
                stdout=out,
                stderr=log,
                start_new_session=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def wait_started(self, checkpoint: Path, timeout_s: float = 300) -> None:
        """Until the query has read its sources' first offsets (``sources/0/0`` in the
        checkpoint): events produced from then on are timed from a running stream."""
        deadline = time.monotonic() + timeout_s
        while not (checkpoint / "sources" / "0" / "0").exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RoundTripError(f"stream did not start in {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    def stop(self, timeout_s: float = 120) -> dict[str, Any]:
        """SIGTERM to the driver (the batch in flight commits, exit 0); its JSON record."""
        assert self.proc is not None
        self._check_alive()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RoundTripError(
                f"stream did not stop in {timeout_s:.0f} s:\n{self.tail()}"
            ) from None
        if code != 0:
            raise RoundTripError(f"stream exited {code}:\n{self.tail()}")
        record: dict[str, Any] = json.loads(self.out.read_text())
        return record

    def kill(self) -> None:
        """SIGKILL to the whole process group (driver, JVM) if anything of it still runs; the
        JVM's exit ends Spark's Python worker daemon too."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RoundTripError(f"stream exited {self.proc.returncode}:\n{self.tail()}")


class PacedProducer(threading.Thread):
    """Produces ``messages`` at ``rate`` per second: event ``i`` is due ``i / rate`` seconds
    after the start; every few ms the due ones go out. ``sent_at[i]``: its send time."""

    def __init__(
        self, bootstrap: str, topic: str, messages: list[tuple[str, str]], rate: float
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.messages, self.rate = bootstrap, topic, messages, rate
        self.sent_at = np.full(len(messages), np.nan)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:  # reported by ``finish`` in the caller's thread
            self.error = exc

    def finish(self) -> None:
        self.join()
        if self.error is not None:
            raise RoundTripError(f"producing to {self.topic} failed: {self.error}")

    def _produce(self) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 2})
        sent, total, start = 0, len(self.messages), time.monotonic()
        while sent < total:
            due = min(total, int((time.monotonic() - start) * self.rate) + 1)
            for i in range(sent, due):
                key, value, ms = self._message(i, time.time())
                while True:
                    try:
                        producer.produce(self.topic, value, key, timestamp=ms)
                        break
                    except BufferError:
                        producer.poll(0.01)
            sent = due
            producer.poll(0)
            time.sleep(0.002)
        if producer.flush(60):
            raise RoundTripError(f"events to {self.topic} not delivered within 60 s")

    def _message(self, i: int, now: float) -> tuple[str, str, int]:
        """Message ``i`` sent at ``now`` (epoch s): (key, value, timestamp ms); records
        ``sent_at[i]``. A subclass may write the send time into the value."""
        key, value = self.messages[i]
        self.sent_at[i] = now
        return key, value, int(now * 1000)

    @property
    def rows_per_s(self) -> float:
        """The rate actually produced (first to last send)."""
        span = float(np.nanmax(self.sent_at) - np.nanmin(self.sent_at))
        return len(self.messages) / span if span > 0 else float("nan")


class Collector(threading.Thread):
    """A ``read_committed`` consumer of ``topic`` from its beginning, polling one message at a
    time; ``received``: (time it was read here, value) in order."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.received: list[tuple[float, bytes]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        consumer = _committed_consumer(self.bootstrap, self.topic, FETCH_WAIT_MS)
        try:
            while not self._halt.is_set():
                message = consumer.poll(POLL_S)
                if message is not None and message.error() is None:
                    self.received.append((time.time(), message.value()))
        finally:
            consumer.close()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.received) >= count

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def frame(self, key: str) -> pd.DataFrame:
        """``key`` and the receive time of every message read so far."""
        got = list(self.received)
        return pd.DataFrame(
            {key: [json.loads(v)[key] for _, v in got], "received_at": [t for t, _ in got]}
        )


def _committed_consumer(bootstrap: str, topic: str, fetch_wait_ms: int = 500) -> Any:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"roundtrip-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": fetch_wait_ms,
        }
    )
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


def read_committed(bootstrap: str, topic: str, timeout_s: float = 60) -> pd.DataFrame:
    """Every message of ``topic`` a read_committed consumer sees, to its end, as rows."""
    from confluent_kafka import KafkaError

    consumer = _committed_consumer(bootstrap, topic)
    partitions = len(consumer.assignment())
    rows: list[dict[str, Any]] = []
    ended: set[int] = set()
    try:
        while len(ended) < partitions:
            message = consumer.poll(timeout_s)
            if message is None:
                raise RoundTripError(f"reading {topic} timed out after {timeout_s:.0f} s")
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                ended.add(message.partition())
            elif error is not None:
                raise RoundTripError(f"reading {topic}: {error}")
            else:
                rows.append(json.loads(message.value()))
    finally:
        consumer.close()
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Delivery:
    """Produced events against the scored events of the output topic."""

    produced: int
    scored: int  # produced events found in the output
    duplicates: int  # output messages beyond the first of their event
    unexpected: int  # output messages of events never produced

    @property
    def exactly_once(self) -> bool:
        return self.scored == self.produced and self.duplicates == 0 and self.unexpected == 0


def delivery(produced: pd.Series, scored: pd.DataFrame, key: str) -> Delivery:
    out = scored[key] if len(scored) else pd.Series([], dtype="int64")
    known = out.isin(produced)
    return Delivery(
        produced=int(produced.nunique()),
        scored=int(out[known].nunique()),
        duplicates=int(known.sum() - out[known].nunique()),
        unexpected=int((~known).sum()),
    )


@dataclass(frozen=True)
class Latency:
    """Produced -> readable by a read_committed consumer, over the events of one window."""

    events: int  # produced in the window
    checked: int  # of those, read back (the latencies are theirs)
    p50_s: float
    p99_s: float
    max_s: float
    produced_rows_per_s: float
    scored_rows_per_s: float  # read back per second, first to last


def latency(ids: np.ndarray, sent_at: np.ndarray, received: pd.DataFrame, key: str) -> Latency:
    """Each event's first receive time minus its send time (one clock: this process's)."""
    first = received.groupby(key).received_at.min()
    sent = pd.Series(sent_at, index=ids)
    got = first.reindex(sent.index).dropna()
    lat = (got - sent.loc[got.index]).to_numpy()
    span = float(got.max() - got.min()) if len(got) > 1 else float("nan")
    sent_span = float(np.nanmax(sent_at) - np.nanmin(sent_at))
    if not len(lat):
        raise RoundTripError(f"none of {len(ids)} events was read back")
    return Latency(
        events=len(ids),
        checked=len(lat),
        p50_s=round(float(np.percentile(lat, 50)), 3),
        p99_s=round(float(np.percentile(lat, 99)), 3),
        max_s=round(float(lat.max()), 3),
        produced_rows_per_s=round(len(ids) / sent_span, 1) if sent_span > 0 else float("nan"),
        scored_rows_per_s=round(len(got) / span, 1) if span > 0 else float("nan"),
    )


def score_check(
    model_uri: str,
    tracking_uri: str,
    events: pd.DataFrame,
    scored: pd.DataFrame,
    *,
    key: str,
    features: list[str],
    sample: int = 200,
) -> tuple[int, int]:
    """(checked, equal): sampled scored events whose ``score`` equals the model's own
    ``predict_proba`` (class 1) in this process, loaded by MLflow from the registry."""
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.sklearn.load_model(model_uri)
    picked = scored.drop_duplicates(key).sample(min(sample, len(scored)), random_state=0)
    rows = events.set_index(key).loc[picked[key]]
    positive = list(model.classes_).index(1)
    expected = model.predict_proba(rows[features])[:, positive]
    equal = np.isclose(picked.score.to_numpy(), expected, rtol=0, atol=1e-9)
    return len(picked), int(equal.sum())
