"""``make demo-stream``: the fraud example live, from training to a blocked card's API answer.

    python -m batch_serving.fraud_demo [--rate 200] [--threshold 0.5] [--config JOB_FILE]

1. Card transactions (``features.fraud_example``: a compromised card has a burst of purchases
   at merchants it never uses) -> the point-in-time training set -> held-out AUC with and
   without the windowed features -> the model trained on every row, registered as
   ``fraud@champion`` in the demo's registry (the ``--config`` job file's ``tracking_uri``),
   while the broker starts.
2. A local Kafka broker and a redis-server (loopback, each its own process group) ->
   ``batch-serving stream`` (``source: kafka``, the ``windows:`` of ``DEMO_WINDOWS`` with the
   online store in Redis, rules: ``block`` when ``score > threshold``, else ``allow``;
   ``sink: kafka``) as a child process group.
3. Two hours of fresh transactions (ending now, one card's burst in the last minutes) produced
   at ``--rate`` in event-time order; then one event of a flush card per second, hours ahead,
   until every transaction is scored (an event is released once the watermark passes it);
   the decisions read back ``read_committed``; the stream stopped (SIGTERM).
4. The lookup API in this process on a free loopback port, its live path reading the online
   store (``live_window_jobs``): the live answer of the burst card and of a normal card.

Everything it started is stopped on success, failure, Ctrl-C or SIGTERM. Its files (job file,
the produced transactions, the decisions read back, logs, broker and Redis data, serving root)
are in ``--workdir``, replaced on each run.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from batch_serving.config import JobConfig, load_config
from batch_serving.config.windows import WindowsConfig
from batch_serving.demo_stream import DEMO_CONFIG, sigterm_as_interrupt
from batch_serving.features import fraud_example
from batch_serving.features.spec import WindowSpec
from batch_serving.fraud_demo_api import ask_api
from batch_serving.kafka_roundtrip import (
    Collector,
    Delivery,
    Latency,
    PacedProducer,
    RoundTripError,
    StreamProcess,
    delivery,
    latency,
    read_committed,
)

if TYPE_CHECKING:
    from batch_serving.kafka_broker import KafkaBroker

log = logging.getLogger(__name__)
MODEL = "fraud"
EVENTS_TOPIC, DECISIONS_TOPIC = "card-transactions", "card-decisions"
COLUMNS = "txn_id BIGINT, card_id STRING, ts TIMESTAMP, amount DOUBLE, merchant STRING"
FLUSH_CARD = "flush"  # its events move the watermark; they stay pending, never scored
DEMO_WINDOWS: dict[str, Any] = {
    "entity": "card_id",
    "event_time": "ts",
    "watermark": "2m",
    "ttl": "2h",
    "aggregates": [
        {"column": "amount", "functions": ["count", "sum"], "windows": ["10m", "1h"]},
        {"column": "merchant", "functions": ["distinct_count"], "windows": ["10m", "1h"]},
    ],
}
LIVE_CARDS, LIVE_HOURS = 60, 2.0


def demo_spec() -> WindowSpec:
    return WindowSpec.from_config(WindowsConfig.model_validate(DEMO_WINDOWS))


@dataclass(frozen=True)
class Trained:
    """The registered model and its held-out AUCs."""

    version: int
    report: fraud_example.FraudReport
    features: list[str]


@dataclass(frozen=True)
class Decided:
    """The stream's decisions: transactions in, decisions out, how fast."""

    events: pd.DataFrame  # the produced transactions (with ``is_fraud``)
    decisions: pd.DataFrame  # read_committed from the output topic
    delivery: Delivery
    latency: Latency
    stream: dict[str, Any]


@dataclass(frozen=True)
class FraudDemo:
    model: str
    threshold: float
    trained: Trained
    decided: Decided
    burst_card: str
    normal_card: str
    asked: tuple[float, float]  # the API requests were sent between these (epoch seconds)
    answers: dict[str, dict[str, Any]]
    workdir: Path

    def lines(self) -> list[str]:
        r, d = self.trained.report, self.decided
        once = "yes" if d.delivery.exactly_once else "NO"
        decisions = d.decisions.merge(d.events[["txn_id", "is_fraud"]], on="txn_id")
        blocked = decisions["action"] == "block"
        bursts = decisions[decisions["is_fraud"] == 1].groupby("card_id")["action"]
        caught = int((bursts.apply(lambda a: (a == "block").any())).sum())
        false_blocks = int((blocked & (decisions["is_fraud"] == 0)).sum())
        lat = d.latency
        return [
            f"demo-stream: card fraud scored live by {self.model} "
            f"({EVENTS_TOPIC} -> windowed stream -> {DECISIONS_TOPIC}, online store: Redis)",
            f"model:      v{self.trained.version}, trained on {r.train_rows} transactions; "
            f"held-out AUC ({r.test_rows} later transactions, {r.fraud_share:.1%} fraud): "
            f"{r.auc_plain:.3f} the amount alone, {r.auc_windowed:.3f} with windowed features",
            f"events:     {d.delivery.produced} transactions produced, {d.delivery.scored} "
            f"decided; each exactly once: {once} ({d.delivery.duplicates} duplicates, "
            f"{d.delivery.unexpected} unexpected)",
            f"decisions:  {int(blocked.sum())} blocked, {int((~blocked).sum())} allowed "
            f"(block when score > {self.threshold}); {false_blocks} of them legitimate",
            f"bursts:     {caught} of {bursts.ngroups} compromised cards' bursts blocked",
            f"stream:     {d.stream['batches']} micro-batches, {d.stream['scored_rows']} scored, "
            f"{d.stream['quarantined_rows']} quarantined",
            f"latency (produced -> decision readable; an event waits for the 2m watermark "
            f"of event time): p50 {lat.p50_s:.2f} s, p99 {lat.p99_s:.2f} s",
            f"live API (requests between {self.asked[0]:.6f} and {self.asked[1]:.6f}):",
            *(
                f"  GET /v1/models/{MODEL}/predictions/{card} ({kind}): "
                f"{json.dumps(self.answers[card], sort_keys=True)}"
                for card, kind in ((self.burst_card, "burst"), (self.normal_card, "normal"))
            ),
            f"files: {self.workdir} (stream.yaml, transactions.csv, decisions.csv, "
            "stream.log, broker/, redis/)",
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="its registry is used")
    parser.add_argument("--workdir", type=Path, default=Path("data/demo-stream"))
    parser.add_argument("--rate", type=float, default=200, help="transactions per second")
    parser.add_argument("--threshold", type=float, default=0.5, help="block above this score")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("py4j", "mlflow", "alembic", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        with sigterm_as_interrupt():
            done = run(args.config, args.workdir.resolve(), args.rate, args.threshold)
    except KeyboardInterrupt:
        print("demo-stream interrupted: stream, broker and Redis are stopped", file=sys.stderr)
        return 130
    except RoundTripError as exc:
        print(f"demo-stream failed: {exc}", file=sys.stderr)
        return 1
    print("\n".join(done.lines()), flush=True)
    return 0 if done.decided.delivery.exactly_once else 1


def run(config: Path, workdir: Path, rate: float, threshold: float) -> FraudDemo:
    """The demo's steps; broker, Redis, stream and API live only inside this call."""
    from batch_serving.kafka_broker import KafkaBroker
    from batch_serving.redis_server import LocalRedis

    cfg = load_config(config)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with ThreadPoolExecutor(1) as pool:  # the model trains while the broker's JVM starts
        training = pool.submit(train_and_register, cfg)
        with KafkaBroker(workdir / "broker") as broker, LocalRedis(workdir / "redis") as redis:
            trained = training.result()
            return live(cfg, workdir, broker, redis.url, trained, rate, threshold)


def live(
    cfg: JobConfig,
    workdir: Path,
    broker: KafkaBroker,
    redis_url: str,
    trained: Trained,
    rate: float,
    threshold: float,
) -> FraudDemo:
    """Steps 2-4 with the broker and Redis running: stream, transactions, the API."""
    source, output = broker.create_topic(EVENTS_TOPIC), broker.create_topic(DECISIONS_TOPIC)
    job = stream_job(cfg, workdir, broker.bootstrap, redis_url, source, output, threshold)
    job_file = workdir / "stream.yaml"
    job_file.write_text(yaml.safe_dump(job, sort_keys=False))
    with StreamProcess(job_file, workdir) as stream:
        log.info("waiting for the stream to start (JVM, model, Kafka source)")
        stream.wait_started(workdir / "checkpoint")
        events, burst_card, normal_card = live_transactions(pd.Timestamp.now("UTC"))
        events.to_csv(workdir / "transactions.csv", index=False)
        sent, received = produce_and_collect(broker.bootstrap, events, rate)
        record = stream.stop()
    decisions = read_committed(broker.bootstrap, output)
    decisions.to_csv(workdir / "decisions.csv", index=False)
    decided = Decided(
        events,
        decisions,
        delivery(events["txn_id"], decisions, "txn_id"),
        latency(events["txn_id"].to_numpy(), sent, received, "txn_id"),
        record,
    )
    cards = [burst_card, normal_card]
    asked, answers = ask_api(workdir, job_file, MODEL, trained, events, cards, cfg, job["rules"])
    return FraudDemo(
        f"{MODEL}@champion",
        threshold,
        trained,
        decided,
        burst_card,
        normal_card,
        asked,
        answers,
        workdir,
    )


def train_and_register(cfg: JobConfig) -> Trained:
    """Held-out AUCs both ways, then the windowed model fit on every training row and
    registered as ``fraud@champion``."""
    from mlflow import MlflowClient
    from sklearn.ensemble import HistGradientBoostingClassifier

    from batch_serving.features.offline import training_set

    spec = demo_spec()
    history = fraud_example.transactions()
    report = fraud_example.evaluate(history, spec)
    rows = training_set(history, spec)
    features = [*fraud_example.PLAIN, *spec.names]
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0)
    model.fit(rows[features], rows["is_fraud"])
    version = register(cfg.model.tracking_uri, model, rows[features])
    client = MlflowClient(
        tracking_uri=cfg.model.tracking_uri, registry_uri=cfg.model.effective_registry_uri
    )
    client.set_registered_model_alias(MODEL, "champion", str(version))
    log.info(
        "registered %s v%d as @champion (AUC %.3f alone, %.3f windowed)",
        MODEL,
        version,
        report.auc_plain,
        report.auc_windowed,
    )
    return Trained(version, report, features)


def register(tracking_uri: str, model: Any, x: pd.DataFrame) -> int:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from batch_serving.demo import HGB_TRUSTED, demo_experiment

    Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    with mlflow.start_run(experiment_id=demo_experiment(tracking_uri), run_name="demo-fraud"):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x.head(100), model.predict_proba(x.head(100))),
            registered_model_name=MODEL,
            skops_trusted_types=HGB_TRUSTED,
        )
    return int(info.registered_model_version)


def stream_job(
    cfg: JobConfig,
    workdir: Path,
    bootstrap: str,
    redis_url: str,
    source: str,
    output: str,
    threshold: float,
) -> dict[str, Any]:
    """The stream's job file: Kafka in and out, the demo's windows with Redis, the rule."""
    job: dict[str, Any] = {
        "job": "fraud_stream",
        "model": {
            "name": MODEL,
            "alias": "champion",
            "tracking_uri": cfg.model.tracking_uri,
            "positive_label": 1,
        },
        "rules": [{"when": f"score > {threshold}", "action": "block"}, {"otherwise": "allow"}],
        "input": {"path": str(workdir / "input")},
        "entity_columns": ["txn_id", "card_id"],
        "output": {"root": str(workdir / "output")},
        "catalog": {"enabled": False},
        "tracking": {"log_runs": False},
        "spark": {
            "master": "local[2]",
            "conf": {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"},
        },
        "stream": {
            "source": "kafka",
            "sink": ["kafka"],
            "columns": COLUMNS,
            "event_time_column": "ts",
            "trigger_seconds": 0,
            "checkpoint": str(workdir / "checkpoint"),
            "kafka": {"bootstrap_servers": bootstrap, "topics": [source], "output_topic": output},
        },
        "windows": {**DEMO_WINDOWS, "redis_url": redis_url},
    }
    JobConfig.model_validate(job)  # a bad job fails here, not in the child
    return job


def live_transactions(now: pd.Timestamp, seed: int = 7) -> tuple[pd.DataFrame, str, str]:
    """``LIVE_HOURS`` of transactions of ``LIVE_CARDS`` cards ending 90 s before ``now``
    (naive UTC times), plus a burst of a clean card in the 3 minutes before ``now - 30 s``;
    (events, that burst card, a clean card with a recent purchase)."""
    now = now.tz_convert("UTC").tz_localize(None)
    frame = fraud_example.transactions(cards=LIVE_CARDS, days=LIVE_HOURS / 24, seed=seed)
    frame["ts"] = frame["ts"] - frame["ts"].max() + (now - pd.Timedelta(seconds=90))
    fraud_cards = set(frame.loc[frame["is_fraud"] == 1, "card_id"])
    clean = frame[~frame["card_id"].isin(fraud_cards)]
    by_recent = clean.groupby("card_id")["ts"].max().sort_values(ascending=False).index
    burst_card, normal_card = str(by_recent[1]), str(by_recent[0])
    end = now - pd.Timedelta(seconds=30)
    events = fraud_example.with_burst(frame, burst_card, end, span_s=180)
    return events, burst_card, normal_card


def messages(events: pd.DataFrame) -> list[tuple[str, str]]:
    """Each transaction as (card, JSON) with its time in ISO 8601 UTC (``Z``)."""
    out = []
    for row in events[["txn_id", "card_id", "ts", "amount", "merchant"]].to_dict("records"):
        row["ts"] = row["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append((str(row["card_id"]), json.dumps(row, default=_plain)))
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def produce_and_collect(
    bootstrap: str, events: pd.DataFrame, rate: float, timeout_s: float = 180
) -> tuple[Any, pd.DataFrame]:
    """The transactions at ``rate``, then a flush event a second until every one is decided
    (or ``timeout_s``); (their send times, every receive time)."""
    collector = Collector(bootstrap, DECISIONS_TOPIC)
    collector.start()
    try:
        producer = PacedProducer(bootstrap, EVENTS_TOPIC, messages(events), rate)
        producer.start()
        producer.finish()
        log.info("%d transactions produced; flushing the watermark", len(events))
        flush_at = pd.Timestamp(events["ts"].max()) + pd.Timedelta(hours=1)
        deadline = time.monotonic() + timeout_s
        tick = 0
        while not collector.wait_for(len(events), timeout_s=1.0):
            if time.monotonic() > deadline:
                log.warning(
                    "only %d of %d decisions read back", len(collector.received), len(events)
                )
                break
            flush = pd.DataFrame(
                {
                    "txn_id": [-1 - tick],
                    "card_id": [FLUSH_CARD],
                    "ts": [flush_at + pd.Timedelta(seconds=tick)],
                    "amount": [1.0],
                    "merchant": ["m000"],
                }
            )
            nudge = PacedProducer(bootstrap, EVENTS_TOPIC, messages(flush), rate)
            nudge.start()
            nudge.finish()
            tick += 1
    finally:
        collector.stop()
    return producer.sent_at, collector.frame("txn_id")


if __name__ == "__main__":
    sys.exit(main())
