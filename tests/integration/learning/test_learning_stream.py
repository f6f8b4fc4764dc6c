"""Labels from a stream: three label files land, a Structured Streaming query reads them one
file per micro-batch, matches each batch point in time to Spark-written predictions and
features, and learns it. Every matched label is learned exactly once, the model equals a learner
fed the same labels in order, and neither a replayed batch (its commit lost) nor a kill -9 of
the command mid-batch followed by a restart changes that."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import RUN_DATE, Scored, customers
from mlflow import MlflowClient

from batch_serving import sample_data
from batch_serving.learning.checkpoint import load_checkpoint
from batch_serving.learning.labels_stream import learn_stream
from batch_serving.learning.learner import OnlineLearner
from batch_serving.learning.settings import load_learning_config

NUMERIC = list(sample_data.NUMERIC)
ENTITY = sample_data.ENTITY
DAY1, DAY2 = RUN_DATE - dt.timedelta(days=1), RUN_DATE
DDL = f"{ENTITY} BIGINT, label INT, event_time TIMESTAMP"
UNMATCHED = 3  # labels of entities never scored
ALIAS = "stream-challenger"  # the session's scored model: no alias another test reads


@dataclass(frozen=True)
class Landed:
    """The label files as landed, and per file the matched rows the learner must see."""

    files: list[pd.DataFrame]
    learned: list[pd.DataFrame]

    @property
    def matched(self) -> int:
        return sum(len(f) for f in self.learned)


def outcomes(day: dt.date, ids: np.ndarray, hour: int, seed: int) -> pd.DataFrame:
    """0/1 outcomes of ``ids`` on ``day``, one second apart from ``hour`` (UTC), with the
    features their prediction was made from (the day's input rows)."""
    features = customers(500, seed=10 if day == DAY1 else 11).set_index(ENTITY).loc[ids]
    times = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=hour)
    frame = features.reset_index().assign(
        label=np.random.default_rng(seed).integers(0, 2, len(ids)),
        event_time=times + pd.to_timedelta(np.arange(len(ids)), unit="s"),
    )
    return frame


def land_three(landing: Path) -> Landed:
    """File 1: DAY1's first outcomes. File 2: the rest of DAY1 and DAY2's first (a batch over
    two days). File 3: the rest of DAY2 and outcomes of entities never scored."""
    ids = np.arange(500)
    parts = [
        [outcomes(DAY1, ids[:150], 1, 1)],
        [outcomes(DAY1, ids[150:], 8, 2), outcomes(DAY2, ids[:100], 1, 3)],
        [outcomes(DAY2, ids[100:], 6, 4)],
    ]
    unscored = pd.DataFrame(
        {
            ENTITY: np.arange(10_000, 10_000 + UNMATCHED),
            "label": 1,
            "event_time": pd.Timestamp(DAY2, tz="UTC") + pd.Timedelta(hours=13),
        }
    )
    landing.mkdir(parents=True)
    files, learned = [], []
    for i, frames in enumerate(parts):
        rows = pd.concat(frames, ignore_index=True)
        labels = rows[[ENTITY, "label", "event_time"]]
        if i == 2:
            labels = pd.concat([labels, unscored], ignore_index=True)
        path = landing / f"labels-{i}.json"
        labels.sample(frac=1, random_state=i).to_json(
            path, orient="records", lines=True, date_format="iso"
        )
        os.utime(path, (1_000_000 + i, 1_000_000 + i))  # the file source's order
        files.append(labels)
        learned.append(rows.sort_values(["event_time", ENTITY]).reset_index(drop=True))
    return Landed(files, learned)


def expected_learner(landed: Landed, learning_rate: float) -> OnlineLearner:
    """A learner fed the matched labels in order, in-process (its scaler fixed by the first
    file, as the stream's is by its first batch)."""
    learner = OnlineLearner(tuple(NUMERIC), learning_rate=learning_rate)
    for rows in landed.learned:
        learner.learn(rows[NUMERIC].to_numpy(np.float64), rows["label"].to_numpy())
    return learner


def config_files(tmp_path: Path, scored: Scored) -> tuple[Path, Path]:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(scored.cfg.model_dump(mode="json")))
    learning = {
        "labels": {"path": str(tmp_path / "labels"), "prediction_time_column": "ds"},
        "learner": {"features": NUMERIC, "learning_rate": 0.05},
        "checkpoint": str(tmp_path / "learner" / "learner.pkl"),
        "challenger_alias": ALIAS,
        "labels_stream": {
            "path": str(tmp_path / "landing"),
            "columns": DDL,
            "checkpoint": str(tmp_path / "spark-checkpoint"),
            "trigger_seconds": 1,
        },
    }
    path = tmp_path / "learning.yaml"
    path.write_text(yaml.safe_dump(learning))
    return job, path


def assert_learned_once(checkpoint: Path, landed: Landed) -> None:
    state = load_checkpoint(checkpoint)
    assert state is not None
    assert state.learned == landed.matched == 1000
    expected = expected_learner(landed, 0.05)
    np.testing.assert_allclose(state.learner.model.coef_, expected.model.coef_, atol=1e-12)
    np.testing.assert_allclose(
        state.learner.model.intercept_, expected.model.intercept_, atol=1e-12
    )
    assert state.stream_batch is not None and state.stream_batch[1] == 2


def test_three_files_learned_once_and_a_replayed_batch_is_skipped(
    spark: Any, scored: Scored, tmp_path: Path
) -> None:
    _, learning_file = config_files(tmp_path, scored)
    landed = land_three(tmp_path / "landing")
    learning = load_learning_config(learning_file)

    result = learn_stream(spark, scored.cfg, learning, available_now=True, snapshot=False)

    assert (result.batches, result.replayed_batches) == (3, 0)
    assert result.labels == sum(len(f) for f in landed.files)
    assert (result.unmatched, result.without_features) == (UNMATCHED, 0)
    assert (result.learned, result.total_learned, result.already_learned) == (1000, 1000, 0)
    checkpoint = Path(learning.checkpoint)
    assert_learned_once(checkpoint, landed)

    # the learner recorded batch 2 but Spark lost its commit (a crash in between): Spark
    # replays batch 2 on restart, and the learner skips it
    for lost in ("2", ".2.crc"):
        (tmp_path / "spark-checkpoint" / "commits" / lost).unlink(missing_ok=True)
    again = learn_stream(spark, scored.cfg, learning, available_now=True)
    assert (again.batches, again.replayed_batches, again.learned) == (0, 1, 0)
    assert_learned_once(checkpoint, landed)


@pytest.mark.slow
def test_kill9_mid_batch_then_restart_learns_every_label_once(
    scored: Scored, tmp_path: Path
) -> None:
    job_file, learning_file = config_files(tmp_path, scored)
    landed = land_three(tmp_path / "landing")
    commits = tmp_path / "spark-checkpoint" / "commits"
    offsets = tmp_path / "spark-checkpoint" / "offsets"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = ["--config", str(job_file), "--learning", str(learning_file), "--no-snapshot"]

    def start(*extra: str) -> subprocess.Popen[bytes]:
        name = f"learn-{time.monotonic_ns()}"
        out, err = (tmp_path / f"{name}.out").open("wb"), (tmp_path / f"{name}.err").open("wb")
        command = [sys.executable, "-m", "batch_serving.cli", "learn-stream", *args, *extra]
        return subprocess.Popen(command, env=env, stdout=out, stderr=err, start_new_session=True)

    first = start()
    last = None
    try:
        deadline = time.monotonic() + 120
        while not ((commits / "0").exists() and (offsets / "1").exists()):
            assert first.poll() is None, "learn-stream exited early"
            assert time.monotonic() < deadline, "batch 1 never started"
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGKILL)  # batch 0 committed, batch 1 in flight
        first.wait(30)
        assert not (commits / "1").exists()
        state = load_checkpoint(tmp_path / "learner" / "learner.pkl")
        assert state is not None and state.learned < landed.matched

        last = start("--available-now", "--json")
        assert last.wait(120) == 0, sorted(tmp_path.glob("learn-*.err"))[-1].read_text()
    finally:
        for proc in (first, last):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    record = json.loads(sorted(tmp_path.glob("learn-*.out"))[-1].read_text())
    # Spark replays batch 1 (its learning is skipped if the learner had recorded it), then 2
    assert record["batches"] + record["replayed_batches"] == 2
    assert record["total_learned"] == landed.matched
    assert_learned_once(tmp_path / "learner" / "learner.pkl", landed)


def test_a_stop_finishes_the_batch_in_flight_and_a_restart_learns_the_rest(
    spark: Any, scored: Scored, tracking_uri: str, tmp_path: Path
) -> None:
    """A stop request (what SIGTERM sets) while the query runs on its trigger: the batch being
    learned finishes and is recorded; the next run learns the rest, each label once, and
    registers a snapshot after each batch that learned."""
    _, learning_file = config_files(tmp_path, scored)
    landed = land_three(tmp_path / "landing")
    learning = load_learning_config(learning_file)
    checkpoint = Path(learning.checkpoint)
    stop = threading.Event()

    def stop_after_first_batch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = load_checkpoint(checkpoint) if checkpoint.exists() else None
            if state is not None and state.stream_batch is not None:
                break
            time.sleep(0.05)
        stop.set()

    watcher = threading.Thread(target=stop_after_first_batch)
    watcher.start()
    first = learn_stream(spark, scored.cfg, learning, snapshot=False, stop=stop)
    watcher.join()

    assert first.stopped_by_signal and 1 <= first.batches < 3
    state = load_checkpoint(checkpoint)
    assert state is not None and state.stream_batch is not None
    assert state.stream_batch[1] == first.last_batch  # every batch it ran was recorded
    assert state.learned == first.learned < landed.matched

    rest = learn_stream(spark, scored.cfg, learning, available_now=True)
    assert first.batches + rest.batches == 3  # a batch learned then replayed counts once
    assert first.learned + rest.learned == landed.matched
    assert_learned_once(checkpoint, landed)
    assert len(rest.snapshots) == rest.batches  # each of its batches learned: one snapshot each
    client = MlflowClient(tracking_uri)
    challenger = client.get_model_version_by_alias(scored.cfg.model.name, ALIAS)
    assert int(challenger.version) == rest.snapshots[-1]
    assert challenger.tags["bs.labels_learned"] == str(landed.matched)
