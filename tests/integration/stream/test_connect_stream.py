"""The file-source stream as a Spark Connect client: the server runs each micro-batch
(``foreachBatch``) on a copy of the handler; the driver reads the result and follows a graceful
stop through the table sink's batch markers and the checkpoint.

Same outcomes as the classic twins (test_stream.py, test_stream_accounting.py): every landed
row scored once or quarantined, scores equal to the model called in-process, an unreadable
file reported as poison by name, the summary's counts those of the markers, a stop that lets
the batch in flight commit and a restart that scores only the rest.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import numpy as np
import pandas as pd
import pytest
from conftest import TEST_SPARK_CONF, customers, labelled
from test_stream import DDL, RULES, land, read_table

from batch_serving.config import JobConfig
from batch_serving.spark.connect import is_connect
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.runner import run_stream

cloudpickle.register_pickle_by_value(builders)
pytestmark = pytest.mark.connect  # a process of its own (see conftest.CONNECT_APART)


@pytest.fixture
def logreg(register: Callable[..., tuple[str, int]]) -> tuple[str, Any]:
    model, oracle = builders.logreg_pipeline(labelled(800))
    name, _ = register(model, customers(50)[builders.FEATURES])
    return name, oracle


def connect_job(
    job_config: Callable[..., JobConfig], name: str, url: str, tmp_path: Path, **stream: Any
) -> JobConfig:
    section = {
        "path": str(tmp_path / "landing"),
        "columns": DDL,
        "trigger_seconds": 0.2,
        "max_files_per_trigger": 2,
        **stream,
    }
    spark = {"remote": url, "conf": TEST_SPARK_CONF}
    return job_config(name, stream=section, rules=RULES, spark=spark)


def events(rows: int, seed: int) -> pd.DataFrame:
    return customers(rows, seed=seed).assign(customer_id=lambda f: f.customer_id + 1000 * seed)


def assert_scores(got: pd.DataFrame, landed: pd.DataFrame, oracle: Any) -> None:
    expected = dict(zip(landed.customer_id, oracle(landed)["score"], strict=True))
    assert np.max(np.abs(got.score - got.customer_id.map(expected))) <= 1e-12


def test_files_scored_once_with_bad_rows_and_poison_under_connect(
    remote: Any, connect_url: str, job_config: Any, tmp_path: Path, logreg: Any
) -> None:
    name, oracle = logreg
    cfg = connect_job(job_config, name, connect_url, tmp_path)
    landing = tmp_path / "landing"
    frames = [events(40, s) for s in (1, 2, 3)]
    frames[1].loc[5, "monthly_charges"] = np.nan  # LogisticRegression refuses NaN: quarantined
    for i, frame in enumerate(frames):
        land(landing, f"events-{i}.parquet", frame)
    (landing / "junk.parquet").write_bytes(b"not parquet at all" * 10)

    result = run_stream(remote, cfg, available_now=True)

    assert is_connect(remote)
    layout = StreamLayout.for_job(cfg)
    got = read_table(layout.predictions.table_dir)
    good = pd.concat(frames, ignore_index=True).drop(index=40 + 5)
    assert result.scored_rows == len(got) == len(good) == 119 and got.customer_id.is_unique
    assert_scores(got, good, oracle)
    assert (got.action == np.where(got.score >= 0.5, "block", "allow")).all()
    assert set(got.batch_id) == set(layout.committed_batches()) == {0, 1}
    assert result.batches == 2 and result.skipped_batches == 0

    bad = read_table(layout.quarantine.table_dir)
    assert bad.customer_id.tolist() == [frames[1].customer_id[5]] and "NaN" in bad.error_message[0]
    reports = list((layout.state_dir / "poison").glob("*.json"))
    assert [r.name.split("-", 1)[1] for r in reports] == ["junk.parquet.json"]
    assert json.loads(reports[0].read_text())["file"].endswith("/landing/junk.parquet")
    assert result.poison_files == 1 and result.quarantined_rows == 1
    prom = layout.metrics_file.read_text()  # written by the server's copy of the handler
    assert f'batch_serving_stream_rows_total{{model="{name}",outcome="scored"}} 119' in prom

    # more events land; a second run scores only those (the checkpoint remembers the rest)
    more = events(30, 9)
    land(landing, "events-3.parquet", more)
    again = run_stream(remote, cfg, available_now=True)
    assert (again.batches, again.scored_rows, again.poison_files) == (1, 30, 0)
    total = read_table(layout.predictions.table_dir)
    assert len(total) == 149 and total.customer_id.is_unique
    assert_scores(total, pd.concat([good, more], ignore_index=True), oracle)


def test_stop_lets_the_batch_in_flight_commit_then_a_restart_scores_the_rest(
    remote: Any, connect_url: str, job_config: Any, tmp_path: Path, logreg: Any
) -> None:
    """A processing-time stream stopped (the ``stop`` event, as SIGTERM sets it) once its first
    batch is committed: every batch Spark planned is committed whole by the sink, the result
    counts exactly the markers of the run; the restart scores the files not reached yet."""
    name, oracle = logreg
    cfg = connect_job(job_config, name, connect_url, tmp_path, max_files_per_trigger=1)
    landing = tmp_path / "landing"
    frames = [events(20, s) for s in range(1, 9)]
    for i, frame in enumerate(frames):
        land(landing, f"events-{i}.parquet", frame)
    layout = StreamLayout.for_job(cfg)
    stop = threading.Event()
    done: list[Any] = []
    runner = threading.Thread(
        target=lambda: done.append(run_stream(remote, cfg, stop=stop)), daemon=True
    )
    runner.start()
    deadline = time.monotonic() + 120
    while not layout.committed_batches() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    runner.join(120)

    assert done and done[0].stopped_by_signal
    committed = layout.committed_batches()
    assert done[0].batches == len(committed) >= 1
    assert len(committed) < len(frames)  # it stopped before the end
    planned = {int(p.name) for p in (layout.checkpoint / "offsets").glob("[0-9]*")}
    assert planned <= set(committed) | {max(planned)}  # at most the newest was cut short
    first = read_table(layout.predictions.table_dir)
    assert len(first) == done[0].scored_rows == 20 * len(committed)

    rest = run_stream(remote, cfg, available_now=True)
    got = read_table(layout.predictions.table_dir)
    assert len(got) == 160 and got.customer_id.is_unique
    assert rest.scored_rows == 160 - done[0].scored_rows
    assert_scores(got, pd.concat(frames, ignore_index=True), oracle)
