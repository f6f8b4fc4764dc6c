"""The command line as users run it: exit codes, one-line messages, nothing written on failure."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import builders
import pytest
import yaml
from conftest import REPO, RUN_DATE, customers, labelled
from live import free_port

from batch_serving.cli import main


def write_config(path: Path, cfg) -> Path:  # type: ignore[no-untyped-def]
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


@pytest.fixture
def scored_setup(tmp_path, register, warehouse, job_config):  # type: ignore[no-untyped-def]
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(300)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows)
    cfg = job_config(name)
    return cfg, write_config(tmp_path / "job.yaml", cfg)


def test_score_success_prints_summary(spark, scored_setup, capsys) -> None:
    cfg, path = scored_setup
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    out = capsys.readouterr().out
    assert code == 0
    assert "300 in -> 300 out" in out
    assert f"{cfg.model.name} v1" in out
    partition = Path(cfg.output.root) / "predictions" / cfg.model.name / f"ds={RUN_DATE}"
    assert (partition / "_manifest.json").is_file()


def test_unknown_alias_names_alias_and_lists_existing(spark, scored_setup, capsys) -> None:
    cfg, path = scored_setup
    code = main(
        ["score", "--config", str(path), "--run-date", str(RUN_DATE), "--model-alias", "gold"]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "alias 'gold' not found" in err and "['champion']" in err
    assert cfg.model.tracking_uri in err
    assert not (Path(cfg.output.root) / "predictions").exists()


def test_unknown_model_version(spark, scored_setup, capsys) -> None:
    cfg, path = scored_setup
    code = main(
        ["score", "--config", str(path), "--run-date", str(RUN_DATE), "--model-version", "9"]
    )
    assert code == 3
    assert f"version 9 of model '{cfg.model.name}' not found" in capsys.readouterr().err


def test_unreachable_tracking_server(spark, scored_setup, capsys) -> None:
    cfg, path = scored_setup
    uri = f"http://127.0.0.1:{free_port()}"
    code = main(
        ["score", "--config", str(path), "--run-date", str(RUN_DATE), "--tracking-uri", uri]
    )
    err = capsys.readouterr().err
    assert code == 9  # transient: its own code, which the Airflow DAG retries
    assert f"MLflow registry {uri} is unreachable" in err
    assert not (Path(cfg.output.root) / "predictions").exists()


def test_missing_sqlite_registry_file(spark, scored_setup, tmp_path, capsys) -> None:
    _, path = scored_setup
    uri = f"sqlite:///{tmp_path / 'nope' / 'mlflow.db'}"
    code = main(
        ["score", "--config", str(path), "--run-date", str(RUN_DATE), "--tracking-uri", uri]
    )
    assert code == 3
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()  # no empty registry was created by accident


def test_missing_feature_column_fails_before_scoring(
    spark, tmp_path, register, warehouse, job_config, capsys
) -> None:
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(200)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows.drop(columns=["usage_gb"]))
    path = write_config(tmp_path / "job.yaml", job_config(name))
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    err = capsys.readouterr().err
    assert code == 4
    assert "missing columns ['usage_gb']" in err and "present: [" in err
    assert not (tmp_path / "out" / "predictions").exists()


def test_missing_input_partition_lists_dates(spark, scored_setup, capsys) -> None:
    _, path = scored_setup
    code = main(["score", "--config", str(path), "--run-date", "2026-01-01"])
    err = capsys.readouterr().err
    assert code == 4
    assert "ds=2026-01-01" in err and "['2026-11-22']" in err


def test_invalid_config_names_the_key(tmp_path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("job: x\nmodel: {name: m, tracking_uri: sqlite:///x.db}\n")
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    err = capsys.readouterr().err
    assert code == 2
    assert "model: Value error, set exactly one of model.alias or model.version" in err
    assert "input: Field required" in err


def test_verbose_after_the_command_shows_the_traceback(spark, scored_setup, capsys) -> None:
    _, path = scored_setup
    args = ["--config", str(path), "--run-date", str(RUN_DATE), "--model-alias", "gold"]
    assert main(["score", *args]) == 3
    assert "Traceback" not in capsys.readouterr().err
    assert main(["score", "-v", *args]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "RegistryError" in err


def test_bad_run_date(tmp_path, capsys) -> None:
    code = main(["score", "--config", str(tmp_path / "x.yaml"), "--run-date", "22/11/2026"])
    assert code == 2
    assert "--run-date must be YYYY-MM-DD, got '22/11/2026'" in capsys.readouterr().err


def test_help_documents_every_option_and_exit_codes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "batch_serving.cli", "score", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in (
        "--config",
        "--run-date",
        "--env",
        "--model-alias",
        "--model-version",
        "--tracking-uri",
    ):
        assert option in out
    assert "exit codes" in out and "9  model registry unreachable" in out


@pytest.mark.slow
def test_spark_submit_entry_point(scored_setup) -> None:
    """The documented spark-submit command, as a real subprocess."""
    _, path = scored_setup
    python = sys.executable
    env = {**os.environ, "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python}

    def submit(master: str, *extra: str) -> subprocess.CompletedProcess[str]:
        spark_submit = str(Path(python).parent / "spark-submit")
        job = [str(REPO / "jobs" / "score.py"), "--config", str(path), "--run-date", str(RUN_DATE)]
        return subprocess.run(
            [spark_submit, "--master", master, *job, *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    proc = submit("local[2]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "300 in -> 300 out" in proc.stdout
    bad = submit("local[1]", "--model-alias", "nope")
    assert bad.returncode == 3
    # spark-submit's PythonRunner merges the Python driver's stderr into its stdout
    assert "error: alias 'nope' not found" in bad.stdout


def test_check_input_and_check_output(scored_setup, warehouse, tmp_path, capsys) -> None:
    """The orchestrator's pre/post-flight commands (no Spark): outcomes and exit codes."""
    cfg, path = scored_setup
    args = ["--config", str(path), "--run-date", str(RUN_DATE)]
    assert main(["check-input", *args]) == 0
    assert "rows     : 300 in 2 files" in capsys.readouterr().out
    assert main(["check-output", *args]) == 8  # nothing scored yet: not publishable
    assert "no committed partition" in capsys.readouterr().err

    earlier = RUN_DATE - dt.timedelta(days=1)
    warehouse(customers(50).drop(columns=["usage_gb"]), earlier)
    assert main(["check-input", "--config", str(path), "--run-date", str(earlier)]) == 4
    assert "missing columns ['usage_gb']" in capsys.readouterr().err
    unknown = cfg.model_copy(update={"model": cfg.model.model_copy(update={"alias": "gold"})})
    other = write_config(tmp_path / "alias.yaml", unknown)
    assert main(["check-input", "--config", str(other), "--run-date", str(RUN_DATE)]) == 3
    assert "alias 'gold' not found" in capsys.readouterr().err
    assert main(["check-input", "--config", str(path), "--run-date", "2020-01-01"]) == 4
