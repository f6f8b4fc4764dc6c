"""A stream job with ``windows:``: the model reads windowed features the stream computes, and
every scored event's score equals the model on the offline training set's row for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from sklearn.linear_model import LogisticRegression
from windows_landing import COLUMNS, FLUSH_CARD, land
from windows_oracle import WINDOWS, spec

from batch_serving.config import JobConfig
from batch_serving.features.offline import training_set
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.runner import run_stream

FEATURES = ["amount_count_10m", "amount_sum_10m", "amount_count_1h", "merchant_distinct_count_30m"]


def read_table(folder: Path) -> pd.DataFrame:
    files = sorted(folder.rglob("batch-*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def test_stream_scores_events_with_their_point_in_time_features(
    spark: SparkSession,
    register: Callable[..., tuple[str, int]],
    job_config: Callable[..., JobConfig],
    tmp_path: Path,
) -> None:
    landed = land(tmp_path / "landing")
    offline = training_set(landed.accepted, spec())
    label = (offline["amount_count_10m"] >= 2).astype(int)
    model = LogisticRegression(max_iter=500).fit(offline[FEATURES], label)
    name, _ = register(model, offline[FEATURES].head(20))
    stream = {
        "path": str(tmp_path / "landing"),
        "format": "json",
        "columns": COLUMNS,
        "event_time_column": "ts",
        "max_files_per_trigger": 1,
        "trigger_seconds": 0,
    }
    cfg = job_config(name, entity_columns=["event_id", "card_id"], stream=stream, windows=WINDOWS)

    result = run_stream(spark, cfg, available_now=True)

    layout = StreamLayout.for_job(cfg)
    scored = read_table(layout.predictions.table_dir)
    scored = scored[scored["card_id"] != FLUSH_CARD].sort_values("event_id")
    assert result.quarantined_rows == 0
    assert scored["event_id"].tolist() == sorted(landed.accepted["event_id"])  # late ones: not
    expected = offline.assign(want=model.predict_proba(offline[FEATURES])[:, 1])
    joined = scored.merge(expected[["event_id", "want"]], on="event_id", validate="1:1")
    np.testing.assert_allclose(joined["score"], joined["want"], rtol=1e-12)
    assert joined["score"].std() > 0.05  # the features move the score
    assert late_events_total(layout.metrics_file) == len(landed.late) == 12


def late_events_total(metrics_file: Path, timeout_s: float = 20) -> int:
    """The late-events counter of the stream's metrics file (progress events are
    asynchronous: wait for the last one)."""
    deadline = time.monotonic() + timeout_s
    value = -1
    while time.monotonic() < deadline:
        text = metrics_file.read_text() if metrics_file.exists() else ""
        lines = [ln for ln in text.splitlines() if ln.startswith("batch_serving_stream_late_")]
        value = int(float(lines[0].rsplit(" ", 1)[1])) if lines else -1
        if value == 12:
            break
        time.sleep(0.2)
    return value
