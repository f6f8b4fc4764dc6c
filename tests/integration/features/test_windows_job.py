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
from windows_oracle import WINDOWS, brute_force, spec

from batch_serving.config import JobConfig
from batch_serving.features.offline import to_micros, training_set
from batch_serving.features.online import connect, features_as_of
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.runner import run_stream
from batch_serving.stream.windowed import online_prefix

FEATURES = ["amount_count_10m", "amount_sum_10m", "amount_count_1h", "merchant_distinct_count_30m"]


def read_table(folder: Path) -> pd.DataFrame:
    files = sorted(folder.rglob("batch-*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def test_stream_scores_events_with_their_point_in_time_features(
    spark: SparkSession,
    register: Callable[..., tuple[str, int]],
    job_config: Callable[..., JobConfig],
    tmp_path: Path,
    redis_url: str,
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
    windows = {**WINDOWS, "redis_url": redis_url}
    cfg = job_config(name, entity_columns=["event_id", "card_id"], stream=stream, windows=windows)

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
    # the online store: each card's features after its newest event equal brute force
    client, s = connect(redis_url), spec()
    for card, own in landed.accepted.groupby("card_id"):
        as_of = int(to_micros(own["ts"]).max()) + 60_000_000
        got = features_as_of(client, online_prefix(cfg), s, card, as_of)
        query = pd.DataFrame(
            {"event_id": [-1], "card_id": [card], "ts": [pd.Timestamp(as_of, unit="us")]}
        )
        want = brute_force(landed.accepted, query, s).iloc[0]
        assert got == {n: None if pd.isna(want[n]) else want[n] for n in s.names}


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
