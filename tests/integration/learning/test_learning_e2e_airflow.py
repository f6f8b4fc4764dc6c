"""airflow_dags/learning_dag.py in Airflow's own virtualenv: a ``learn_<job>`` DAG (learn ->
register -> shadow -> promote) for each job file with a learning file and none for the others;
a job without the challenger's shadow member is an import error naming it; a refused
promotion (exit 11) fails at once like 2/3/4/8, other codes are retried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

sys.path.insert(0, str(REPO / "airflow_dags"))
from batch_serving_airflow import generate

AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"
DAGS = REPO / "airflow_dags"
pytestmark = pytest.mark.slow

PROBE = """
import json
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder=%(folder)r, bundle_path=%(folder)r, bundle_name="dags-folder")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {
        "tags": sorted(d.tags), "timetable": getattr(d.timetable, "expression", None),
        "tasks": {t.task_id: {"operator": type(t).__name__, "retries": t.retries,
                              "doc": bool(t.doc_md), "upstream": sorted(t.upstream_task_ids),
                              "arguments": getattr(t, "arguments", None)
                                           or getattr(t, "application_args", None)}
                  for t in d.tasks},
    } for d in bag.dags.values()},
}))
"""

EXIT_PROBE = """
import json, sys
sys.path.insert(0, %(folder)r)
from airflow.sdk.exceptions import AirflowFailException
import learning_dag
outcome = {}
for code in (0, 1, 2, 3, 4, 5, 7, 8, 9, 11, -9):
    try:
        learning_dag.fail_on_learning_exit(code, "batch-serving promote")
        outcome[code] = "ok"
    except AirflowFailException as error:
        outcome[code] = "fail: " + str(error)
    except Exception:
        outcome[code] = "retry"
print(json.dumps(outcome))
"""


def job_file(conf: Path, name: str, shadow: bool = True) -> None:
    job: dict[str, Any] = {
        "job": name,
        "model": {"name": f"{name}_model", "alias": "champion", "tracking_uri": "sqlite:///m.db"},
        "input": {"path": "warehouse"},
        "entity_columns": ["customer_id"],
        "output": {"root": "out"},
        "schedule": {"retries": 3},
    }
    if shadow:
        job["members"] = {
            "challenger": {"name": f"{name}_model", "alias": "challenger", "role": "shadow"}
        }
    (conf / "jobs").mkdir(parents=True, exist_ok=True)
    (conf / "jobs" / f"{name}.yaml").write_text(yaml.safe_dump(job))


def learning_file(conf: Path, name: str) -> None:
    learning = {"labels": {"path": "labels"}, "learner": {"features": ["a", "b"]}}
    (conf / "learning").mkdir(parents=True, exist_ok=True)
    (conf / "learning" / f"{name}.yaml").write_text(yaml.safe_dump(learning))


def run_probe(code: str, tmp_path: Path, conf: Path) -> dict[str, Any]:
    """``code`` in Airflow's venv over a DAG folder as a deployment has it: the library, its
    .airflowignore, one DAG file per job file and learning_dag.py."""
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"{AIRFLOW_PYTHON} missing: `make install` creates it")
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "batch_serving_airflow").symlink_to(DAGS / "batch_serving_airflow")
    (folder / ".airflowignore").write_text((DAGS / ".airflowignore").read_text())
    (folder / "learning_dag.py").write_text((DAGS / "learning_dag.py").read_text())
    for job in sorted((conf / "jobs").glob("*.yaml")):
        generate.write(job, folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_"))}
    env.update(
        PYTHONPATH=str(REPO / "src"),
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        BATCH_SERVING_HOME=str(REPO),
        BATCH_SERVING_CONF_DIR=str(conf / "jobs"),
        BATCH_SERVING_VENV=str(REPO / ".venv"),
    )
    probe = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", code % {"folder": str(folder)}],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    return dict(json.loads(probe.stdout.strip().splitlines()[-1]))


def test_a_learning_dag_per_job_with_a_learning_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    job_file(conf, "nightly")
    learning_file(conf, "nightly")
    job_file(conf, "plain")  # no learning file: no learning DAG
    found = run_probe(PROBE, tmp_path, conf)

    assert found["errors"] == {}
    assert sorted(found["dags"]) == [
        "backfill_nightly",
        "backfill_plain",
        "learn_nightly",
        "score_nightly",
        "score_plain",
    ]
    dag = found["dags"]["learn_nightly"]
    assert {"batch-serving", "learning", "model:nightly_model"} <= set(dag["tags"])
    assert dag["timetable"] == "0 6 * * *"  # the learning file's cron (default)
    tasks = dag["tasks"]
    assert {k: v["upstream"] for k, v in tasks.items()} == {
        "learn": [],
        "register": ["learn"],
        "shadow": ["register"],
        "promote": ["shadow"],
    }
    assert tasks["shadow"]["operator"] == "ScoreSubmitOperator"
    assert {tasks[t]["operator"] for t in ("learn", "register", "promote")} == {"LearningCommand"}
    assert all(t["retries"] == 3 and t["doc"] for t in tasks.values())  # schedule.retries
    learning = str(conf / "learning" / "nightly.yaml")
    config = str(conf / "jobs" / "nightly.yaml")
    assert tasks["learn"]["arguments"] == [
        "learn",
        "--config",
        config,
        "--learning",
        learning,
        "--run-date",
        "{{ macros.ds_add(ds, -1) }}",
        "--no-snapshot",
    ]
    assert tasks["register"]["arguments"] == [
        "snapshot",
        "--config",
        config,
        "--learning",
        learning,
    ]
    assert tasks["promote"]["arguments"][:6] == [
        "promote",
        "--config",
        config,
        "--learning",
        learning,
        "--run-date",
    ]
    assert tasks["shadow"]["arguments"] == ["--config", config, "--run-date", "{{ ds }}"]


def test_a_job_without_the_challengers_shadow_is_an_import_error_naming_it(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "conf"
    job_file(conf, "noshadow", shadow=False)
    learning_file(conf, "noshadow")
    found = run_probe(PROBE, tmp_path, conf)
    assert sorted(found["dags"]) == ["backfill_noshadow", "score_noshadow"]  # its own DAGs stay
    assert list(found["errors"]) == ["learning_dag.py"]
    (error,) = found["errors"].values()
    assert "registers noshadow_model@challenger, but the job has no shadow member" in error
    assert "role: shadow" in error


def test_a_refused_promotion_fails_at_once_other_codes_as_the_jobs_say(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "jobs").mkdir(parents=True)
    outcome = run_probe(EXIT_PROBE, tmp_path, conf)
    verdict = {code: text.split(":")[0] for code, text in outcome.items()}
    assert verdict == {
        "0": "ok",
        "1": "retry",
        "2": "fail",
        "3": "fail",
        "4": "fail",
        "5": "retry",
        "7": "retry",
        "8": "fail",
        "9": "retry",
        "11": "fail",
        "-9": "retry",
    }
    assert "a promotion gate refused the challenger" in outcome["11"]
