"""Stream progress: one log line per micro-batch and a Prometheus text file.

The sink reports what it wrote (rows, each event's end-to-end latency); Spark's progress
events add the input and processing rates and the batch duration. ``metrics.prom`` is
rewritten atomically after each, in the text format node_exporter's textfile collector (or
any scraper) reads.

Latency quantiles (``latency_p50_s``, ``latency_p99_s``, ``latency_max_s``) are over a
sliding window: every event of the last ``LATENCY_WINDOW_BATCHES`` committed batches
(``latency_window_events`` says how many events that is). One batch alone is no
distribution: its events often share one landing time, so p50, p99 and max would be equal.
The log line and the batch marker keep each batch's own quantiles.

A cascade's evidence (``CascadeTally``): per stage, the rows it saw, answered, quarantined
and left open (its band), and with ``cascade.check_sample`` each earlier stage's agreement with
the last stage on the checked rows; one log line per batch and one since the stream started,
the batch's in its marker, the totals in ``metrics.prom``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql.streaming import StreamingQueryListener

from batch_serving.scoring.cascade_check import EvidenceCounts, StageEvidence, evidence_of
from batch_serving.scoring.plan import ScoringPlan

log = logging.getLogger(__name__)
PREFIX = "batch_serving_stream"
LATENCY_WINDOW_BATCHES = 20


@dataclass
class BatchStats:
    """What the sink wrote for one micro-batch; ``ages``: each event's seconds from its
    event time to the batch's commit."""

    batch_id: int
    scored: int
    quarantined: int
    poison_files: int
    write_seconds: float
    ages: np.ndarray = field(default_factory=lambda: np.empty(0))
    skipped: bool = False
    cascade: EvidenceCounts | None = None  # a cascade's counts in this batch
    steps: dict[str, float] = field(default_factory=dict)  # milliseconds per step of the batch

    def latency_record(self) -> dict[str, float | None]:
        """This batch's own quantiles (the marker's and the log line's)."""
        return dict(zip(LATENCY_KEYS, quantiles(self.ages), strict=True))


LATENCY_KEYS = ("latency_p50_s", "latency_p99_s", "latency_max_s")


def quantiles(ages: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """p50, p99 and max of ``ages`` (None when empty), rounded to milliseconds."""
    if not len(ages):
        return None, None, None
    p50, p99 = np.percentile(ages, [50, 99])
    return round(float(p50), 3), round(float(p99), 3), round(float(ages.max()), 3)


@dataclass
class CascadeTally:
    """A stream's cascade evidence: each batch's, and the sum since the process started."""

    plan: ScoringPlan
    total: EvidenceCounts = field(default_factory=EvidenceCounts)

    def evidence(self, counts: EvidenceCounts) -> list[StageEvidence]:
        return evidence_of(self.plan, counts)

    def add(self, counts: EvidenceCounts) -> None:
        self.total = self.total.merge(counts)


def evidence_record(stages: list[StageEvidence]) -> list[dict[str, object]]:
    """Per stage, for the batch marker: ``StageEvidence`` plus its band and agreement."""
    return [s.to_dict() | {"band": s.band, "agreement": s.agreement} for s in stages]


def evidence_line(stages: list[StageEvidence]) -> str:
    """One line: per stage ``saw/answered/band/quarantined``, then each check."""
    parts = [
        f"{s.member} saw {s.seen}, answered {s.answered}"
        + (f", band {s.band}" if s.answer_if else "")
        + (f", quarantined {s.quarantined}" if s.quarantined else "")
        for s in stages
    ]
    last = stages[-1].member if stages else ""
    checks = [f"check {s.member} vs {last} on {_check_text(s)}" for s in stages if s.checked]
    return "; ".join(parts + checks)


def _check_text(s: StageEvidence) -> str:
    diff = "" if s.mean_abs_diff is None else f", mean |score diff| {s.mean_abs_diff:.4f}"
    if s.flips is None or s.agreement is None:
        return f"{s.checked}: no {s.decision or 'decision'} to compare{diff}"
    return f"{s.checked}: {s.decision} flips {s.flips} (agreement {s.agreement:.1%}){diff}"


@dataclass
class StreamMetrics:
    """Counters since this process started, and the last batch's gauges."""

    model: str
    path: Path
    cascade: CascadeTally | None = None
    batches: int = 0
    skipped_batches: int = 0
    scored: int = 0
    quarantined: int = 0
    poison_files: int = 0
    late_events: int = 0  # windowed features: events behind the watermark, dropped by Spark
    gauges: dict[str, float] = field(default_factory=dict)
    window: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW_BATCHES))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (Spark Connect runs the stream's handler on a copy): without the lock."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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
                self._slide(stats.ages)
                if self.cascade is not None and stats.cascade is not None:
                    self.cascade.add(stats.cascade)
            self._write()
        if not stats.skipped:
            log.info(
                "batch %d: %d scored, %d quarantined, %d poison files, written in %.2fs, "
                "end-to-end latency p50 %s p99 %s max %s; steps ms %s",
                stats.batch_id,
                stats.scored,
                stats.quarantined,
                stats.poison_files,
                stats.write_seconds,
                *(_secs(v) for v in quantiles(stats.ages)),
                _steps_text(stats.steps),
            )
        if not stats.skipped and self.cascade is not None and stats.cascade is not None:
            tally = self.cascade
            log.info(
                "batch %d cascade: %s", stats.batch_id, evidence_line(tally.evidence(stats.cascade))
            )
            log.info("cascade since start: %s", evidence_line(tally.evidence(tally.total)))

    def _slide(self, ages: np.ndarray) -> None:
        """Add a batch's event latencies to the window; the gauges are its quantiles."""
        if not len(ages):
            return
        self.window.append(ages)
        events = np.concatenate(self.window)
        for key, value in zip(LATENCY_KEYS, quantiles(events), strict=True):
            if value is not None:
                self.gauges[key] = value
        self.gauges["latency_window_events"] = len(events)

    def record_progress(self, progress: Any) -> None:
        """A Spark ``StreamingQueryProgress``: rates and the batch's duration."""
        with self._lock:
            self.gauges["input_rows_per_second"] = float(progress.inputRowsPerSecond or 0)
            self.gauges["processed_rows_per_second"] = float(progress.processedRowsPerSecond or 0)
            self.gauges["batch_duration_seconds"] = progress.batchDuration / 1000.0
            late = sum(op.numRowsDroppedByWatermark for op in progress.stateOperators or [])
            self.late_events += late
            self._write()
        if late:
            log.warning(
                "batch %d: %d late events dropped (behind the watermark)", progress.batchId, late
            )
        if progress.numInputRows:
            log.info(
                "progress batch %d: %d rows, input %.1f rows/s, processed %.1f rows/s, "
                "batch duration %.2fs; Spark ms %s",
                progress.batchId,
                progress.numInputRows,
                progress.inputRowsPerSecond or 0,
                progress.processedRowsPerSecond or 0,
                progress.batchDuration / 1000.0,
                _steps_text(progress.durationMs or {}),
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
            f"# TYPE {PREFIX}_late_events_total counter",
            f"{PREFIX}_late_events_total{label} {self.late_events}",
        ]
        for key, value in sorted(self.gauges.items()):
            lines += [f"# TYPE {PREFIX}_{key} gauge", f"{PREFIX}_{key}{label} {value:.6g}"]
        if self.cascade is not None:
            lines += cascade_lines(self.model, self.cascade.evidence(self.cascade.total))
        return "\n".join(lines) + "\n"

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.render())
        os.replace(tmp, self.path)


def cascade_lines(model: str, stages: list[StageEvidence]) -> list[str]:
    """The cascade's totals since the stream started: rows per stage and outcome (``seen``,
    ``answered``, ``band``: left open for the next stage, ``quarantined``), the check's rows
    and flips per answering stage (counters), its agreement and mean |score diff| (gauges)."""
    name = f"{PREFIX}_cascade"
    lines = [f"# TYPE {name}_rows_total counter"]
    for s in stages:
        for outcome in ("seen", "answered", "band", "quarantined"):
            labels = f'model="{model}",stage="{s.member}",outcome="{outcome}"'
            lines.append(f"{name}_rows_total{{{labels}}} {getattr(s, outcome)}")
    checked = [s for s in stages if s.checked]
    for metric, kind, attribute in _CHECK_SERIES:
        values = [(s.member, getattr(s, attribute)) for s in checked]
        present = [(member, v) for member, v in values if v is not None]
        if present:
            lines.append(f"# TYPE {name}_{metric} {kind}")
            lines += [
                f'{name}_{metric}{{model="{model}",stage="{member}"}} {_number(v)}'
                for member, v in present
            ]
    return lines


_CHECK_SERIES = (
    ("check_rows_total", "counter", "checked"),
    ("check_flips_total", "counter", "flips"),
    ("check_agreement", "gauge", "agreement"),
    ("check_mean_abs_score_diff", "gauge", "mean_abs_diff"),
)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


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


def _steps_text(steps: dict[str, Any]) -> str:
    """``name=ms`` pairs in the order given (Spark's ``durationMs`` or the batch's steps)."""
    return " ".join(f"{k}={v:.0f}" for k, v in steps.items()) or "-"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"
