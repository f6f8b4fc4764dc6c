"""What the windowed-stream benchmark reads out of Spark's query progress reports: the state's
size and the checkpoint's cost per micro-batch. Pure functions over the progress JSON (as
``StreamingQueryProgress.json`` gives it), so they are tested without a JVM."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Progress = dict[str, Any]


@dataclass(frozen=True)
class StateSize:
    """The state store after one micro-batch, summed over the query's stateful operators."""

    rows: int  # numRowsTotal: rows in the state (pending events, history, timers)
    memory_bytes: int  # memoryUsedBytes: RocksDB's memory (block cache, memtables)
    sst_bytes: int  # customMetrics rocksdbSstFileSize: the state's files on disk

    @classmethod
    def of(cls, progress: Progress) -> StateSize:
        operators = progress.get("stateOperators") or []
        return cls(
            rows=sum(int(op.get("numRowsTotal", 0)) for op in operators),
            memory_bytes=sum(int(op.get("memoryUsedBytes", 0)) for op in operators),
            sst_bytes=sum(
                int(value)
                for op in operators
                for name, value in (op.get("customMetrics") or {}).items()
                if name == "rocksdbSstFileSize"
            ),
        )


@dataclass(frozen=True)
class CheckpointTimes:
    """Per micro-batch, in ms: ``log`` = offsets written ahead (walCommit) + the commit log
    (commitOffsets); ``state`` = the state store's commit (stateOperators' commitTimeMs)."""

    batches: int
    log_median_ms: float
    log_max_ms: float
    state_median_ms: float
    state_max_ms: float

    @classmethod
    def over(cls, reports: Sequence[Progress]) -> CheckpointTimes:
        log = [_log_ms(p) for p in reports]
        state = [_state_commit_ms(p) for p in reports]
        return cls(
            batches=len(reports),
            log_median_ms=_median(log),
            log_max_ms=float(max(log, default=float("nan"))),
            state_median_ms=_median(state),
            state_max_ms=float(max(state, default=float("nan"))),
        )


def late_rows(reports: Iterable[Progress]) -> int:
    """Events Spark dropped behind the watermark over these reports."""
    return sum(
        int(op.get("numRowsDroppedByWatermark", 0))
        for p in reports
        for op in (p.get("stateOperators") or [])
    )


def data_batches(reports: Iterable[Progress]) -> list[Progress]:
    """The reports of micro-batches that ran (a trigger with nothing to do reports too, with
    no ``walCommit``: it wrote nothing, so it has no checkpoint cost to count)."""
    return [p for p in reports if "walCommit" in (p.get("durationMs") or {})]


def _log_ms(progress: Progress) -> float:
    durations = progress.get("durationMs") or {}
    return float(durations.get("walCommit", 0) + durations.get("commitOffsets", 0))


def _state_commit_ms(progress: Progress) -> float:
    return float(sum(op.get("commitTimeMs", 0) for op in progress.get("stateOperators") or []))


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")
