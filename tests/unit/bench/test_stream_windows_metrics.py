"""The windowed-stream benchmark's readings of Spark's progress reports (state size,
checkpoint cost, late events), on progress dicts shaped like ``StreamingQueryProgress.json``."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from stream_windows_metrics import (
    CheckpointTimes,
    StateSize,
    data_batches,
    late_rows,
)


def report(
    wal: int | None, commit: int, state_commits: list[int], late: int = 0
) -> dict[str, object]:
    durations = {"addBatch": 900, "commitOffsets": commit, "triggerExecution": 1000}
    if wal is not None:
        durations["walCommit"] = wal
    operators = [
        {
            "operatorName": "transformWithStateInPandasExec",
            "numRowsTotal": 1000 * (i + 1),
            "memoryUsedBytes": 5_000 + i,
            "commitTimeMs": ms,
            "numRowsDroppedByWatermark": late,
            "customMetrics": {"rocksdbSstFileSize": 70_000 + i, "rocksdbCommitFlushLatency": 9},
        }
        for i, ms in enumerate(state_commits)
    ]
    return {"batchId": 1, "durationMs": durations, "stateOperators": operators}


def test_state_size_sums_the_operators() -> None:
    size = StateSize.of(report(10, 20, [3, 4]))
    assert size == StateSize(rows=3000, memory_bytes=10_001, sst_bytes=140_001)


def test_state_size_of_a_stateless_report_is_zero() -> None:
    assert StateSize.of({"durationMs": {}}) == StateSize(0, 0, 0)


def test_checkpoint_times_median_and_max_per_batch() -> None:
    reports = [report(10, 5, [30]), report(20, 10, [50, 10]), report(100, 1, [200])]
    times = CheckpointTimes.over(reports)
    assert times.batches == 3
    assert (times.log_median_ms, times.log_max_ms) == (30.0, 101.0)  # 15, 30, 101
    assert (times.state_median_ms, times.state_max_ms) == (60.0, 200.0)  # 30, 60, 200


def test_checkpoint_times_of_no_batch_are_nan() -> None:
    times = CheckpointTimes.over([])
    assert times.batches == 0 and math.isnan(times.log_median_ms) and math.isnan(times.state_max_ms)


def test_idle_triggers_are_not_batches_and_late_rows_are_summed() -> None:
    ran, idle = report(10, 5, [30], late=2), report(None, 0, [0], late=1)
    assert data_batches([ran, idle, ran]) == [ran, ran]
    assert late_rows([ran, idle]) == 3
