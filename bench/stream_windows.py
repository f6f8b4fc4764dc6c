"""Windowed features in the stream, measured by ``stream_bench`` (``ONLY=windows``).

Kafka -> ``batch-serving stream`` with a ``windows:`` section -> Kafka. One Kafka broker
(KRaft, loopback) for the run; the stream runs in this process (its own local[2] session, a
thread, as ``run_stream`` runs it) so a query listener can keep every progress report. A
fraud-like spec: per card, ``amount`` count/sum/mean over 10m, 1h and 24h and the distinct
merchants over 10m, watermark ``WATERMARK``; a logistic regression on the amount and five of
those features, registered in MLflow, scores each event.

Events: card ids uniform over ``CARDS`` (100k), produced at RATE and 5 x RATE events/s for
SECONDS each (after a warm-up: 100 events, then 5 s at RATE). Each event's ``ts`` is stamped
just before it is produced (ms) and its send time kept: latency = the time this process read
the scored event with a ``read_committed`` consumer of the output topic minus its send time,
as in the Kafka part. An event is released once the watermark passes it, so the latency holds
the watermark's delay plus about one micro-batch (the watermark moves at the end of a batch).

Per rate: p50/p99/max; the state at the window's end (``stateOperators``: rows, memory, SST
bytes); the checkpoint's cost per micro-batch (``walCommit`` + ``commitOffsets``, and the
state store's ``commitTimeMs``: median/max); events dropped behind the watermark. At the end:
``du`` of the checkpoint's ``state`` directory; on a sample of scored events (half of them on
cards with earlier events) the features equal ``offline.training_set`` over every produced
event and the score equals the model's ``predict_proba`` in this process.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_registry import register_champion
from stream_windows_events import KEY, Events, StampedProducer
from stream_windows_metrics import CheckpointTimes, StateSize, data_batches, late_rows

from batch_serving.config import JobConfig
from batch_serving.features.offline import feature_mismatches, training_set
from batch_serving.features.spec import WindowSpec
from batch_serving.kafka_broker import KafkaBroker
from batch_serving.kafka_roundtrip import (
    Collector,
    RoundTripError,
    latency,
    read_committed,
)

CARDS = 100_000
WATERMARK = "100ms"
COLUMNS = "event_id BIGINT, card_id BIGINT, ts TIMESTAMP, amount DOUBLE, merchant STRING"
WINDOWS: dict[str, Any] = {
    "entity": "card_id",
    "event_time": "ts",
    "watermark": WATERMARK,
    "ttl": "7d",
    "aggregates": [
        {
            "column": "amount",
            "functions": ["count", "sum", "mean"],
            "windows": ["10m", "1h", "24h"],
        },
        {"column": "merchant", "functions": ["distinct_count"], "windows": ["10m"]},
    ],
}
FEATURES = [
    "amount",
    "amount_count_10m",
    "amount_sum_10m",
    "amount_count_1h",
    "amount_sum_24h",
    "merchant_distinct_count_10m",
]
TARGET_P50_S, TARGET_P99_S = 1.0, 2.0  # at RATE
WARMUP_S = 5
TAIL_S = 1.0  # > WATERMARK: a window's last timed events are released by its tail
SAMPLE = 400


def progress_listener() -> Any:
    """A query listener keeping every progress report as its JSON dict (``reports``)."""
    from pyspark.sql.streaming import StreamingQueryListener

    class Reports(StreamingQueryListener):
        def __init__(self) -> None:
            self.reports: list[dict[str, Any]] = []

        def onQueryStarted(self, event: Any) -> None:
            """Nothing: only the progress counts."""

        def onQueryProgress(self, event: Any) -> None:
            self.reports.append(json.loads(event.progress.json))

        def onQueryIdle(self, event: Any) -> None:
            """Nothing: an idle trigger wrote nothing."""

        def onQueryTerminated(self, event: Any) -> None:
            """Nothing: the runner reports how it ended."""

    return Reports()


def register_model(tracking_uri: str) -> str:
    """A logistic regression on point-in-time features of a synthetic history (a card's burst
    within 10 minutes is the fraud signal)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    history = Events(2000, seed=3).take(20_000)
    history["ts"] = pd.Timestamp("2026-01-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 6 * 3600 * 1000, len(history))), unit="ms"
    )
    rows = training_set(history, WindowSpec.from_config(job_windows()))
    label = ((rows["amount_count_10m"] >= 1) & (rows["amount"] > 60)).astype(int)
    model = LogisticRegression(max_iter=1000).fit(rows[FEATURES], label)
    return register_champion(
        tracking_uri, "stream-windows-bench", "stream_windows_bench", model, rows[FEATURES]
    )


def job_windows() -> Any:
    from batch_serving.config.windows import WindowsConfig

    return WindowsConfig.model_validate(WINDOWS)


def job(
    tracking_uri: str, model: str, work: Path, bootstrap: str, topics: tuple[str, str]
) -> JobConfig:
    source, output = topics
    return JobConfig.model_validate(
        {
            "job": "stream_windows_bench",
            "model": {"name": model, "alias": "champion", "tracking_uri": tracking_uri},
            "input": {"path": str(work / "unused_input")},
            "entity_columns": [KEY, "card_id", *job_windows().feature_names()],
            "output": {"root": str(work / "out")},
            "catalog": {"enabled": False},
            "tracking": {"log_runs": False},
            "spark": {
                "master": "local[2]",
                "conf": {"spark.sql.shuffle.partitions": 2, "spark.driver.memory": "2g"},
            },
            "stream": {
                "source": "kafka",
                "sink": ["kafka"],
                "columns": COLUMNS,
                "event_time_column": "ts",
                "trigger_seconds": 0,
                "checkpoint": str(work / "checkpoint"),
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "topics": [source],
                    "output_topic": output,
                },
            },
            "windows": WINDOWS,
        }
    )


def windows_bench(work: Path, rates: list[int], seconds: float) -> dict[str, Any]:
    """The windows' latencies, state and checkpoint costs, then the sample's correctness."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    model = register_model(tracking_uri)
    with KafkaBroker(work / "broker", heap_mb=1024) as broker:
        topics = broker.create_topic("events"), broker.create_topic("scores")
        cfg = job(tracking_uri, model, work, broker.bootstrap, topics)
        with InProcessStream(cfg) as run:
            run.wait_started(work / "checkpoint")
            feed = Feed(broker.bootstrap, topics[0], Collector(broker.bootstrap, topics[1]), run)
            feed.collector.start()
            try:
                # Python workers, the state store and the sink's producer start on the first
                # batches (a minute or more on a busy machine); then the steady rate
                for rate, span, drain in ((100, 1, 300.0), (rates[0], WARMUP_S, 300.0)):
                    warm = feed.window(rate, span, drain)
                    if not warm["drained"]:
                        raise RoundTripError(f"warm-up not scored: {warm}")
                    print(f"warm-up (excluded): {warm}", flush=True)
                windows = []
                for rate in rates:
                    windows.append(feed.window(rate, seconds))
                    print(f"windows {rate} events/s: {windows[-1]}", flush=True)
            finally:
                feed.collector.stop()
        scored = read_committed(broker.bootstrap, topics[1])
    produced = feed.events.produced(feed.stamps)
    measured = produced[produced[KEY].isin(feed.measured)]
    checked = sample_check(measured, produced, scored, tracking_uri, f"models:/{model}@champion")
    return {
        "watermark": WATERMARK,
        "cards": CARDS,
        "windows": windows,
        "state_dir_bytes": dir_bytes(work / "checkpoint" / "state"),
        "produced": len(produced),
        "tail": len(produced) - len(measured),
        "scored_once": int(scored[KEY].nunique()) if len(scored) else 0,
        "scored_messages": len(scored),
        "check": checked,
    }


class InProcessStream:
    """``run_stream`` in a thread of this process, on its own session with a listener that
    keeps the query's progress reports (``reports``); stopped gracefully on exit."""

    def __init__(self, cfg: JobConfig) -> None:
        self.cfg = cfg
        self.stop = threading.Event()
        self.failure: list[BaseException] = []
        self.listener = progress_listener()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def reports(self) -> list[dict[str, Any]]:
        reports: list[dict[str, Any]] = self.listener.reports
        return reports

    def __enter__(self) -> InProcessStream:
        from batch_serving.spark.session import build_session

        self.spark = build_session(self.cfg.spark, "stream-windows-bench")
        self.spark.sparkContext.setLogLevel("ERROR")
        self.spark.streams.addListener(self.listener)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(300)  # the batch in flight commits first
        self.spark.stop()
        if self.failure and exc[0] is None:
            raise RoundTripError(f"the stream failed: {self.failure[0]!r}")

    def wait_started(self, checkpoint: Path, timeout_s: float = 300) -> None:
        """Until the query has read its source's first offsets."""
        deadline = time.monotonic() + timeout_s
        while not (checkpoint / "sources" / "0" / "0").exists():
            if self.failure or not self.thread.is_alive():
                raise RoundTripError(f"the stream ended before starting: {self.failure!r}")
            if time.monotonic() > deadline:
                raise RoundTripError(f"the stream did not start in {timeout_s:.0f} s")
            time.sleep(0.2)

    def _run(self) -> None:
        from batch_serving.stream.runner import run_stream

        try:
            run_stream(self.spark, self.cfg, stop=self.stop)
        except BaseException as exc:  # reported by wait_started / __exit__
            self.failure.append(exc)


class Feed:
    """Windows of events into the stream's topic and their scored events out of the output.

    An event is released once the watermark (the newest event time seen, minus
    ``WATERMARK``) passes it, so a window's last events wait for later ones: each window goes
    on for ``TAIL_S`` more at its rate, events that are produced (they are the next window's
    history) but neither timed nor waited for."""

    def __init__(self, bootstrap: str, topic: str, collector: Collector, run: InProcessStream):
        self.bootstrap, self.topic, self.collector, self.run = bootstrap, topic, collector, run
        self.events = Events(CARDS)
        self.stamps: dict[int, int] = {}
        self.measured: set[int] = set()

    def window(self, rate: int, seconds: float, drain_s: float = 60.0) -> dict[str, Any]:
        """``rate`` events/s for ``seconds`` (+ the tail), until the timed ones are read back
        (or a drain timeout); the state and checkpoint costs of the micro-batches meanwhile."""
        timed = int(rate * seconds)
        batch = self.events.take(timed + int(rate * TAIL_S))
        first = len(self.run.reports)
        producer = StampedProducer(self.bootstrap, self.topic, batch, rate)
        producer.start()
        producer.finish()
        self.stamps.update(producer.stamps_ms())
        ids = batch[KEY].to_numpy()[:timed]
        self.measured.update(ids.tolist())
        drained = self._wait_for(ids, max(drain_s, seconds))
        got = self.collector.frame(KEY)
        try:
            measured = asdict(latency(ids, producer.sent_at[:timed], got, KEY))
        except RoundTripError:  # none read back within the drain: reported, not fatal
            nan = float("nan")
            measured = {"events": timed, "checked": 0, "p50_s": nan, "p99_s": nan, "max_s": nan}
        reports = self.run.reports[first:]
        ran = data_batches(reports)
        state = StateSize.of(ran[-1]) if ran else None
        return {
            "rate": rate,
            "seconds": seconds,
            "drained": drained,
            **measured,
            "late_events": late_rows(reports),
            "state": asdict(state) if state else None,
            "checkpoint": asdict(CheckpointTimes.over(ran)),
        }

    def _wait_for(self, ids: np.ndarray, timeout_s: float) -> bool:
        deadline, wanted = time.monotonic() + timeout_s, set(ids.tolist())
        while time.monotonic() < deadline:
            enough = len(self.collector.received) >= len(self.measured)  # parse only then
            if enough and wanted <= set(self.collector.frame(KEY)[KEY]):
                return True
            time.sleep(0.5)
        return False


def sample_check(
    measured: pd.DataFrame,
    produced: pd.DataFrame,
    scored: pd.DataFrame,
    tracking_uri: str,
    model_uri: str,
) -> dict[str, Any]:
    """Sampled timed events (half on cards with an earlier event): the served features
    against ``training_set`` over every produced event, the score against the model
    in-process. A sampled event not read back is a mismatch."""
    import mlflow
    import mlflow.sklearn

    spec = WindowSpec.from_config(job_windows())
    later = measured[produced["card_id"].duplicated(keep="first").loc[measured.index]]
    picks = pd.concat(
        [
            later[KEY].sample(min(SAMPLE // 2, len(later)), random_state=0),
            measured[KEY].sample(min(SAMPLE // 2, len(measured)), random_state=1),
        ]
    ).drop_duplicates()
    rows = produced[produced[KEY].isin(picks)]
    expected = training_set(produced[produced["card_id"].isin(rows["card_id"])], spec, rows)
    served = scored.drop_duplicates(KEY)
    served = served[served[KEY].isin(picks)]
    wrong = feature_mismatches(
        served[[KEY, *spec.names]], expected[[KEY, *spec.names]], spec, [KEY]
    )
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.sklearn.load_model(model_uri)
    want = expected.assign(want=model.predict_proba(expected[FEATURES])[:, 1])
    joined = served[[KEY, "score"]].merge(want[[KEY, "want"]], on=KEY, validate="1:1")
    equal = np.isclose(joined["score"], joined["want"], rtol=0, atol=1e-9)
    return {
        "sampled": len(rows),
        "with_earlier_events": int(rows[KEY].isin(later[KEY]).sum()),
        "read_back": len(served),
        "feature_mismatches": len(wrong),
        "scores_equal": int(equal.sum()),
    }


def dir_bytes(folder: Path) -> int:
    """``du -b``: the bytes of every file under ``folder``."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def table(result: dict[str, Any], load: str) -> list[str]:
    """The short table ``make bench-stream`` prints."""
    check = result["check"]
    lines = [
        f"Windowed features (Kafka -> Kafka, {result['cards']:,} cards uniform, watermark "
        f"{result['watermark']}, load average {load}): latency = event produced -> scored "
        "event readable by a read_committed consumer",
        "| rate ev/s | produced | read back | p50 | p99 | max | late | state rows | state memory "
        "| state SST | log commit ms median/max | state commit ms median/max | batches "
        f"| targets p50<={TARGET_P50_S}s p99<={TARGET_P99_S}s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, w in enumerate(result["windows"]):
        s, c = w["state"] or {"rows": 0, "memory_bytes": 0, "sst_bytes": 0}, w["checkpoint"]
        meets = w["p50_s"] <= TARGET_P50_S and w["p99_s"] <= TARGET_P99_S
        verdict = ("yes" if meets else "no") if i == 0 else "(5x RATE)"
        lines.append(
            f"| {w['rate']:,} | {w['events']:,} | {w['checked']:,} | {w['p50_s']:.2f} s "
            f"| {w['p99_s']:.2f} s | {w['max_s']:.2f} s | {w['late_events']} | {s['rows']:,} "
            f"| {s['memory_bytes'] / 1e6:.1f} MB | {s['sst_bytes'] / 1e6:.1f} MB "
            f"| {c['log_median_ms']:.0f}/{c['log_max_ms']:.0f} "
            f"| {c['state_median_ms']:.0f}/{c['state_max_ms']:.0f} | {c['batches']} | {verdict} |"
        )
    lines += [
        f"checkpoint state dir at the end: {result['state_dir_bytes'] / 1e6:.1f} MB; "
        f"{result['scored_once']:,} of {result['produced']:,} produced events scored "
        f"({result['scored_messages']:,} messages; the last events, within the watermark of "
        "the newest, wait for a later one)",
        f"sample: {check['sampled']} events ({check['with_earlier_events']} with earlier events "
        f"on their card), {check['read_back']} read back: {check['feature_mismatches']} feature "
        f"mismatches against offline.training_set, {check['scores_equal']} scores equal to the "
        "model in-process",
    ]
    return lines
