"""Every command that produces a result prints one JSON object with --json (nothing else on
stdout), and a bad SQL query is one error line naming the table, without Py4J/JVM text."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import builders
import pytest
import yaml
from conftest import REPO, RUN_DATE, customers, labelled

import batch_serving
from batch_serving.cli import main

DAYS = (RUN_DATE - dt.timedelta(days=1), RUN_DATE)
ROWS = {DAYS[0]: 60, DAYS[1]: 70}


@pytest.fixture
def job(register, warehouse, tracking_uri, tmp_path: Path) -> tuple[str, Path]:  # type: ignore[no-untyped-def]
    """A registered model, two input dates and a job file with SQL tables (in-process, the
    tables go to the test session's metastore)."""
    model, _ = builders.logreg_pipeline(labelled(400))
    for n, day in enumerate(DAYS):
        warehouse(customers(ROWS[day], seed=40 + n), day)
    name, _ = register(model, customers(50)[builders.FEATURES])
    config = tmp_path / "conf" / "jobs" / "json.yaml"
    config.parent.mkdir(parents=True)
    data = {
        "job": "json_job",
        "model": {"name": name, "alias": "champion", "tracking_uri": tracking_uri},
        "input": {"path": str(tmp_path / "warehouse" / "features")},
        "entity_columns": ["customer_id"],
        "output": {"root": "out"},
        "tracking": {"log_runs": False},
        "spark": {"conf": {"spark.sql.shuffle.partitions": 2}},
    }
    config.write_text(yaml.safe_dump(data))
    return name, config


def run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, *argv: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err[-3000:]
    return json.loads(out)  # the whole of stdout is one JSON document


def test_every_result_as_json(spark, job, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    name, config = job
    cfg = ["--config", str(config)]
    first, last = (str(d) for d in DAYS)

    backfill = run_json(capsys, "backfill", *cfg, "--from", first, "--to", last, "--publish")
    assert [r["manifest"]["run_date"] for r in backfill["runs"]] == [first, last]
    assert [r["manifest"]["output"]["rows"] for r in backfill["runs"]] == [60, 70]
    assert backfill["published"]["snapshot_id"].startswith(f"{last}_v1_")
    assert backfill["published"]["rows"] == 70 and backfill["published"]["changed"] is True

    query = f"SELECT ds, count(*) AS n FROM predictions.{name} GROUP BY ds ORDER BY ds"
    rows = run_json(capsys, "sql", *cfg, query)
    assert rows == {
        "columns": ["ds", "n"],
        "rows": [{"ds": first, "n": 60}, {"ds": last, "n": 70}],
        "truncated": False,
    }
    limited = run_json(capsys, "sql", *cfg, query, "--limit", "1")
    assert limited["rows"] == [{"ds": first, "n": 60}] and limited["truncated"] is True

    older = run_json(capsys, "publish", *cfg, "--run-date", first, "--allow-older")
    assert older["snapshot_id"].startswith(f"{first}_v1_")
    assert older["previous"] == backfill["published"]["snapshot_id"]
    assert older["backends"] == ["embedded"] and older["skipped_reason"] is None
    back = run_json(capsys, "publish", *cfg, "--rollback")
    assert back["snapshot_id"] == backfill["published"]["snapshot_id"]

    assert run_json(capsys, "recover", *cfg) == {"model": name, "dates": {}}
    assert run_json(capsys, "recover", *cfg, "--run-date", last) == {
        "model": name,
        "dates": {last: []},
    }
    report = run_json(capsys, "report", *cfg, "--run-date", first)
    assert report["model"] == name and Path(report["report"]).is_file()
    assert first in Path(report["report"]).read_text()
    listed = run_json(capsys, "runs", *cfg)
    assert [r["run_date"] for r in listed["runs"]] == [first, last]
    assert run_json(capsys, "schema")["properties"]["job"]["type"] == "string"

    # the text forms are unchanged by the records behind them
    code, out, _ = run(capsys, "recover", *cfg)
    assert code == 0 and out == f"{name}: no interrupted commits\n"
    code, out, _ = run(capsys, "report", *cfg, "--run-date", first)
    assert code == 0 and out == f"{report['report']}\n"


def test_bad_queries_are_one_line_naming_the_table(spark, job, capsys) -> None:  # type: ignore[no-untyped-def]
    name, config = job
    cfg = ["--config", str(config)]
    day = str(DAYS[1])
    assert run(capsys, "backfill", *cfg, "--from", day, "--to", day)[0] == 0

    code, out, err = run(capsys, "sql", *cfg, f"SELECT * FROM predictions.{name}x")
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: table or view 'predictions.{name}x' not found; tables: ")
    assert f" predictions.{name} " in f"{line} "  # the table it meant

    code, _, err = run(capsys, "sql", *cfg, "SELEC ds FROM x", "--json")
    (line,) = err.splitlines()
    assert code == 2 and line.startswith("error: query failed: [PARSE_SYNTAX_ERROR]")
    code, _, err = run(capsys, "sql", *cfg, f"SELECT nope FROM predictions.{name}")
    (line,) = err.splitlines()
    assert code == 2 and "`nope`" in line and "UNRESOLVED_COLUMN" in line
    for text in (err, line):
        assert "py4j" not in text.lower() and "org.apache" not in text


def test_backfill_model_alias_overrides_the_config(spark, job, capsys) -> None:  # type: ignore[no-untyped-def]
    _, config = job
    day = str(DAYS[0])
    args = ["backfill", "--config", str(config), "--from", day, "--to", day]
    code, out, err = run(capsys, *args, "--model-alias", "gold", "--json")
    assert code == 3 and out == ""
    assert "alias 'gold' not found" in err and "['champion']" in err
    record = run_json(capsys, *args, "--model-version", "1")
    assert record["runs"][0]["manifest"]["model"]["version"] == 1


@pytest.mark.slow
def test_sql_in_its_own_process_prints_one_line_and_no_jvm_text(tmp_path: Path) -> None:
    """As a user runs it: the whole of stderr has no Py4J/JVM trace (PySpark 4 logs each
    query error with its JVM stack on its own logger) and exactly one error line."""
    config = tmp_path / "conf" / "jobs" / "sql.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        yaml.safe_dump(
            {
                "job": "sql_job",
                "model": {"name": "churn", "alias": "champion", "tracking_uri": "sqlite:///r.db"},
                "input": {"path": "warehouse"},
                "entity_columns": ["customer_id"],
                "output": {"root": "out"},
                "spark": {"master": "local[1]"},
            }
        )
    )
    src = str(Path(batch_serving.__file__).resolve().parents[1])
    command = [sys.executable, "-m", "batch_serving.cli", "sql", "--config", str(config)]
    proc = subprocess.run(
        [*command, "SELECT * FROM predictions.chrun"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": src, "PYSPARK_PYTHON": sys.executable},
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: table or view 'predictions.chrun' not found; tables: none"]
    assert "py4j" not in proc.stderr.lower() and "at org.apache" not in proc.stderr
    assert "Traceback" not in proc.stderr and "SQLQueryContextLogger" not in proc.stderr


@pytest.mark.slow
def test_demo_json(spark, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "conf" / "jobs" / "churn.yaml"
    config.parent.mkdir(parents=True)
    shutil.copy(REPO / "conf" / "jobs" / "churn.yaml", config)
    monkeypatch.chdir(REPO)
    args = ["--config", str(config), "--run-date", "2026-11-22", "--rows", "2000", "--days", "1"]
    record = run_json(capsys, "demo", *args)
    assert sorted(record) == ["lookup", "published", "report", "score"]
    assert record["score"]["manifest"]["output"]["rows"] == 2000
    assert record["published"]["snapshot_id"].startswith("2026-11-22_v1_")
    assert record["lookup"]["path"] == "/v1/models/churn/predictions/42"
    assert record["lookup"]["answer"]["entity_id"] == "42"
    assert Path(record["report"]).is_file()
