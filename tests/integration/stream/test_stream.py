"""Streaming scoring on real Spark Structured Streaming over real landing files.

Each test lands files, runs the stream with the availableNow trigger (it scores what landed,
then ends) and checks the stream tables against the in-process oracle: every event scored
exactly once, rules' actions, bad rows and poison files reported without stopping the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import builders
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import customers, labelled
from pyspark.sql import SparkSession

from batch_serving.config import JobConfig
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.runner import run_stream

DDL = (
    "customer_id BIGINT, tenure_months BIGINT, monthly_charges DOUBLE, total_charges DOUBLE, "
    "support_calls BIGINT, usage_gb DOUBLE, contract STRING, payment_method STRING"
)
RULES = [{"when": "score >= 0.5", "action": "block"}, {"otherwise": "allow"}]


def stream_job(
    job_config: Callable[..., JobConfig], name: str, tmp_path: Path, **stream: Any
) -> JobConfig:
    section = {
        "path": str(tmp_path / "landing"),
        "columns": DDL,
        "trigger_seconds": 0.2,
        "max_files_per_trigger": 2,
        **stream,
    }
    return job_config(name, stream=section, rules=RULES)


def land(landing: Path, name: str, frame: pd.DataFrame) -> None:
    landing.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(landing / f".{name}.tmp", index=False)
    (landing / f".{name}.tmp").rename(landing / name)


def read_table(folder: Path) -> pd.DataFrame:
    files = sorted(folder.rglob("batch-*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


@pytest.fixture
def logreg(register: Callable[..., tuple[str, int]]) -> tuple[str, Any]:
    model, oracle = builders.logreg_pipeline(labelled(800))
    name, _ = register(model, customers(50)[builders.FEATURES])
    return name, oracle


def test_stream_config_errors_name_the_key(
    job_config: Callable[..., JobConfig], tmp_path: Path
) -> None:
    import yaml
    from pydantic import ValidationError

    from batch_serving.cli import main
    from batch_serving.errors import ConfigError
    from batch_serving.stream.schema import parse_ddl

    with pytest.raises(ValidationError, match="needs `path`"):
        job_config("m", stream={"columns": DDL})
    with pytest.raises(ConfigError, match="column tags has unsupported type MAP"):
        parse_ddl("id BIGINT, tags MAP")
    assert parse_ddl(DDL).field("monthly_charges").type == "double"
    batch_only = tmp_path / "batch.yaml"
    batch_only.write_text(yaml.safe_dump(job_config("m").model_dump(mode="json")))
    assert main(["stream", "--config", str(batch_only)]) == 2  # no `stream:` section


def test_files_scored_once_with_rules_bad_rows_and_poison(
    spark: SparkSession, job_config: Callable[..., JobConfig], tmp_path: Path, logreg: Any
) -> None:
    name, oracle = logreg
    cfg = stream_job(job_config, name, tmp_path)
    landing = tmp_path / "landing"
    frames = [
        customers(40, seed=s).assign(customer_id=lambda f, s=s: f.customer_id + 1000 * s)
        for s in (1, 2, 3)
    ]
    frames[1].loc[5, "monthly_charges"] = np.nan  # LogisticRegression refuses NaN: quarantined
    for i, frame in enumerate(frames):
        land(landing, f"events-{i}.parquet", frame)
    (landing / "junk.parquet").write_bytes(b"not parquet at all" * 10)

    result = run_stream(spark, cfg, available_now=True)

    layout = StreamLayout.for_job(cfg)
    got = read_table(layout.predictions.table_dir)
    events = pd.concat(frames, ignore_index=True)
    good = events.drop(index=40 + 5)
    assert result.scored_rows == len(got) == len(good) == 119
    assert got.customer_id.is_unique
    expected = dict(zip(good.customer_id, oracle(good)["score"], strict=True))
    assert np.allclose(got.score, got.customer_id.map(expected), rtol=0, atol=1e-9)
    assert (got.action == np.where(got.score >= 0.5, "block", "allow")).all()
    assert set(got.action) == {"block", "allow"}
    assert got.source_file.str.endswith(".parquet").all() and got.event_time.notna().all()
    assert set(got.batch_id) == set(layout.committed_batches()) == {0, 1}

    bad = read_table(layout.quarantine.table_dir)
    assert bad.customer_id.tolist() == [frames[1].customer_id[5]]
    assert "NaN" in bad.error_message[0] and bad.batch_id[0] in (0, 1)
    reports = list((layout.state_dir / "poison").glob("*.json"))
    assert [r.name.split("-", 1)[1] for r in reports] == ["junk.parquet.json"]
    assert result.poison_files == 1 and result.quarantined_rows == 1
    prom = layout.metrics_file.read_text()
    assert f'batch_serving_stream_rows_total{{model="{name}",outcome="scored"}} 119' in prom
    assert "batch_serving_stream_latency_p50_s" in prom

    # more events land; a second run scores only those (the checkpoint remembers the rest)
    more = customers(30, seed=9).assign(customer_id=lambda f: f.customer_id + 9000)
    land(landing, "events-3.parquet", more)
    again = run_stream(spark, cfg, available_now=True)
    assert again.scored_rows == 30 and again.poison_files == 0
    total = read_table(layout.predictions.table_dir)
    assert len(total) == 149 and total.customer_id.is_unique


def test_json_malformed_lines_are_quarantined(
    spark: SparkSession, job_config: Callable[..., JobConfig], tmp_path: Path, logreg: Any
) -> None:
    name, oracle = logreg
    cfg = stream_job(job_config, name, tmp_path, format="json")
    landing = tmp_path / "landing"
    landing.mkdir()
    rows = customers(12, seed=4)
    lines = rows.to_json(orient="records", lines=True).splitlines()
    lines.insert(3, '{"customer_id": 77, "tenure_months": ')  # cut-off event
    (landing / "events.json").write_text("\n".join(lines) + "\n")

    result = run_stream(spark, cfg, available_now=True)

    layout = StreamLayout.for_job(cfg)
    got = read_table(layout.predictions.table_dir).sort_values("customer_id")
    assert got.customer_id.tolist() == rows.customer_id.tolist()
    assert np.allclose(got.score, oracle(rows)["score"], rtol=0, atol=1e-9)
    bad = read_table(layout.quarantine.table_dir)
    assert bad.error_class.tolist() == ["malformed_record"]
    assert '"tenure_months":' in bad.error_message[0] and bad.batch_id[0] == 0
    assert result.quarantined_rows == 1 and result.scored_rows == 12


@pytest.mark.slow
def test_kill9_sigterm_and_restart_score_every_event_exactly_once(
    job_config: Callable[..., JobConfig],
    tmp_path: Path,
    register: Callable[..., tuple[str, int]],
) -> None:
    """kill -9 of the stream's process group in the middle of a batch, a restart stopped by
    SIGTERM (which lets its batch in flight commit, then exits 0), a last --available-now run:
    every landed event is in the table exactly once,
    with the model's values."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    model, oracle = builders.custom_pyfunc(labelled(50))
    name, _ = register(
        builders.SlowScore(seconds=1.0), customers(20)[builders.NUMERIC], pyfunc=True
    )
    cfg = job_config(
        name,
        stream={
            "path": str(tmp_path / "landing"),
            "columns": DDL,
            "trigger_seconds": 0.2,
            "max_files_per_trigger": 1,
        },
        features=builders.NUMERIC,
    )
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    frames = [
        customers(20, seed=s).assign(customer_id=lambda f, s=s: f.customer_id + 100 * s)
        for s in range(6)
    ]
    for i, frame in enumerate(frames):
        land(tmp_path / "landing", f"events-{i}.parquet", frame)
    layout = StreamLayout.for_job(cfg)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def start(*extra: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"stream-{time.monotonic_ns()}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "batch_serving.cli", "stream", "--config", str(config), *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def in_flight(proc: subprocess.Popen[bytes], after: int = 0, timeout_s: float = 120) -> int:
        """Wait until batch ``after`` is committed and the next one is being scored; its id."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, "stream exited early"
            done = layout.committed_batches()
            offsets = layout.checkpoint / "offsets"
            if done and done[-1] >= after and (offsets / str(done[-1] + 1)).exists():
                return done[-1] + 1
            time.sleep(0.05)
        raise AssertionError("no batch in flight")

    first = start()
    try:
        killed = in_flight(first)
        time.sleep(0.4)  # inside the model's 1 s predict
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        assert not layout.marker(killed).exists()

        second = start()
        stopped = in_flight(second, after=killed)
        os.kill(second.pid, signal.SIGTERM)  # the driver only, as a supervisor would
        assert second.wait(120) == 0
        assert layout.marker(stopped).exists()  # its batch in flight was finished
        assert len(layout.committed_batches()) < len(frames)  # and it stopped there

        last = start("--available-now")
        assert last.wait(180) == 0
    finally:
        for proc in (first, locals().get("second"), locals().get("last")):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    events = pd.concat(frames, ignore_index=True)
    got = read_table(layout.predictions.table_dir)
    assert len(got) == len(events) and got.customer_id.is_unique
    assert set(got.customer_id) == set(events.customer_id)
    expected = dict(zip(events.customer_id, oracle(events)["prediction"], strict=True))
    assert np.allclose(got.prediction, got.customer_id.map(expected), rtol=0, atol=1e-9)
    assert layout.committed_batches() == list(range(len(frames)))


def test_rate_source_scores_synthetic_rows_until_stopped(
    spark: SparkSession, job_config: Callable[..., JobConfig], tmp_path: Path, logreg: Any
) -> None:
    """The rate source (load tests) under a processing-time trigger, stopped by the ``stop``
    event from another thread the way SIGTERM stops the CLI: batches commit, ids are unique,
    scores equal the oracle on the same synthetic rows."""
    import threading
    import time

    name, oracle = logreg
    cfg = stream_job(job_config, name, tmp_path, source="rate", path=None, rows_per_second=200)
    layout = StreamLayout.for_job(cfg)
    stop = threading.Event()
    done: list[Any] = []
    runner = threading.Thread(
        target=lambda: done.append(run_stream(spark, cfg, stop=stop)), daemon=True
    )
    runner.start()
    deadline = time.monotonic() + 120
    while len(layout.committed_batches()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    runner.join(60)
    assert done and done[0].stopped_by_signal and done[0].batches >= 2

    got = read_table(layout.predictions.table_dir)
    assert len(got) == done[0].scored_rows > 0 and got.customer_id.is_unique
    assert (got.source_file == "rate").all()
    # outputs carry ids and scores, not features: rebuild the rate's rows from the ids
    value = got.customer_id.to_numpy()
    rebuilt = pd.DataFrame(
        {
            "customer_id": value,
            "tenure_months": value % 97,
            "monthly_charges": ((value * 37 + 2) % 1000) / 10.0,
            "total_charges": ((value * 37 + 3) % 1000) / 10.0,
            "support_calls": value % 97,
            "usage_gb": ((value * 37 + 5) % 1000) / 10.0,
            "contract": [f"v{v % 3}" for v in value],
            "payment_method": [f"v{v % 3}" for v in value],
        }
    )
    assert np.allclose(got.score, oracle(rebuilt)["score"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("clean", ["archive"])  # delete: the same option, another value
def test_clean_source_removes_or_archives_landed_files_after_their_batch(
    spark: SparkSession,
    job_config: Callable[..., JobConfig],
    tmp_path: Path,
    logreg: Any,
    clean: str,
) -> None:
    name, oracle = logreg
    archive = tmp_path / "archive"
    extra = {"archive_dir": str(archive)} if clean == "archive" else {}
    cfg = stream_job(job_config, name, tmp_path, clean_source=clean, **extra)
    landing = tmp_path / "landing"
    frames = [
        customers(20, seed=s).assign(customer_id=lambda f, s=s: f.customer_id + 100 * s)
        for s in (1, 2, 3)
    ]
    for i, frame in enumerate(frames):
        land(landing, f"events-{i}.parquet", frame)

    result = run_stream(spark, cfg, available_now=True)

    got = read_table(StreamLayout.for_job(cfg).predictions.table_dir)
    events = pd.concat(frames, ignore_index=True)
    assert result.scored_rows == len(got) == 60 and got.customer_id.is_unique
    expected = dict(zip(events.customer_id, oracle(events)["score"], strict=True))
    assert np.allclose(got.score, got.customer_id.map(expected), rtol=0, atol=1e-9)

    def landed() -> list[str]:
        return sorted(p.name for p in landing.glob("*.parquet"))

    def archived() -> list[str]:
        return sorted(p.name for p in archive.rglob("*.parquet"))

    # Spark cleans a batch's files when a later batch commits: 2 files per trigger, so the
    # first batch's two are gone and the last batch's one waits for the next batch
    assert landed() == ["events-2.parquet"]
    if clean == "archive":
        assert archived() == ["events-0.parquet", "events-1.parquet"]
        assert all(str(landing) in str(p) for p in archive.rglob("*.parquet"))  # path kept
    land(
        landing,
        "events-3.parquet",
        customers(5, seed=8).assign(customer_id=lambda f: f.customer_id + 900),
    )
    assert run_stream(spark, cfg, available_now=True).scored_rows == 5
    assert landed() == ["events-3.parquet"]
    if clean == "archive":
        assert archived() == [f"events-{i}.parquet" for i in range(3)]


def test_clean_source_config_errors_name_the_key(
    job_config: Callable[..., JobConfig], tmp_path: Path
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="archive needs `archive_dir`"):
        stream_job(job_config, "m", tmp_path, clean_source="archive")
    with pytest.raises(ValidationError, match="must not contain each other"):
        stream_job(
            job_config,
            "m",
            tmp_path,
            clean_source="archive",
            archive_dir=str(tmp_path / "landing" / "old"),
        )
