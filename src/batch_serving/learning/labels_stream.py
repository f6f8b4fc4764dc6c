"""Labels in from a stream: label files landing in a directory, read by a Structured Streaming
file source; each micro-batch is matched point in time to the job's predictions and features
(``labels.match_labels``) and learned by the same ``loop.learn_labels`` as the daily job.

Exactly once across a crash: the learner checkpoint records the (query id, batch id) it learned
last, in the same atomic file as the model. Spark replays the last batch whose commit it had
not written; a replayed batch id at or below the recorded one is skipped. A crash inside a
batch (after ``learn_labels`` checkpointed a day but before the batch id was recorded) is
covered by the watermark: the replay learns only the labels after it. A new Spark checkpoint
(a new query id) does not skip by batch id; the watermark still holds.

Labels are learned in their files' arrival order and, inside a micro-batch, in event-time
order; a label whose event time is at or before the watermark when it arrives is not learned
(counted as ``already_learned``), so land label files in event-time order.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter

from batch_serving.config import JobConfig
from batch_serving.errors import ConfigError, ScoringError
from batch_serving.learning.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from batch_serving.learning.labels import match_labels
from batch_serving.learning.learner import OnlineLearner
from batch_serving.learning.loop import Columns, learn_labels
from batch_serving.learning.run import snapshot_when_due
from batch_serving.learning.settings import LabelsStreamConfig, LearningConfig
from batch_serving.spark.connect import is_connect
from batch_serving.stream.runner import start_query, stop_on_signals, wait_until_stopped
from batch_serving.stream.schema import parse_ddl

log = logging.getLogger(__name__)


@dataclass
class LabelStreamResult:
    """What this process learned before the query ended (replayed batches apart)."""

    batches: int = 0
    replayed_batches: int = 0
    labels: int = 0
    unmatched: int = 0
    without_features: int = 0
    learned: int = 0
    already_learned: int = 0
    skipped: int = 0
    snapshots: list[int] = field(default_factory=list)
    total_learned: int = 0
    last_batch: int | None = None
    stopped_by_signal: bool = False


class LabelBatchHandler:
    """The query's ``foreachBatch`` function: skip a replayed batch, else match, learn,
    record the batch id, snapshot when due."""

    def __init__(
        self, job: JobConfig, learning: LearningConfig, spark_checkpoint: Path, snapshot: bool
    ) -> None:
        self.job, self.learning, self.snapshot = job, learning, snapshot
        self.spark_checkpoint = spark_checkpoint
        self.path = Path(learning.checkpoint)
        labels = learning.labels
        self.columns = Columns(job.entity_columns[0], labels.label_column, labels.event_time_column)
        self.result = LabelStreamResult()
        self.busy = threading.Event()

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        self.busy.set()
        try:
            self._learn(frame, batch_id)
        finally:
            self.busy.clear()

    def _learn(self, frame: DataFrame, batch_id: int) -> None:
        query_id = self._query_id()
        state = load_checkpoint(self.path)
        done = state.stream_batch if state is not None else None
        if done is not None and done[0] == query_id and batch_id <= done[1]:
            log.info("labels batch %d already learned (at %d): skipped", batch_id, done[1])
            self.result.replayed_batches += 1
            return
        labels = frame.toArrow().to_pandas()
        features = self.learning.learner.features
        matched = match_labels(self.job, self.learning.labels, features, labels)
        r = self.result
        r.labels, r.unmatched = r.labels + matched.labels, r.unmatched + matched.unmatched
        r.without_features += matched.without_features
        if len(matched.rows):
            report = learn_labels(
                matched.rows,
                self.path,
                self.learning.learner,
                self.columns,
                late_days=self.learning.labels.late_days,
            )
            r.learned, r.skipped = r.learned + report.learned, r.skipped + report.skipped
            r.already_learned += report.already_learned
        self._record(query_id, batch_id)
        r.batches, r.last_batch = r.batches + 1, batch_id
        if self.snapshot:
            snapshot = snapshot_when_due(self.job, self.learning)
            if snapshot is not None:
                r.snapshots.append(snapshot.version)
        log.info("labels batch %d: %d read, %d learned", batch_id, matched.labels, r.learned)

    def _record(self, query_id: str, batch_id: int) -> None:
        """The batch id into the learner checkpoint (a checkpoint of an untrained learner if
        the batch matched nothing): from here on a replay of it is skipped."""
        features = self.learning.learner
        state = load_checkpoint(self.path) or Checkpoint(OnlineLearner.from_config(features))
        state.stream_batch = (query_id, batch_id)
        save_checkpoint(state, self.path)
        self.result.total_learned = state.learned

    def _query_id(self) -> str:
        """The query's id, from Spark's checkpoint (written before the first batch, kept
        across restarts of the same checkpoint)."""
        metadata = self.spark_checkpoint / "metadata"
        try:
            return str(json.loads(metadata.read_text())["id"])
        except (OSError, ValueError, KeyError) as exc:
            why = f"cannot read the query id in {metadata}: {exc}"
            raise ScoringError(f"labels stream: {why}") from None


def stream_settings(learning: LearningConfig) -> LabelsStreamConfig:
    """The ``labels_stream:`` section, its DDL checked before Spark starts."""
    stream = learning.labels_stream
    if stream is None:
        raise ConfigError("learning config has no `labels_stream:` section; add one to stream")
    parse_ddl(stream.columns)
    return stream


def learn_stream(
    spark: SparkSession,
    job: JobConfig,
    learning: LearningConfig,
    *,
    available_now: bool = False,
    snapshot: bool = True,
    stop: threading.Event | None = None,
) -> LabelStreamResult:
    """Learn the landed label files until stopped (``stop`` set, SIGTERM/SIGINT: the batch in
    flight finishes first) or, with ``available_now``, until the files landed at start are
    learned."""
    stream = stream_settings(learning)
    if is_connect(spark):  # the handler's result and stop follow this process's handler
        raise ConfigError("learn-stream runs with a classic session only (no spark.remote)")
    handler = LabelBatchHandler(job, learning, Path(stream.checkpoint), snapshot)
    writer = _writer(spark, stream, handler, available_now)
    stop = stop or threading.Event()
    with stop_on_signals(stop):
        query = start_query(writer)
        finish = partial(_finish_batch, handler)
        handler.result.stopped_by_signal = wait_until_stopped(query, stop, finish, "labels stream")
    return handler.result


def _writer(
    spark: SparkSession,
    stream: LabelsStreamConfig,
    handler: LabelBatchHandler,
    available_now: bool,
) -> DataStreamWriter:
    frame = (
        spark.readStream.format(stream.format)
        .schema(stream.columns)
        .option("maxFilesPerTrigger", stream.max_files_per_trigger)
        .load(stream.path)
    )
    writer = (
        frame.writeStream.queryName("batch-serving-labels")
        .foreachBatch(handler)
        .option("checkpointLocation", stream.checkpoint)
    )
    if available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=f"{stream.trigger_seconds} seconds")


def _finish_batch(handler: LabelBatchHandler, timeout_s: float = 600) -> None:
    """Let the batch in flight finish learning and Spark commit it before the query is
    stopped (a batch Spark starts after this is cut short and replayed on restart)."""
    deadline = time.monotonic() + timeout_s
    while handler.busy.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    last = handler.result.last_batch
    commit = handler.spark_checkpoint / "commits" / str(last)
    while last is not None and not commit.exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # and Spark commit it, so a restart does not replay it
