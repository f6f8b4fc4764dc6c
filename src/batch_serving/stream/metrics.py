"""Stream progress: one log line per micro-batch and a Prometheus text file.

The sink reports what it wrote (rows, end-to-end latency); Spark's progress events add the
input and processing rates and the batch duration. ``metrics.prom`` is rewritten atomically
after each, in the text format node_exporter's textfile collector (or any scraper) reads.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

log = logging.getLogger(__name__)
PREFIX = "batch_serving_stream"


@dataclass
class BatchStats:
    """What the sink wrote for one micro-batch."""

    batch_id: int
    scored: int
    quarantined: int
    poison_files: int
    write_seconds: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    latency_max_s: float | None
    skipped: bool = False


@dataclass
class StreamMetrics:
    """Counters since this process started, and the last batch's gauges."""

    model: str
    path: Path
    batches: int = 0
    skipped_batches: int = 0
    scored: int = 0
    quarantined: int = 0
    poison_files: int = 0
    gauges: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record_batch(self, stats: BatchStats) -> None:
        with self._lock:
            if stats.skipped:
                self.skipped_batches += 1
            else:
                self.batches += 1
                self.scored += stats.scored
                self.quarantined += stats.quarantined
                self.poison_files += stats.poison_files
                self.gauges["last_batch_id"] = stats.batch_id
                self.gauges["write_seconds"] = stats.write_seconds
                for key in ("latency_p50_s", "latency_p99_s", "latency_max_s"):
                    value = getattr(stats, key)
                    if value is not None:
                        self.gauges[key] = value
            self._write()
        if not stats.skipped:
            log.info(
                "batch %d: %d scored, %d quarantined, %d poison files, written in %.2fs, "
                "end-to-end latency p50 %s p99 %s max %s",
                stats.batch_id,
                stats.scored,
                stats.quarantined,
                stats.poison_files,
                stats.write_seconds,
                _secs(stats.latency_p50_s),
                _secs(stats.latency_p99_s),
                _secs(stats.latency_max_s),
            )

    def record_progress(self, progress: Any) -> None:
        """A Spark ``StreamingQueryProgress``: rates and the batch's duration."""
        with self._lock:
            self.gauges["input_rows_per_second"] = float(progress.inputRowsPerSecond or 0)
            self.gauges["processed_rows_per_second"] = float(progress.processedRowsPerSecond or 0)
            self.gauges["batch_duration_seconds"] = progress.batchDuration / 1000.0
            self._write()
        if progress.numInputRows:
            log.info(
                "progress batch %d: %d rows, input %.1f rows/s, processed %.1f rows/s, "
                "batch duration %.2fs",
                progress.batchId,
                progress.numInputRows,
                progress.inputRowsPerSecond or 0,
                progress.processedRowsPerSecond or 0,
                progress.batchDuration / 1000.0,
            )

    def render(self) -> str:
        label = f'{{model="{self.model}"}}'
        lines = [
            f"# TYPE {PREFIX}_batches_total counter",
            f"{PREFIX}_batches_total{label} {self.batches}",
            f"# TYPE {PREFIX}_replayed_batches_skipped_total counter",
            f"{PREFIX}_replayed_batches_skipped_total{label} {self.skipped_batches}",
            f"# TYPE {PREFIX}_rows_total counter",
            f'{PREFIX}_rows_total{{model="{self.model}",outcome="scored"}} {self.scored}',
            f'{PREFIX}_rows_total{{model="{self.model}",outcome="quarantined"}} {self.quarantined}',
            f"# TYPE {PREFIX}_poison_files_total counter",
            f"{PREFIX}_poison_files_total{label} {self.poison_files}",
        ]
        for key, value in sorted(self.gauges.items()):
            lines += [f"# TYPE {PREFIX}_{key} gauge", f"{PREFIX}_{key}{label} {value:.6g}"]
        return "\n".join(lines) + "\n"

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.render())
        os.replace(tmp, self.path)


class ProgressListener(StreamingQueryListener):
    """Forwards Spark's progress events of one query to ``StreamMetrics``."""

    def __init__(self, metrics: StreamMetrics, query_name: str) -> None:
        self.metrics, self.query_name = metrics, query_name

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        if event.progress.name == self.query_name:
            self.metrics.record_progress(event.progress)

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"
