"""The stream's ``metrics.prom``: latency quantiles over a sliding window of batches (no JVM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from batch_serving.stream.metrics import LATENCY_WINDOW_BATCHES, BatchStats, StreamMetrics


def gauge(prom: str, name: str) -> float:
    line = next(x for x in prom.splitlines() if x.startswith(f"batch_serving_stream_{name}{{"))
    return float(line.rsplit(" ", 1)[1])


def test_latency_quantiles_are_over_the_events_of_the_last_batches(tmp_path: Path) -> None:
    metrics = StreamMetrics("fraud", tmp_path / "metrics.prom")
    # each batch's events share one landing time, as one landed file's do
    for batch_id, age in enumerate([1.0] * 90 + [5.0] * 9 + [9.0]):
        metrics.record_batch(BatchStats(batch_id, 1, 0, 0, 0.1, np.array([age])))
    prom = metrics.path.read_text()
    # the window: the last 20 batches' events: 10 of 1 s, 9 of 5 s, one of 9 s
    assert LATENCY_WINDOW_BATCHES == 20
    assert gauge(prom, "latency_window_events") == 20
    assert gauge(prom, "latency_p50_s") == 3.0  # between the 10th (1 s) and 11th (5 s)
    assert gauge(prom, "latency_p99_s") == 8.24  # 5 s + 0.81 of the way to 9 s
    assert gauge(prom, "latency_max_s") == 9.0

    # a batch with many events adds all of them; skipped batches and empty ones add none
    metrics.record_batch(BatchStats(100, 0, 0, 0, 0.0, skipped=True))
    metrics.record_batch(BatchStats(101, 0, 0, 0, 0.0, np.empty(0)))
    metrics.record_batch(BatchStats(102, 400, 0, 0, 0.2, np.linspace(0.0, 4.0, 401)[1:]))
    prom = metrics.path.read_text()
    assert gauge(prom, "latency_window_events") == 19 + 400  # the oldest batch slid out
    assert gauge(prom, "latency_max_s") == 9.0
    assert gauge(prom, "latency_p50_s") == 2.01


def test_a_batch_record_keeps_its_own_quantiles() -> None:
    stats = BatchStats(3, 100, 0, 0, 0.1, np.arange(1, 101, dtype=float) / 10)
    assert stats.latency_record() == {
        "latency_p50_s": 5.05,
        "latency_p99_s": 9.901,
        "latency_max_s": 10.0,
    }
    assert BatchStats(4, 0, 0, 0, 0.0).latency_record()["latency_p99_s"] is None
