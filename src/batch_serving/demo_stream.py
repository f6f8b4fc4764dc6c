"""``make demo-stream``: the demo model scoring Kafka events live, from start to stop.

    python -m batch_serving.demo_stream [--events 3000] [--rate 1000] [--config JOB_FILE]

The demo's model registered if missing (as ``make demo``: ``<name>@champion`` in the job's
registry) -> a local Kafka broker (KRaft, loopback, its own process group) with an input and an
output topic -> ``batch-serving stream`` (``source: kafka``, ``sink: kafka``) as a child process
in its own process group -> events produced at a steady rate, the scored events read back by a
``read_committed`` consumer -> the stream stopped (SIGTERM: its batch in flight commits) -> a
summary. The stream and the broker are stopped on success, failure, Ctrl-C or SIGTERM. Its
files (job file, logs, broker data, checkpoint) are in ``--workdir``, replaced on each run.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pandas as pd
import yaml

from batch_serving import sample_data
from batch_serving.config import JobConfig, load_config
from batch_serving.kafka_roundtrip import (
    Collector,
    Delivery,
    Latency,
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

log = logging.getLogger(__name__)
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "jobs" / "churn.yaml"
EVENTS_TOPIC, SCORES_TOPIC = "churn-events", "churn-scores"
KEY = sample_data.ENTITY
WARMUP = 20  # events scored before the timed ones (their batch starts the Python workers)


@dataclass(frozen=True)
class StreamDemo:
    """What the demo produced, what came out, and how fast."""

    bootstrap: str
    model: str
    rate: float
    delivery: Delivery
    latency: Latency
    stream: dict[str, Any]  # the stream command's JSON record
    scores_checked: tuple[int, int]  # (sampled, equal to the model in-process)
    examples: list[dict[str, Any]]
    workdir: Path

    def lines(self) -> list[str]:
        d, lat, (checked, equal) = self.delivery, self.latency, self.scores_checked
        once = "yes" if d.exactly_once else "NO"
        return [
            f"demo-stream: {self.model} scored Kafka events live "
            f"({EVENTS_TOPIC} -> {SCORES_TOPIC} on a local broker {self.bootstrap})",
            f"events in:   {d.produced} produced: {WARMUP} to warm up, then "
            f"{lat.events} at {lat.produced_rows_per_s:.0f}/s (asked {self.rate:.0f}/s)",
            f"scored out:  {d.scored} on {SCORES_TOPIC} (read_committed); each event exactly "
            f"once: {once} ({d.duplicates} duplicates, {d.produced - d.scored} missing, "
            f"{d.unexpected} unexpected)",
            f"stream:      {self.stream['batches']} micro-batches, "
            f"{self.stream['scored_rows']} scored, {self.stream['quarantined_rows']} "
            "quarantined",
            f"latency (produced -> readable by a read_committed consumer, {lat.checked} "
            f"timed events): p50 {lat.p50_s:.2f} s, p99 {lat.p99_s:.2f} s, "
            f"max {lat.max_s:.2f} s",
            f"score check: {equal} of {checked} sampled events equal the model's predict_proba "
            "in this process",
            "a few scored events:",
            *(f"  {json.dumps(e, default=str)}" for e in self.examples),
            f"files: {self.workdir} (stream.yaml, stream.log, broker/)",
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="the demo's job file")
    parser.add_argument("--workdir", type=Path, default=Path("data/demo-stream"))
    parser.add_argument("--events", type=int, default=3000, help="events to produce")
    parser.add_argument("--rate", type=float, default=1000, help="events per second")
    parser.add_argument("--train-rows", type=int, default=50_000, help="if models are missing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("py4j", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        with sigterm_as_interrupt():
            done = run(args.config, args.workdir.resolve(), args.events, args.rate, args.train_rows)
    except KeyboardInterrupt:
        print("demo-stream interrupted: the stream and the broker are stopped", file=sys.stderr)
        return 130
    except RoundTripError as exc:
        print(f"demo-stream failed: {exc}", file=sys.stderr)
        return 1
    print("\n".join(done.lines()), flush=True)
    return 0 if done.delivery.exactly_once else 1


def run(config: Path, workdir: Path, events: int, rate: float, train_rows: int) -> StreamDemo:
    """The demo's steps; the broker and the stream live only inside this call."""
    from batch_serving.demo import ensure_models
    from batch_serving.kafka_broker import KafkaBroker

    cfg = load_config(config)
    ensure_models(cfg, train_rows=train_rows)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    frame = sample_data.customer_features(WARMUP + events, seed=11).drop(columns=["churned"])
    with KafkaBroker(workdir / "broker") as broker:
        source, output = broker.create_topic(EVENTS_TOPIC), broker.create_topic(SCORES_TOPIC)
        section = stream_section(sample_data.EVENT_DDL, broker.bootstrap, source, output, 0)
        job_file = write_stream_job(cfg, section, workdir)
        with StreamProcess(job_file, workdir) as stream:
            log.info("waiting for the stream to start (JVM, model, Kafka source)")
            stream.wait_started(workdir / "checkpoint")
            sent, received = produce_and_collect(broker.bootstrap, frame, rate, WARMUP)
            record = stream.stop()
        scored = read_committed(broker.bootstrap, output)
    checked = score_check(
        f"models:/{cfg.model.name}@{cfg.model.alias}",
        cfg.model.tracking_uri,
        frame,
        scored,
        key=KEY,
        features=list(sample_data.FEATURES),
        sample=50,
    )
    return StreamDemo(
        bootstrap=broker.bootstrap,
        model=f"{cfg.model.name}@{cfg.model.alias}",
        rate=rate,
        delivery=delivery(frame[KEY], scored, KEY),
        latency=latency(frame[KEY].to_numpy()[WARMUP:], sent, received, KEY),
        stream=record,
        scores_checked=checked,
        examples=examples(scored),
        workdir=workdir,
    )


def write_stream_job(cfg: JobConfig, section: dict[str, Any], workdir: Path) -> Path:
    """The demo's job with a ``stream:`` section, its output and checkpoint in ``workdir``
    (the batch-only parts, catalog and run tracking, off); validated, then written as YAML."""
    job = cfg.model_dump(mode="json", exclude_unset=True)
    job.update(
        job=f"{cfg.job}_stream",
        output={**job["output"], "root": str(workdir / "output")},
        catalog={"enabled": False},
        tracking={"log_runs": False},
        stream={**section, "checkpoint": str(workdir / "checkpoint")},
    )
    JobConfig.model_validate(job)  # a bad section fails here, not in the child
    path = workdir / "stream.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def produce_and_collect(
    bootstrap: str, frame: pd.DataFrame, rate: float, warmup: int
) -> tuple[Any, pd.DataFrame]:
    """The first ``warmup`` events, then (once they are scored: the first batch starts
    Spark's Python workers and loads the model) the rest at ``rate``, while a read_committed
    consumer reads the scores back; (the timed events' send times, every receive time)."""
    collector = Collector(bootstrap, SCORES_TOPIC)
    collector.start()
    messages = event_messages(frame, KEY)
    try:
        first = PacedProducer(bootstrap, EVENTS_TOPIC, messages[:warmup], rate)
        first.start()
        first.finish()
        if not collector.wait_for(warmup, timeout_s=300):
            raise RoundTripError(f"the {warmup} warm-up events were not scored in 300 s")
        log.info("warm-up scored; producing %d events at %.0f/s", len(frame) - warmup, rate)
        timed = PacedProducer(bootstrap, EVENTS_TOPIC, messages[warmup:], rate)
        timed.start()
        timed.finish()
        if not collector.wait_for(len(frame), timeout_s=120 + len(frame) / 100):
            log.warning("only %d of %d events read back", len(collector.received), len(frame))
    finally:
        collector.stop()
    return timed.sent_at, collector.frame(KEY)


def examples(scored: pd.DataFrame, count: int = 3) -> list[dict[str, Any]]:
    """A few scored events, the columns a reader looks at first."""
    wanted = [KEY, "score", "action", "model_version", "event_time", "batch_id"]
    shown = [c for c in wanted if c in scored.columns]
    rows: list[dict[str, Any]] = scored[shown].head(count).to_dict(orient="records")
    return rows


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the broker and the stream are stopped either way."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
