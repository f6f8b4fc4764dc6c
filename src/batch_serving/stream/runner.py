"""The stream: resolve the models once, plan once, run the query, stop cleanly.

``run_stream`` reads like the batch job: config -> resolve models -> read (a stream) -> plan
(columns and casts checked before the first event) -> score and write each micro-batch
(``sink``). An alias moved in the registry takes effect when the stream restarts.

Stopping: SIGTERM (or SIGINT) to the driver process lets the micro-batch in flight finish,
then stops the query; a batch cut short anyway (kill -9, lost machine) is replayed on restart
from the checkpoint and written idempotently (see ``sink``).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from types import FrameType

import pyarrow as pa
from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming import StreamingQuery

from batch_serving.config import JobConfig, StreamConfig
from batch_serving.errors import ConfigError, ScoringError, first_line
from batch_serving.runs.context import new_run_id
from batch_serving.runs.models import prepare_models, resolve_members
from batch_serving.scoring.plan import Member, ScoringPlan, ScoringSettings, build_plan
from batch_serving.spark.connect import is_connect, unsupported
from batch_serving.stream.batches import BatchHandler
from batch_serving.stream.checkpoint_files import checkpoint_files
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.metrics import CascadeTally, StreamMetrics
from batch_serving.stream.progress import StreamProgress, progress_for
from batch_serving.stream.schema import parse_ddl
from batch_serving.stream.sink import sink_for
from batch_serving.stream.source import StreamSource, source_for
from batch_serving.stream.windowed import carried, query_conf, windowed

log = logging.getLogger(__name__)

# Under Connect the server runs foreachBatch on a copy of the handler; the result and the
# graceful stop follow the table sink's batch markers (``progress.MarkerProgress``).
CONNECT_SINK = "table"


@dataclass(frozen=True)
class StreamResult:
    """What this process did before the query ended."""

    stream_run_id: str
    batches: int
    skipped_batches: int
    scored_rows: int
    quarantined_rows: int
    poison_files: int
    stopped_by_signal: bool


def run_stream(
    spark: SparkSession,
    cfg: JobConfig,
    *,
    available_now: bool = False,
    stop: threading.Event | None = None,
) -> StreamResult:
    """Run until stopped (``stop`` set, SIGTERM/SIGINT) or, with ``available_now``, until the
    files that had landed when it started are scored."""
    stream = stream_config(cfg)
    if is_connect(spark):
        _refuse_under_connect(cfg)
    parse_ddl(stream.columns)  # a bad schema is a config error before Spark starts
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run_id = new_run_id(started)
    resolved = resolve_members(cfg)
    log.info("stream %s: models pinned until restart (an alias move takes effect then)", run_id)
    models = prepare_models(spark, cfg, resolved)
    layout = StreamLayout.for_job(cfg)
    source = windowed(source_for(stream, layout.checkpoint), cfg)
    frame = source.read(spark)
    declared = to_arrow_schema(frame.schema, timezone="UTC")

    def planner(schema: pa.Schema, where: str) -> ScoringPlan:
        return stream_plan(cfg, source, models.members, schema, where, run_id, started)

    plan = planner(declared, source.describe())
    tally = CascadeTally(plan) if plan.cascade is not None else None
    metrics = StreamMetrics(cfg.model.name, layout.metrics_file, tally)
    sink = sink_for(stream, layout, cfg.entity_columns)
    handler = BatchHandler(
        plan,
        declared,
        planner,
        models.handles(),
        source,
        sink,
        layout,
        metrics,
        run_id,
    )
    name = f"batch-serving-{cfg.job}-{run_id}"
    progress = progress_for(spark, handler, metrics)
    progress.attach(spark, name)
    writer = (
        frame.select(*carried(source, plan.input_columns, stream.event_time_column))
        .writeStream.queryName(name)
        .foreachBatch(handler)
        .option("checkpointLocation", str(layout.checkpoint))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{stream.trigger_seconds} seconds")
    log.info(
        "stream %s: %s -> %s (checkpoint %s)",
        run_id,
        source.describe(),
        ", ".join(stream.sink),
        layout.checkpoint,
    )
    stop = stop or threading.Event()
    try:
        with stop_on_signals(stop):
            with query_conf(spark, cfg), checkpoint_files(spark, layout.checkpoint):
                query = start_query(writer)
            finish = partial(_finish_current_batch, query, progress)
            signalled = wait_until_stopped(query, stop, finish, "stream")
    finally:
        progress.detach(spark)
        sink.close()
        models.release()
    counts = progress.counts()
    return StreamResult(
        run_id,
        counts.batches,
        counts.skipped_batches,
        counts.scored_rows,
        counts.quarantined_rows,
        counts.poison_files,
        signalled,
    )


def stream_config(cfg: JobConfig) -> StreamConfig:
    """The job's ``stream:`` section; a job without one, or with ``spark.remote`` and a part
    the stream cannot run under Connect (``connect_refusal``), is a ConfigError before any
    session starts."""
    if cfg.stream is None:
        raise ConfigError(f"job {cfg.job} has no `stream:` section; add one to stream it")
    if cfg.spark.remote is not None:
        _refuse_under_connect(cfg)
    return cfg.stream


def connect_refusal(cfg: JobConfig) -> str | None:
    """Why this stream cannot run under Spark Connect, or None: the driver follows the
    batches through the table sink's markers (so ``stream.sink`` must include ``table``);
    Kafka (source or sink) and windowed features (``windows:``, a stateful query and its
    online store) run with a classic session only: neither is tested under Connect."""
    stream = cfg.stream
    if stream is not None and (stream.source == "kafka" or "kafka" in stream.sink):
        return unsupported(
            "`stream` with Kafka (stream.source or stream.sink)",
            "run a Kafka stream with a classic session (spark.master or spark-submit, "
            "no spark.remote)",
        )
    if stream is not None and CONNECT_SINK not in stream.sink:
        return unsupported(
            f"`stream` with stream.sink {stream.sink} (no `{CONNECT_SINK}`)",
            "the driver follows the batches through the table sink's batch markers; add "
            f"`{CONNECT_SINK}` to stream.sink or run with a classic session (no spark.remote)",
        )
    if cfg.windows is not None:
        return unsupported(
            "`stream` with `windows:` features",
            "run a windowed stream with a classic session (spark.master or spark-submit, "
            "no spark.remote)",
        )
    return None


def _refuse_under_connect(cfg: JobConfig) -> None:
    refusal = connect_refusal(cfg)
    if refusal is not None:
        raise ConfigError(f"job {cfg.job}: {refusal}")


def stream_plan(
    cfg: JobConfig,
    source: StreamSource,
    members: tuple[Member, ...],
    schema: pa.Schema,
    where: str,
    run_id: str,
    started: dt.datetime,
) -> ScoringPlan:
    """The job's plan (its ``ScoringSettings``: ensemble, cascade, rules, score column) over
    ``schema`` (the stream's columns, or a micro-batch part's); the event columns ride along
    as ids. Raises naming a missing or mistyped column."""
    return build_plan(
        members,
        list(dict.fromkeys([*cfg.entity_columns, *source.passthrough_columns()])),
        schema,
        run_id,
        started,
        where,
        ScoringSettings.for_job(cfg),
    )


def start_query(writer: object) -> StreamingQuery:
    try:
        query: StreamingQuery = writer.start()  # type: ignore[attr-defined]
    except Exception as exc:
        raise ScoringError(f"stream could not start: {first_line(str(exc))}") from None
    return query


def wait_until_stopped(
    query: StreamingQuery, stop: threading.Event, finish: Callable[[], None], what: str
) -> bool:
    """Block until the query ends; True if it was stopped on request, after ``finish`` let
    the batch in flight complete. A failed query is a ScoringError naming ``what``."""
    try:
        while query.isActive:
            if stop.is_set():
                finish()
                query.stop()
                log.info("%s stopped on request", what)
                return True
            query.awaitTermination(0.2)  # type: ignore[arg-type]  # py4j takes seconds as float
    except StreamingQueryException as exc:
        raise ScoringError(f"{what} failed: {_python_or_first_line(str(exc))}") from None
    error = query.exception()
    if error is not None:
        raise ScoringError(f"{what} failed: {_python_or_first_line(str(error))}")
    return False


def _finish_current_batch(
    query: StreamingQuery, progress: StreamProgress, timeout_s: float = 600
) -> None:
    """Let the micro-batch in flight when the stop came (its offsets logged by Spark, not yet
    committed by the sink) commit. A batch Spark starts after that is cut short by the stop
    and replayed on restart (the sink is idempotent)."""
    in_flight = progress.in_flight()
    if in_flight is None:
        return
    log.info("waiting for batch %d to commit before stopping", in_flight)
    deadline = time.monotonic() + timeout_s
    while query.isActive and not progress.finished(in_flight) and time.monotonic() < deadline:
        time.sleep(0.02)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (only the main thread may install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _python_or_first_line(text: str) -> str:
    from batch_serving.spark.errors import python_error_line

    return python_error_line(text) if "Traceback" in text else first_line(text)
