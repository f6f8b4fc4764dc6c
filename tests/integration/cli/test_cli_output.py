"""What the command line prints: --version, --json records, progress bars only on a terminal,
and a quiet stderr (no Hive/metastore WARN lines) on a real run in its own process."""

from __future__ import annotations

import io
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
from conftest import RUN_DATE, Scored, customers, labelled
from test_cli import write_config

import batch_serving
from batch_serving.cli import main
from batch_serving.cli.progress import Progress
from batch_serving.serving import redis_store
from batch_serving.serving.publish import publish
from batch_serving.tables.manifest import read_after_commit, read_manifest

# A log4j line of the driver JVM at WARN or above (pattern of spark/log4j2.properties and of
# Spark's own default profile).
JVM_WARNING = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (WARN|ERROR|FATAL) ", re.MULTILINE)


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


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


def test_progress_bar_only_on_a_terminal(capsys) -> None:
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        with Progress("backfill", "date", total=3, stream=stream) as bar:
            for day in range(3):
                bar.echo(f"date {day} done")
                bar.advance()
    assert "backfill: 100%" in terminal.getvalue() and "3/3" in terminal.getvalue()
    assert pipe.getvalue() == ""
    assert capsys.readouterr().out.splitlines() == [f"date {d} done" for d in range(3)] * 2

    lazy, unused = Terminal(), Terminal()
    with Progress("publish to redis", "id", stream=lazy) as bar:
        bar.reached(200, 500)
        bar.reached(500, 500)
    with Progress("publish to redis", "id", stream=unused):
        pass  # no Redis writes: no bar at all
    assert "500/500" in lazy.getvalue() and unused.getvalue() == ""


def test_backfill_shows_a_bar_on_a_terminal(spark, tmp_path, catalog_job, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    cfg, _ = catalog_job
    data = cfg.model_dump(mode="json")
    data["catalog"] = {"enabled": False}
    data["tracking"] = {"log_runs": False}
    path = tmp_path / "plain.yaml"
    path.write_text(json.dumps(data))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    day = str(RUN_DATE)
    assert main(["backfill", "--config", str(path), "--from", day, "--to", day]) == 0
    assert "backfill: 100%" in terminal.getvalue() and "1/1" in terminal.getvalue()
    assert f"backfill: {day} -> 300 rows (1/1)" in capsys.readouterr().out


def test_publish_reports_redis_progress(
    scored: Scored, redis_url: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    """publish -> RedisPublisher calls progress(ids written, ids total) per batch of buckets;
    the CLI turns that into a bar on a terminal and prints nothing extra otherwise."""
    monkeypatch.setattr(redis_store, "WRITE_BATCH", 200)
    fresh_db = redis_url.rsplit("/", 1)[0]  # each check writes a snapshot into an empty db
    seen: list[tuple[int, int]] = []
    cfg = scored.config(tmp_path / "a", backends=["redis"], redis_url=f"{fresh_db}/3")
    publish(cfg, scored.dates[1], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(200, 500), (400, 500), (500, 500)]

    def cli(db: int, root: str) -> list[str]:
        path = write_config(tmp_path / f"{root}.yaml", scored.config(tmp_path / root))
        job = ["--config", str(path), "--run-date", str(scored.dates[1])]
        return ["publish", *job, "--backend", "redis", "--redis-url", f"{fresh_db}/{db}"]

    assert main(cli(4, "b")) == 0
    captured = capsys.readouterr()
    assert "published served snapshot" in captured.out and "publish to redis" not in captured.err
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(cli(5, "c")) == 0
    assert "publish to redis: 100%" in terminal.getvalue() and "500/500" in terminal.getvalue()
