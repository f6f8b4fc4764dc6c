"""Online == offline through the command line: a windowed stream scores a landed history (with
late events), then ``batch-serving training-set --check`` (a real subprocess, no Spark) builds
the training set from the same landing files; its rows equal the features each scored row
carries, and a tampered stream row fails the check, named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pyspark.sql import SparkSession
from sklearn.linear_model import LogisticRegression
from windows_landing import COLUMNS, FLUSH_CARD, land
from windows_oracle import WINDOWS, spec

import batch_serving
from batch_serving.config import JobConfig
from batch_serving.features.offline import feature_mismatches, training_set
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.runner import run_stream

FEATURES = ["amount_count_10m", "amount_sum_10m", "amount_count_1h"]
SRC = Path(batch_serving.__file__).resolve().parents[1]


def training_set_cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "batch_serving.cli", "training-set", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_training_set_rows_equal_the_streams_and_a_tampered_row_fails(
    spark: SparkSession,
    register: Callable[..., tuple[str, int]],
    job_config: Callable[..., JobConfig],
    tmp_path: Path,
) -> None:
    landed = land(tmp_path / "landing")
    offline = training_set(landed.accepted, spec())
    model = LogisticRegression(max_iter=300).fit(
        offline[FEATURES], (offline["amount_count_10m"] >= 2).astype(int)
    )
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
    run_stream(spark, cfg, available_now=True)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))

    layout = StreamLayout.for_job(cfg)
    files = layout.committed_files(layout.predictions)
    scored = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    assert set(spec().names) <= set(scored.columns)  # each row carries its features
    out = tmp_path / "train.parquet"
    args = ["--config", job, "--events", tmp_path / "landing", "--output", out, "--check"]
    done = training_set_cli(*args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert record["check"]["rows"] == len(scored)
    assert record["left_out_events"] >= len(landed.late) == 12  # late (and pending flush) ones
    train = pq.read_table(out).to_pandas()
    assert sorted(train["event_id"]) == sorted(scored["event_id"])
    assert not set(train["event_id"]) & set(landed.late["event_id"])
    assert feature_mismatches(scored, train, spec(), ["event_id"]).empty
    assert train.loc[train["card_id"] != FLUSH_CARD, "amount_count_1h"].max() > 5

    busy = scored[scored["amount_count_10m"] > 0].sort_values("event_id").iloc[0]
    victim = next(f for f in files if busy["event_id"] in pq.read_table(f)["event_id"].to_pylist())
    rows = pq.read_table(victim).to_pandas()
    rows.loc[rows["event_id"] == busy["event_id"], "amount_count_10m"] += 1
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), victim)
    out.unlink()
    failed = training_set_cli(*args)
    assert failed.returncode == 12, failed.stderr[-3000:]
    count = int(busy["amount_count_10m"])
    assert f"'event_id': {busy['event_id']}" in failed.stderr
    assert f"amount_count_10m is {count + 1} in the stream, {count} offline" in failed.stderr
    assert not out.exists()
