"""The commands besides ``score`` as Spark Connect clients: ``check-input``, ``check-output``,
``backfill``, ``sql`` and the notebook API's ``score_frame``; a windowed ``stream`` is refused by
name (the file stream: test_connect_stream.py).

They reuse the one local Connect server of the test session (``conftest.connect_url``). Each
outcome is the classic one: the same exit codes and messages (classic twins: test_cli.py,
test_bad_input.py, test_input_sources.py, test_backfill_sql.py, test_notebook_api.py), no gRPC
or JVM stack in the output, and every score equal to the model called in-process.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, RUN_DATE, TEST_SPARK_CONF, customers, labelled

from batch_serving.cli import main
from batch_serving.errors import ConfigError, InputNotFoundError
from batch_serving.notebook import score_frame
from batch_serving.spark.connect import is_connect
from batch_serving.spark.input_table import resolve_input
from batch_serving.stream.runner import run_stream

cloudpickle.register_pickle_by_value(builders)
pytestmark = pytest.mark.connect  # a process of its own (see conftest.CONNECT_APART)

STACKS = ("JVM stacktrace", "grpc", "_InactiveRpcError", "Traceback", "at org.apache", "py4j")


def write_job(path: Path, cfg: Any) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def cli(capsys: Any, *args: str) -> tuple[int, str]:
    """``batch-serving ARGS`` in this process: its exit code and everything it printed."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def no_stack(out: str) -> None:
    for stack in STACKS:
        assert stack not in out, out[-2000:]


def remote_job(job_config: Any, name: str, url: str, **overrides: Any) -> Any:
    return job_config(name, spark={"remote": url, "conf": TEST_SPARK_CONF}, **overrides)


def test_check_input_and_check_output_under_connect(
    remote, connect_url, tmp_path, register, warehouse, job_config, capsys
) -> None:
    """Good input passes; nothing committed is exit 8 (a committed date: see the backfill
    test); a missing column is exit 4 and a file that is not Parquet exit 7, each named."""
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(300)
    name, _ = register(model, rows[builders.FEATURES])
    root = warehouse(rows)
    path = write_job(tmp_path / "job.yaml", remote_job(job_config, name, connect_url))

    def on(day: dt.date, command: str) -> tuple[int, str]:
        return cli(capsys, command, "--config", str(path), "--run-date", str(day))

    code, out = on(RUN_DATE, "check-input")
    assert code == 0, out
    assert "rows     : 300 in 2 files" in out
    code, out = on(RUN_DATE, "check-output")
    assert code == 8 and "no committed partition" in out

    earlier = RUN_DATE - dt.timedelta(days=1)
    warehouse(rows.drop(columns=["usage_gb"]), earlier)
    code, out = on(earlier, "check-input")
    assert code == 4 and "missing columns ['usage_gb']" in out
    no_stack(out)

    later = RUN_DATE + dt.timedelta(days=1)
    warehouse(rows, later)
    victim = sorted((root / f"ds={later}").glob("*.parquet"))[0]
    victim.write_bytes(b"PAR1 this is not parquet PAR1")
    code, out = on(later, "check-input")
    assert code == 7, out
    assert f"cannot read Parquet file {victim}" in out
    no_stack(out)


def columns_ddl(spark: Any, directory: Path) -> str:
    schema = spark.read.parquet(str(directory)).schema
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in schema if f.name != "ds")


def test_check_input_resolves_a_table_in_the_servers_catalog(
    remote, connect_url, tmp_path, register, warehouse, job_config
) -> None:
    """``input.table`` is the Connect server's catalog's table, resolved by SQL; a table that
    is not there is an InputNotFoundError (exit 4) naming it. The command runs in its own
    process: it stops its session, which in this process would be the tests' one."""
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(300)
    name, _ = register(model, rows[builders.FEATURES])
    root = warehouse(rows)
    remote.sql("CREATE DATABASE IF NOT EXISTS connect_inputs")
    remote.sql(
        f"CREATE TABLE IF NOT EXISTS connect_inputs.features ({columns_ddl(remote, root)}, "
        f"ds DATE) USING parquet PARTITIONED BY (ds) LOCATION '{root}'"
    )

    def table_job(table: str) -> Any:
        section = {"path": None, "table": table}
        return remote_job(job_config, name, connect_url, input=section, catalog={"enabled": True})

    path = write_job(tmp_path / "table.yaml", table_job("connect_inputs.features"))
    command = ["check-input", "--config", str(path), "--run-date", str(RUN_DATE)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    found = subprocess.run(
        [sys.executable, "-m", "batch_serving.cli", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert found.returncode == 0, found.stderr[-3000:]
    assert f"input ok: {root}/ds={RUN_DATE}" in found.stdout
    assert "rows     : 300 in 2 files" in found.stdout

    with pytest.raises(InputNotFoundError) as missing:
        resolve_input(remote, table_job("connect_inputs.nope"))
    assert "input.table connect_inputs.nope does not exist in the catalog" in str(missing.value)
    no_stack(str(missing.value))


def test_backfill_then_sql_under_connect(
    remote, connect_url, tmp_path, register, warehouse, job_config, capsys
) -> None:
    """Two dates backfilled through the server, each score the in-process model's; the last
    date passes ``check-output``; the partitions are registered in the server's catalog, so
    ``sql`` counts them; an unknown table is exit 2 naming it."""
    model, oracle = builders.logreg_pipeline(labelled(400))
    days = [RUN_DATE - dt.timedelta(days=1), RUN_DATE]
    sizes = {days[0]: 120, days[1]: 140}
    frames = {day: customers(sizes[day], seed=30 + n) for n, day in enumerate(days)}
    for day, frame in frames.items():
        warehouse(frame, day)
    name, _ = register(model, frames[days[0]][builders.FEATURES])
    metastore = {"enabled": True, "metastore_dir": str(tmp_path / "metastore")}
    cfg = remote_job(job_config, name, connect_url, catalog=metastore)
    path = write_job(tmp_path / "job.yaml", cfg)

    code, out = cli(
        capsys, "backfill", "--config", str(path), "--from", str(days[0]), "--to", str(days[1])
    )
    assert code == 0, out[-3000:]
    assert f"backfill: {days[1]} -> 140 rows (2/2)" in out
    for day, frame in frames.items():
        got = pq.read_table(Path(cfg.output.root) / "predictions" / name / f"ds={day}")
        got = got.to_pandas().sort_values("customer_id").reset_index(drop=True)
        expected = oracle(frame.sort_values("customer_id").reset_index(drop=True))
        assert len(got) == sizes[day]
        assert np.max(np.abs(got["score"].to_numpy() - expected["score"])) <= 1e-12

    code, out = cli(capsys, "check-output", "--config", str(path), "--run-date", str(days[1]))
    assert code == 0, out
    assert "rows     : 140 (input 140, quarantined 0)" in out

    query = f"SELECT ds, count(*) AS n FROM predictions.{name} GROUP BY ds ORDER BY ds"
    code, out = cli(capsys, "sql", "--config", str(path), query)
    assert code == 0, out[-3000:]
    counted = [line.split("|")[1:3] for line in out.splitlines() if line.startswith("|2026")]
    assert [(d.strip(), int(n)) for d, n in counted] == [(str(d), sizes[d]) for d in days]
    code, out = cli(capsys, "sql", "--config", str(path), "SELECT * FROM predictions.nope")
    assert code == 2 and "table or view 'predictions.nope' not found; tables: " in out
    assert f"predictions.{name}" in out
    no_stack(out)


def test_score_frame_of_a_connect_dataframe_equals_in_process_model(
    remote, register, tracking_uri
) -> None:
    """The notebook API on a Connect DataFrame: lazy, scored in the server's tasks with the
    model shipped as an artifact; every score equals the model called in-process."""
    model, oracle = builders.logreg_pipeline(labelled(400))
    rows = customers(250, seed=5).sort_values("customer_id").reset_index(drop=True)
    name, _ = register(model, rows[builders.FEATURES])

    out = score_frame(
        remote.createDataFrame(rows),
        f"models:/{name}@champion",
        tracking_uri=tracking_uri,
        keep=["customer_id"],
    )

    assert is_connect(out.sparkSession)
    lineage = ["model_name", "model_version", "model_run_id", "scored_at"]
    assert out.columns == ["customer_id", "score", "error_class", "error_message", *lineage]
    got = out.toPandas().sort_values("customer_id").reset_index(drop=True)
    assert got["customer_id"].tolist() == rows["customer_id"].tolist()
    assert got["error_class"].isna().all()
    assert np.max(np.abs(got["score"].to_numpy() - oracle(rows)["score"])) <= 1e-12
    assert set(got["model_name"]) == {name}


def test_run_stream_refuses_a_windowed_stream_on_a_connect_session(
    remote, job_config, tmp_path
) -> None:
    """A library caller's Connect session (the job itself names no ``spark.remote``): the
    file stream runs (test_connect_stream.py); windowed features are refused by name."""
    landing = {
        "path": str(tmp_path / "landing"),
        "columns": "customer_id BIGINT, x DOUBLE, ts TIMESTAMP",
        "event_time_column": "ts",
    }
    windows = {
        "entity": "customer_id",
        "event_time": "ts",
        "aggregates": [{"column": "x", "functions": ["sum"], "windows": ["10m"]}],
    }
    cfg = job_config("events", stream=landing, windows=windows)

    with pytest.raises(ConfigError, match="`stream` with `windows:` features is not available"):
        run_stream(remote, cfg, available_now=True)
    assert not (tmp_path / "out").exists()
