"""Airflow for real, in its own virtualenv: DagBag import, and `airflow dags test` running the
generated DAG end to end (sensor -> check-input -> spark-submit -> check-output -> publish)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, RUN_DATE, customers

from batch_serving import sample_data

AIRFLOW_VENV = REPO / ".venv-airflow"
pytestmark = pytest.mark.slow

DAGBAG_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=%r)
config = sys.modules.get("batch_serving.config")
print(json.dumps({
    "config_module": getattr(config, "__file__", None),
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {
        "tags": sorted(d.tags), "max_active_runs": d.max_active_runs, "catchup": d.catchup,
        "tasks": {t.task_id: {"retries": t.retries, "doc": bool(t.doc_md),
                              "upstream": sorted(t.upstream_task_ids)} for t in d.tasks},
    } for d in bag.dags.values()},
}))
"""


def airflow_env(home: Path, conf_dir: Path) -> dict[str, str]:
    """Airflow's venv has the project installed editable from the main checkout (``make
    install``); PYTHONPATH puts this checkout's ``src`` first, for the DAG file and the tasks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "airflow_dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": "local[2]"}),
        BATCH_SERVING_HOME=str(REPO),
        BATCH_SERVING_CONF_DIR=str(conf_dir),
        BATCH_SERVING_VENV=str(REPO / ".venv"),
    )
    return env


@pytest.fixture
def airflow_project(tmp_path: Path, register, tracking_uri: str) -> tuple[Path, dict, Path]:
    """A conf/jobs/ with one job (real registry model, real warehouse) and an AIRFLOW_HOME."""
    if not (AIRFLOW_VENV / "bin" / "airflow").exists():
        pytest.fail(f"{AIRFLOW_VENV} missing: `make install` creates it")
    import builders
    from conftest import labelled

    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(300)
    name, _ = register(model, rows[builders.FEATURES])
    sample_data.write_partition(tmp_path / "warehouse", RUN_DATE, rows, files=2)
    conf_dir = tmp_path / "conf" / "jobs"
    conf_dir.mkdir(parents=True)
    job = {
        "job": "airflow_e2e",
        "model": {"name": name, "alias": "champion", "tracking_uri": tracking_uri},
        "input": {"path": "warehouse"},  # relative: resolved against the dir holding conf/
        "entity_columns": ["customer_id"],
        "output": {"root": "out"},
        "spark": {"conf": {"spark.sql.shuffle.partitions": 2}},
        "schedule": {
            "start_date": "2026-11-01",
            "retries": 0,
            "sensor_poke_seconds": 5,
            "tags": ["e2e"],
        },
    }
    (conf_dir / "e2e.yaml").write_text(yaml.safe_dump(job))
    home = tmp_path / "airflow"
    env = airflow_env(home, conf_dir)
    migrate = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "airflow"), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return tmp_path, env, conf_dir


def load_dagbag(env: dict[str, str]) -> dict:
    """Import the DAG folder with Airflow's DagBag, in Airflow's venv; its findings as JSON."""
    probe = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", DAGBAG_PROBE % str(REPO / "airflow_dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    return json.loads(probe.stdout.strip().splitlines()[-1])


def test_dagbag_one_dag_per_job_with_retries_tags_and_docs(airflow_project) -> None:
    _, env, _ = airflow_project
    found = load_dagbag(env)
    assert found["errors"] == {}
    dag = found["dags"]["score_airflow_e2e"]
    assert list(found["dags"]) == ["score_airflow_e2e"]
    assert {"batch-serving", "scoring", "e2e"} <= set(dag["tags"])
    assert dag["max_active_runs"] == 1 and dag["catchup"] is True
    tasks = dag["tasks"]
    assert set(tasks) == {"wait_for_input", "validate_input", "score", "validate_output", "publish"}
    assert tasks["score"]["upstream"] == ["validate_input"]
    assert tasks["publish"]["upstream"] == ["validate_output"]
    assert all(t["doc"] for t in tasks.values())
    assert all(t["retries"] == 0 for t in tasks.values())  # the job's schedule.retries


def test_repo_dags_import_cleanly_with_default_retries(tmp_path: Path) -> None:
    env = airflow_env(tmp_path / "airflow", REPO / "conf" / "jobs")
    found = load_dagbag(env)
    assert found["errors"] == {}
    assert found["config_module"] == str(REPO / "src" / "batch_serving" / "config" / "__init__.py")
    jobs = sorted(p.stem for p in (REPO / "conf" / "jobs").glob("*.yaml"))
    assert len(found["dags"]) == len(jobs) >= 1
    for dag in found["dags"].values():
        assert "batch-serving" in dag["tags"]
        assert all(t["retries"] == 2 for t in dag["tasks"].values())


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"validation": {"max_bad_rows": "lots"}}, "validation.max_bad_rows"),
        ({"schedule": {"retry_count": 3}}, "schedule.retry_count"),
    ],
)
def test_bad_job_file_is_a_dag_import_error_naming_the_key(
    tmp_path: Path, patch: dict, key: str
) -> None:
    conf_dir = tmp_path / "conf" / "jobs"
    conf_dir.mkdir(parents=True)
    job = {
        "job": "bad",
        "model": {"name": "m", "alias": "champion", "tracking_uri": "sqlite:///m.db"},
        "input": {"path": "warehouse"},
        "entity_columns": ["customer_id"],
        "output": {"root": "out"},
        **patch,
    }
    (conf_dir / "bad.yaml").write_text(yaml.safe_dump(job))
    found = load_dagbag(airflow_env(tmp_path / "airflow", conf_dir))
    assert found["dags"] == {}
    (error,) = found["errors"].values()
    assert f"invalid config {conf_dir / 'bad.yaml'}: {key}" in error


def test_airflow_dags_test_scores_and_publishes_the_date(airflow_project) -> None:
    root, env, _ = airflow_project
    run = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "airflow"), "dags", "test", "score_airflow_e2e", str(RUN_DATE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, (run.stdout[-4000:], run.stderr[-4000:])
    partition = root / "out" / "predictions"
    committed = next(partition.glob(f"*/ds={RUN_DATE}"))
    assert pq.read_table(committed).num_rows == 300
    manifest = json.loads((committed / "_manifest.json").read_text())
    assert manifest["output"]["rows"] == 300 and manifest["run_date"] == str(RUN_DATE)
    pointer = json.loads(next((root / "out" / "serving").glob("*/CURRENT.json")).read_text())
    assert pointer["current"].startswith(f"{RUN_DATE}_v")
