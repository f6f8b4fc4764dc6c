"""What the driver knows of the stream's batches: the seam between the query's
``foreachBatch`` handler and ``run_stream`` (graceful stop, the result's counts, progress).

Classic session: Spark calls the handler in this process, so ``HandlerProgress`` reads the
batch in flight and the counts from the handler and its ``StreamMetrics``, and Spark's progress
events reach ``metrics.prom`` through a listener.

Spark Connect: the server runs ``foreachBatch`` on a pickled copy of the handler in a Python
process of its own; nothing that copy holds comes back here. ``MarkerProgress`` reads what the
batches wrote instead: the checkpoint's offsets and commits (the batch in flight) and the table
sink's batch markers (each names the stream run that wrote it and what it held). The copy's
``StreamMetrics`` writes ``metrics.prom`` from the server's process (batch counters and latency);
no listener is added here, so the file has no rate gauges of Spark's progress events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pyspark.sql import SparkSession

from batch_serving.spark.connect import is_connect
from batch_serving.stream.batches import BatchHandler
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.metrics import ProgressListener, StreamMetrics


@dataclass(frozen=True)
class StreamCounts:
    """What this stream run's batches did (replayed batches skipped apart)."""

    batches: int
    skipped_batches: int
    scored_rows: int
    quarantined_rows: int
    poison_files: int


class StreamProgress(Protocol):
    """How ``run_stream`` follows the query's batches."""

    def attach(self, spark: SparkSession, query_name: str) -> None:
        """Start following the query (before it starts)."""
        ...

    def detach(self, spark: SparkSession) -> None:
        """Stop following it (the query has ended)."""
        ...

    def in_flight(self) -> int | None:
        """The batch a graceful stop lets commit first, if any."""
        ...

    def finished(self, batch_id: int) -> bool:
        """Batch ``batch_id`` is committed by the sink."""
        ...

    def counts(self) -> StreamCounts:
        """This run's counts, once the query has ended."""
        ...


def progress_for(
    spark: SparkSession, handler: BatchHandler, metrics: StreamMetrics
) -> StreamProgress:
    """Classic: the handler itself; Connect: the checkpoint and the batch markers."""
    if is_connect(spark):
        return MarkerProgress(handler.layout, handler.stream_run_id)
    return HandlerProgress(handler, metrics)


@dataclass
class HandlerProgress:
    """The handler runs in this process: its batch in flight and its metrics are here."""

    handler: BatchHandler
    metrics: StreamMetrics
    _listener: ProgressListener | None = None

    def attach(self, spark: SparkSession, query_name: str) -> None:
        self._listener = ProgressListener(self.metrics, query_name)
        spark.streams.addListener(self._listener)

    def detach(self, spark: SparkSession) -> None:
        if self._listener is not None:
            spark.streams.removeListener(self._listener)

    def in_flight(self) -> int | None:
        active = self.handler.active
        if active is not None:
            return active
        return planned_batch(self.handler.layout.checkpoint, self.finished)

    def finished(self, batch_id: int) -> bool:
        return self.handler.finished(batch_id)

    def counts(self) -> StreamCounts:
        m = self.metrics
        return StreamCounts(m.batches, m.skipped_batches, m.scored, m.quarantined, m.poison_files)


@dataclass
class MarkerProgress:
    """The handler runs in the Connect server's Python process: follow its batch markers
    (``_stream/<model>/batches/<id>.json``, written last by the table sink) and the checkpoint.

    ``first``: the first batch id this run can write (the checkpoint's newest commit + 1 when
    the run starts); the markers from there on with this run's id are its batches, and a batch
    Spark committed from there on under another run's marker was a replay, skipped."""

    layout: StreamLayout
    stream_run_id: str
    first: int = -1

    def attach(self, spark: SparkSession, query_name: str) -> None:
        newest = _newest(self.layout.checkpoint / "commits")
        self.first = 0 if newest is None else newest + 1

    def detach(self, spark: SparkSession) -> None:
        pass

    def in_flight(self) -> int | None:
        return planned_batch(self.layout.checkpoint, self.finished)

    def finished(self, batch_id: int) -> bool:
        return self.layout.marker(batch_id).exists()

    def counts(self) -> StreamCounts:
        ours: list[dict[str, Any]] = []
        others: set[int] = set()
        for batch_id in self.layout.committed_batches():
            if batch_id < self.first:
                continue
            record = json.loads(self.layout.marker(batch_id).read_text())
            if record.get("stream_run_id") == self.stream_run_id:
                ours.append(record)
            else:
                others.add(batch_id)
        commits = self.layout.checkpoint / "commits"
        skipped = sum(1 for b in others if (commits / str(b)).exists())
        return StreamCounts(
            len(ours),
            skipped,
            sum(int(r["scored_rows"]) for r in ours),
            sum(int(r["quarantined_rows"]) for r in ours),
            sum(len(r.get("poison_files") or {}) for r in ours),
        )


def planned_batch(checkpoint: Path, finished: Callable[[int], bool]) -> int | None:
    """The newest batch Spark has planned (offsets logged) but neither Spark nor the sink
    (``finished``) has committed, if any."""
    newest = _newest(checkpoint / "offsets")
    if newest is None:
        return None
    done = (checkpoint / "commits" / str(newest)).exists()
    return None if done or finished(newest) else newest


def _newest(folder: Path) -> int | None:
    ids = [int(p.name) for p in folder.glob("[0-9]*")] if folder.is_dir() else []
    return max(ids) if ids else None
