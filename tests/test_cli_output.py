"""What the command line prints: --version, --json records, progress bars only on a terminal,
and a quiet stderr (no Hive/metastore WARN lines) on a real run in its own process."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import builders
import mlflow
import pyspark
import pytest
from conftest import RUN_DATE, customers, labelled
from test_cli import write_config

import batch_serving
from batch_serving.cli import main
from batch_serving.tables.manifest import read_after_commit, read_manifest

# A log4j line of the driver JVM at WARN or above (pattern of spark/log4j2.properties and of
# Spark's own default profile).
JVM_WARNING = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (WARN|ERROR|FATAL) ", re.MULTILINE)


def test_version_names_the_package_and_its_engines(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.splitlines() == [
        f"batch-serving {batch_serving.__version__}",
        f"pyspark {pyspark.__version__}",
        f"mlflow {mlflow.__version__}",
        f"python {platform.python_version()}",
    ]


@pytest.fixture
def catalog_job(tmp_path, register, warehouse, job_config):  # type: ignore[no-untyped-def]
    """A small job with SQL tables (Hive metastore in tmp) and MLflow run records on."""
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(300)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows)
    cfg = job_config(
        name,
        catalog={"enabled": True, "metastore_dir": str(tmp_path / "metastore")},
        tracking={"log_runs": True, "experiment": "cli-json"},
    )
    return cfg, write_config(tmp_path / "job.yaml", cfg)


@pytest.mark.slow
def test_score_json_in_its_own_process_is_quiet_and_machine_readable(catalog_job, capsys) -> None:
    """`batch-serving score --json` as a user runs it, twice (the first night creates the SQL
    database and table, later nights find them): stdout is exactly one JSON document, the
    committed manifest and the after-commit record as on disk; stderr has our log lines but no
    JVM warnings (the Hive client and the Derby metastore warn on every healthy run)."""
    cfg, path = catalog_job
    src = str(Path(batch_serving.__file__).resolve().parents[1])
    command = [sys.executable, "-m", "batch_serving.cli", "score", "--json"]
    runs = [
        subprocess.run(
            [*command, "--config", str(path), "--run-date", str(RUN_DATE)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": src, "PYSPARK_PYTHON": sys.executable},
        )
        for _ in range(2)
    ]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "committed 300 rows" in proc.stderr  # our own INFO log still goes to stderr
        assert JVM_WARNING.findall(proc.stderr) == [], proc.stderr[-3000:]
        for noise in (
            "METASTORE_FILTER_HOOK",
            "HiveConf",
            "Using Spark's default log4j profile",
            'Setting default log level to "WARN"',
            "created concurrently",  # CREATE DATABASE IF NOT EXISTS of an existing database
        ):
            assert noise not in proc.stderr

    record = json.loads(runs[1].stdout)  # the whole of stdout, nothing before or after
    assert sorted(record) == ["after_commit", "manifest"]
    partition = Path(cfg.output.root) / "predictions" / cfg.model.name / f"ds={RUN_DATE}"
    manifest = read_manifest(partition)
    assert manifest is not None and record["manifest"] == manifest.model_dump(mode="json")
    run_dir = Path(cfg.output.root) / "_runs" / "predictions" / cfg.model.name / manifest.run_id
    after = read_after_commit(run_dir)
    assert after is not None and record["after_commit"] == after.model_dump(mode="json")
    assert record["manifest"]["output"]["rows"] == 300
    assert f"predictions.{cfg.model.name}" in record["after_commit"]["tables"]  # Hive was used
    assert record["after_commit"]["mlflow_run_id"]
    assert json.loads(runs[0].stdout)["manifest"]["run_id"] != manifest.run_id

    # the orchestrator's checks on the same partition, as JSON (in-process, no Spark)
    args = ["--config", str(path), "--run-date", str(RUN_DATE), "--json"]
    assert main(["check-output", *args]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "partition": str(partition),
        "repaired": [],
        "rows": 300,
        "input_rows": 300,
        "quarantined_rows": 0,
        "gates_passed": [],
        "run_id": manifest.run_id,
        "model_version": 1,
    }
    assert main(["check-input", *args]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert (checked["rows"], checked["files"]) == (300, 2)
    assert checked["partition"].endswith(f"ds={RUN_DATE}")
    (champion,) = checked["models"]
    assert champion["key"] == "champion" and champion["uri"] == f"models:/{cfg.model.name}/1"
    assert sorted(champion["features"]) == sorted(builders.FEATURES)


def test_json_failure_leaves_stdout_empty(tmp_path, capsys) -> None:
    args = ["--config", str(tmp_path / "no.yaml"), "--run-date", str(RUN_DATE)]
    code = main(["check-input", "--json", *args])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("error: cannot read config")
