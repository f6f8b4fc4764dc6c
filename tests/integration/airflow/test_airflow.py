"""Airflow for real, in its own virtualenv: DagBag import (tasks, retries, assets, the backfill
DAG), and `airflow dags test` running the generated DAGs end to end against a real registry,
warehouse and spark-submit: the input sensor waiting for its marker, partitioned asset events
and the consumer they queue, a validation failure that fails on its first try, a held lease that is
retried with backoff, and a backfill of a date range. Outcomes are read from Airflow's
metadata DB (SQLite, one AIRFLOW_HOME per test)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, RUN_DATE, customers

from batch_serving import sample_data

sys.path.insert(0, str(REPO / "airflow_dags"))
from batch_serving_airflow import generate

AIRFLOW_VENV = REPO / ".venv-airflow"
AIRFLOW = AIRFLOW_VENV / "bin" / "airflow"
DAGS = REPO / "airflow_dags"
JOB = "airflow_e2e"
# Catalog tables and MLflow run records have their own tests; runs that test something else
# skip them (the Derby metastore alone costs ~15 s a run).
LEAN = {"catalog": {"enabled": False}, "tracking": {"log_runs": False}}
pytestmark = pytest.mark.slow

DAGBAG_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder=%r, bundle_path=%r, bundle_name="dags-folder")
config = sys.modules.get("batch_serving.config")
print(json.dumps({
    "config_module": getattr(config, "__file__", None),
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {
        "tags": sorted(d.tags), "max_active_runs": d.max_active_runs, "catchup": d.catchup,
        "timetable": type(d.timetable).__name__,
        "params": {k: d.params.get_param(k).schema for k in d.params},
        "tasks": {t.task_id: {"retries": t.retries, "doc": bool(t.doc_md),
                              "backoff": t.retry_exponential_backoff,
                              "operator": type(t).__name__,
                              "outlets": [o.name for o in t.outlets],
                              "upstream": sorted(t.upstream_task_ids)} for t in d.tasks},
    } for d in bag.dags.values()},
}))
"""

EXIT_CODE_PROBE = """
import json, sys
from airflow.sdk.exceptions import AirflowFailException
sys.path.insert(0, %r)
from batch_serving_airflow import exits as dags
outcome = {}
for code in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 137, -9):
    try:
        dags.fail_on_exit_code(code, "cmd")
        outcome[code] = "ok"
    except AirflowFailException:
        outcome[code] = "fail"
    except Exception:
        outcome[code] = "retry"
message = "Cannot execute: spark-submit --master local[2] score.py. Error code is: 4."
print(json.dumps({"outcome": outcome, "parsed": dags.spark_submit_exit_code(Exception(message)),
                  "unparsed": dags.spark_submit_exit_code(Exception("No driver id is known"))}))
"""

CONSUMERS = """
import datetime as dt
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, PartitionedAssetTimetable

PREDICTIONS = Asset("predictions.{model}")
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
with DAG("consume_partitioned", schedule=PartitionedAssetTimetable(assets=PREDICTIONS),
         start_date=START):
    EmptyOperator(task_id="read")
with DAG("consume_plain", schedule=[PREDICTIONS], start_date=START):
    EmptyOperator(task_id="read")
"""


def dags_folder_for(conf_dir: Path, folder: Path, extra: dict[str, str] | None = None) -> Path:
    """A DAG folder as a deployment has it: the library (linked), its .airflowignore, one DAG
    file per job file of ``conf_dir`` (``generate.py``) and ``extra`` files."""
    folder.mkdir(parents=True)
    (folder / "batch_serving_airflow").symlink_to(DAGS / "batch_serving_airflow")
    (folder / ".airflowignore").write_text((DAGS / ".airflowignore").read_text())
    for job in sorted(conf_dir.glob("*.yaml")):
        generate.write(job, folder)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def airflow_env(home: Path, conf_dir: Path, dags_folder: Path | None = None) -> dict[str, str]:
    """Airflow's venv has the project installed editable from the main checkout (``make
    install``); PYTHONPATH puts this checkout's ``src`` first, for the DAG file and the tasks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder or DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",  # consumers get queued
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": "local[2]"}),
        BATCH_SERVING_HOME=str(REPO),
        BATCH_SERVING_CONF_DIR=str(conf_dir),
        BATCH_SERVING_VENV=str(REPO / ".venv"),
    )
    return env


def run_in_airflow_venv(code: str, env: dict[str, str]) -> dict:
    probe = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    return json.loads(probe.stdout.strip().splitlines()[-1])


def load_dagbag(env: dict[str, str]) -> dict:
    """Import the DAG folder as Airflow's DAG processor does (a bundle: its folder on sys.path),
    in Airflow's venv; its findings as JSON."""
    folder = env["AIRFLOW__CORE__DAGS_FOLDER"]
    return run_in_airflow_venv(DAGBAG_PROBE % (folder, folder), env)


@pytest.fixture(scope="module")
def model_name(tracking_uri: str) -> str:
    """One registered model (alias champion) for every DAG run of this module."""
    import builders
    from conftest import labelled, register_model

    if not AIRFLOW.exists():
        pytest.fail(f"{AIRFLOW_VENV} missing: `make install` creates it")
    model, _ = builders.logreg_pipeline(labelled(400))
    sample = customers(50)[builders.FEATURES]
    return register_model(tracking_uri, model, sample, name="airflow_model")[0]


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated metadata DB; each test copies it into its own AIRFLOW_HOME."""
    home = tmp_path_factory.mktemp("airflow_template")
    migrate = subprocess.run(
        [str(AIRFLOW), "db", "migrate"],
        env=airflow_env(home, home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return home / "airflow.db"


@dataclass
class Project:
    """A job file (real registry model, warehouse under ``root``), an AIRFLOW_HOME with a
    migrated DB, and the DAG runs made in it."""

    root: Path
    env: dict[str, str]
    model: str
    outputs: dict[str, Path] = field(default_factory=dict)
    started: list[subprocess.Popen] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"]) / "airflow.db"

    @property
    def predictions(self) -> Path:
        return self.root / "out" / "predictions" / self.model

    def write_input(
        self, day: dt.date, frame: pd.DataFrame | None = None, marker: bool = True
    ) -> None:
        """The date's partition and (as a loader does, last) its ``_SUCCESS`` marker; without
        ``marker``, a partition whose loader is not done yet."""
        rows = customers(300) if frame is None else frame
        partition = sample_data.write_partition(self.root / "warehouse", day, rows, files=2)
        if not marker:
            (partition / "_SUCCESS").unlink()

    def dags_test(self, dag_id: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(AIRFLOW), "dags", "test", dag_id, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def start_dags_test(self, dag_id: str, *args: str) -> subprocess.Popen:
        """``dags test`` in the background; its output goes to ``outputs[dag_id]``."""
        out = self.outputs[dag_id] = self.root / f"{dag_id}.out"
        with out.open("w") as sink:
            proc = subprocess.Popen(
                [str(AIRFLOW), "dags", "test", dag_id, *args],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop_all() ends spark-submit too
            )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        """Kill the process groups of background runs still going (a failed test's)."""
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def query(self, sql: str, *params: Any) -> list[tuple]:
        """Read the metadata DB (read-only, short transaction, waits out Airflow's writes)."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def tasks(self, dag_id: str) -> dict[str, tuple[str, int]]:
        """task_id -> (state, try_number) of the DAG's latest run."""
        rows = self.query(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            dag_id,
            dag_id,
        )
        return {task: (state, tries) for task, state, tries in rows}

    def reschedules(self, dag_id: str) -> int:
        """How often the DAG's sensors were rescheduled (one row per poke that found nothing)."""
        return self.query(
            "SELECT count(*) FROM task_reschedule r JOIN task_instance t ON r.ti_id = t.id "
            "WHERE t.dag_id = ?",
            dag_id,
        )[0][0]

    def earlier_tries(self, dag_id: str, task_id: str) -> list[tuple[int, str, str, str]]:
        """(try_number, state, start, end) of the task's finished earlier tries."""
        return self.query(
            "SELECT try_number, state, start_date, end_date FROM task_instance_history "
            "WHERE dag_id = ? AND task_id = ? ORDER BY try_number",
            dag_id,
            task_id,
        )

    def asset_events(self) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT a.name, e.partition_key, e.extra, e.source_dag_id, e.source_task_id "
            "FROM asset_event e JOIN asset a ON a.id = e.asset_id ORDER BY e.id"
        )
        return [
            {"asset": a, "key": k, "extra": json.loads(x), "dag": d, "task": t}
            for a, k, x, d, t in rows
        ]


@pytest.fixture
def project(
    tmp_path: Path, model_name: str, tracking_uri: str, migrated_db: Path
) -> Iterator[Callable[..., Project]]:
    """Builds the test's project: extra DAG files, job sections, schedule overrides."""

    def _project(
        extra_dag_files: dict[str, str] | None = None,
        sections: dict[str, Any] | None = None,
        **schedule: Any,
    ) -> Project:
        conf_dir = tmp_path / "conf" / "jobs"
        conf_dir.mkdir(parents=True)
        job = {
            "job": JOB,
            "model": {"name": model_name, "alias": "champion", "tracking_uri": tracking_uri},
            "input": {"path": "warehouse"},  # relative: resolved against the dir holding conf/
            "entity_columns": ["customer_id"],
            "output": {"root": "out"},
            "spark": {"conf": {"spark.sql.shuffle.partitions": 2}},
            "schedule": {
                "start_date": "2026-11-01",
                "retries": 0,
                "sensor_poke_seconds": 1,
                "tags": ["e2e"],
                **schedule,
            },
            **(sections or {}),
        }
        (conf_dir / "e2e.yaml").write_text(yaml.safe_dump(job))
        dags_folder = dags_folder_for(conf_dir, tmp_path / "dags", extra_dag_files)
        home = tmp_path / "airflow"
        home.mkdir()
        shutil.copy(migrated_db, home / "airflow.db")
        made.append(Project(tmp_path, airflow_env(home, conf_dir, dags_folder), model_name))
        return made[-1]

    made: list[Project] = []
    yield _project
    for proj in made:
        proj.stop_all()


def wait_until(what: str, check: Callable[[], Any], timeout_s: float, proc: subprocess.Popen):
    """Poll ``check`` until it returns something truthy; fail early if ``proc`` ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        if proc.poll() is not None:
            pytest.fail(f"dags test ended (rc {proc.returncode}) before: {what}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for: {what}")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    """A live process whose pid holds a lease; reaped when stopped (a zombie looks alive)."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class HeldLease:
    """The lease file of a live run in another process (tables/lease.py's record): ``beat()``
    keeps its heartbeat fresh, as the holder's heartbeat thread would."""

    path: Path
    pid: int
    acquired_at: str = field(default_factory=utc_stamp)

    def beat(self) -> None:
        holder = {
            "run_id": "held-by-test",
            "host": socket.gethostname(),
            "pid": self.pid,
            "acquired_at": self.acquired_at,
            "heartbeat_at": utc_stamp(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.beat")
        tmp.write_text(json.dumps(holder))
        os.replace(tmp, self.path)  # whole file or none, as the real holder writes it


# ---------------------------------------------------------------------------------------------
# DagBag: what the DAG file declares
# ---------------------------------------------------------------------------------------------


def test_dagbag_score_and_backfill_dags_with_assets_retries_and_docs(project) -> None:
    proj = project()
    found = load_dagbag(proj.env)
    assert found["errors"] == {}
    assert sorted(found["dags"]) == [f"backfill_{JOB}", f"score_{JOB}"]
    dag = found["dags"][f"score_{JOB}"]
    assert {"batch-serving", "scoring", "e2e", f"model:{proj.model}"} <= set(dag["tags"])
    assert dag["max_active_runs"] == 1 and dag["catchup"] is True
    tasks = dag["tasks"]
    assert set(tasks) == {"wait_for_input", "validate_input", "score", "validate_output", "publish"}
    assert tasks["wait_for_input"]["operator"] == "InputPartitionSensor"
    assert tasks["score"]["operator"] == "ScoreSubmitOperator"
    assert tasks["score"]["upstream"] == ["validate_input"]
    assert tasks["publish"]["upstream"] == ["validate_output"]
    assert tasks["score"]["outlets"] == [f"predictions.{proj.model}"]
    assert tasks["publish"]["outlets"] == [f"serving.{proj.model}"]
    others = set(tasks) - {"score", "publish"}
    assert all(tasks[t]["outlets"] == [] for t in others)
    assert all(t["doc"] for t in tasks.values())
    assert all(t["retries"] == 0 for t in tasks.values())  # the job's schedule.retries
    assert all(t["backoff"] == 2.0 for t in tasks.values())  # the delay doubles per try

    backfill = found["dags"][f"backfill_{JOB}"]
    assert backfill["timetable"] == "NullTimetable" and backfill["max_active_runs"] == 1
    assert {"batch-serving", "backfill", "e2e"} <= set(backfill["tags"])
    (task,) = backfill["tasks"].values()
    assert task["operator"] == "BatchServingCommand" and task["doc"]
    assert task["outlets"] == [f"predictions.{proj.model}"]
    for name in ("date_from", "date_to"):
        schema = backfill["params"][name]
        assert schema["type"] == "string" and schema["format"] == "date"
        assert "default" not in schema  # required: a run without it is refused


def test_repo_dags_import_cleanly_with_default_retries(tmp_path: Path) -> None:
    env = airflow_env(tmp_path / "airflow", REPO / "conf" / "jobs")
    found = load_dagbag(env)
    assert found["errors"] == {}
    assert found["config_module"] == str(REPO / "src" / "batch_serving" / "config" / "__init__.py")
    jobs = sorted(p.stem for p in (REPO / "conf" / "jobs").glob("*.yaml"))
    assert len(found["dags"]) == 2 * len(jobs) >= 2
    assert sum(d.startswith("backfill_") for d in found["dags"]) == len(jobs)
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
    dags_folder = dags_folder_for(conf_dir, tmp_path / "dags")
    found = load_dagbag(airflow_env(tmp_path / "airflow", conf_dir, dags_folder))
    assert found["dags"] == {}
    assert list(found["errors"]) == ["bad_dags.py"]  # its own DAG file (bundle-relative)
    (error,) = found["errors"].values()
    assert f"invalid config {conf_dir / 'bad.yaml'}: {key}" in error


def test_exit_codes_that_a_retry_cannot_fix_fail_at_once(tmp_path: Path) -> None:
    """The table itself; the DAG runs below show it acting through both kinds of task."""
    env = airflow_env(tmp_path / "airflow", REPO / "conf" / "jobs")
    found = run_in_airflow_venv(EXIT_CODE_PROBE % str(DAGS), env)
    assert found["outcome"] == {
        "0": "ok",
        "1": "retry",  # unexpected
        "2": "fail",  # config
        "3": "fail",  # model/alias/version unknown or not loadable
        "4": "fail",  # input validation
        "5": "retry",  # scoring
        "6": "retry",  # output validation
        "7": "retry",  # storage, lease held
        "8": "fail",  # publish refused
        "9": "retry",  # registry unreachable
        "137": "retry",  # killed
        "-9": "retry",
    }
    assert found["parsed"] == 4 and found["unparsed"] is None


# ---------------------------------------------------------------------------------------------
# `airflow dags test`: real runs
# ---------------------------------------------------------------------------------------------


def test_dags_test_waits_for_the_marker_then_scores_publishes_and_announces_the_date(
    project, model_name: str
) -> None:
    proj = project({"consumers.py": CONSUMERS.format(model=model_name)})
    dag_id = f"score_{JOB}"
    run = proj.start_dags_test(dag_id, str(RUN_DATE))
    out = proj.outputs[dag_id]
    # No input yet: the sensor pokes and is rescheduled (no worker slot between pokes) ...
    wait_until("the sensor rescheduled", lambda: proj.reschedules(dag_id) >= 1, 120, run)
    proj.write_input(RUN_DATE, marker=False)  # ... the files land, the loader is not done ...
    landed = proj.reschedules(dag_id)
    wait_until("2 pokes after the files", lambda: proj.reschedules(dag_id) >= landed + 2, 60, run)
    assert proj.tasks(dag_id)["validate_input"][0] is None  # nothing ran on half an input
    (proj.root / "warehouse" / f"ds={RUN_DATE}" / "_SUCCESS").touch()  # ... now it is
    assert run.wait(timeout=600) == 0, out.read_text()[-4000:]
    log = out.read_text()
    # spark-submit's driver gets the packaged log4j2 file: the job's summary, no JVM noise
    assert f"batch-serving: job {JOB} scored {RUN_DATE}" in log
    assert not [line for line in log.splitlines() if " WARN " in line], log[-4000:]

    tasks = proj.tasks(dag_id)
    assert all(state == "success" for state, _ in tasks.values()), tasks
    assert tasks["wait_for_input"] == ("success", 1)  # a reschedule is not a retry
    committed = proj.predictions / f"ds={RUN_DATE}"
    assert pq.read_table(committed).num_rows == 300
    manifest = json.loads((committed / "_manifest.json").read_text())
    assert manifest["output"]["rows"] == 300 and manifest["run_date"] == str(RUN_DATE)
    pointer = json.loads((proj.root / "out" / "serving" / proj.model / "CURRENT.json").read_text())
    assert pointer["current"].startswith(f"{RUN_DATE}_v")

    events = {e["asset"]: e for e in proj.asset_events()}
    assert set(events) == {f"predictions.{proj.model}", f"serving.{proj.model}"}
    scored, served = events[f"predictions.{proj.model}"], events[f"serving.{proj.model}"]
    assert (scored["task"], scored["key"], served["task"], served["key"]) == (
        "score",
        str(RUN_DATE),
        "publish",
        str(RUN_DATE),
    )
    assert scored["extra"] == {
        "job": JOB,
        "ds": str(RUN_DATE),
        "path": str(committed),
        "run_id": manifest["run_id"],
        "rows": 300,
        "model_version": manifest["model"]["version"],
    }
    assert served["extra"]["snapshot"] == pointer["current"]
    # A partition-aware consumer is queued for the date; a plain asset schedule is not
    # (Airflow 3.3 queues those only for events without a partition key).
    assert proj.query("SELECT target_dag_id, partition_key FROM asset_partition_dag_run") == [
        ("consume_partitioned", str(RUN_DATE))
    ]
    assert proj.query("SELECT target_dag_id FROM asset_dag_run_queue") == []


@pytest.mark.parametrize(
    ("failing", "mark_success"),
    [("validate_input", None), ("score", "validate_input")],
    ids=["check-input", "spark-submit"],
)
def test_input_missing_a_column_fails_on_the_first_try(
    project, failing: str, mark_success: str | None
) -> None:
    """Exit 4 is not retried, although the job allows 2 retries 1.2 s apart; for ``score`` the
    check-input task is marked done so that spark-submit itself meets the bad input."""
    proj = project(retries=2, retry_delay_minutes=0.02)
    proj.write_input(RUN_DATE, customers(300).drop(columns=["tenure_months"]))
    args = ["--mark-success-pattern", mark_success] if mark_success else []
    run = proj.dags_test(f"score_{JOB}", str(RUN_DATE), *args)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and "DagRun failed" in output
    tasks = proj.tasks(f"score_{JOB}")
    assert tasks[failing] == ("failed", 1), tasks
    assert proj.earlier_tries(f"score_{JOB}", failing) == []
    assert "exited with 4 (input validation failed" in output  # the meaning, from errors.py
    assert "a retry cannot fix this" in output
    assert "tenure_months" in output  # the CLI's message names the missing column
    assert tasks["validate_output"][0] == "upstream_failed"
    assert not (proj.predictions / f"ds={RUN_DATE}").exists()
    assert proj.asset_events() == []


def test_held_lease_is_retried_with_backoff_then_scores(project, sleeper) -> None:
    """Exit 7 (another live run holds the date's lease) is retried: the first try of ``score``
    fails, the holder goes away during the backoff, the second try takes the lease and commits."""
    proj = project(sections=LEAN, retries=2, retry_delay_minutes=0.05, publish=False)  # 3 s
    proj.write_input(RUN_DATE)
    lease_file = proj.root / "out" / "_leases" / "predictions" / proj.model / f"ds={RUN_DATE}.json"
    lease = HeldLease(lease_file, sleeper.pid)
    lease.beat()
    dag_id = f"score_{JOB}"
    run = proj.start_dags_test(dag_id, str(RUN_DATE))

    def first_try_failed() -> bool:
        lease.beat()
        return proj.tasks(dag_id).get("score", ("",))[0] == "up_for_retry"

    wait_until("score up for retry", first_try_failed, 300, run)
    sleeper.kill()
    sleeper.wait()  # reaped: its pid is gone, so the lease is stale
    assert run.wait(timeout=600) == 0, proj.outputs[dag_id].read_text()[-4000:]

    output = proj.outputs[dag_id].read_text()
    assert "spark-submit jobs/score.py exited with 7" in output
    assert "held-by-test" in output  # the job's message names the holder
    tasks = proj.tasks(dag_id)
    assert tasks["score"] == ("success", 2)
    assert tasks["validate_output"] == ("success", 1)
    ((try_number, state, _, first_end),) = proj.earlier_tries(dag_id, "score")
    assert (try_number, state) == (1, "failed")  # the history's word for a retried try
    (second_start,) = proj.query(
        "SELECT start_date FROM task_instance WHERE dag_id = ? AND task_id = 'score'", dag_id
    )[0]
    waited = dt.datetime.fromisoformat(second_start) - dt.datetime.fromisoformat(first_end)
    assert waited >= dt.timedelta(seconds=3)  # retry_delay (3 s) x 2^0 at least
    assert not lease_file.exists()  # taken over, then released by the run
    assert pq.read_table(proj.predictions / f"ds={RUN_DATE}").num_rows == 300
    (event,) = proj.asset_events()
    assert (event["asset"], event["key"]) == (f"predictions.{proj.model}", str(RUN_DATE))


def test_backfill_dag_scores_a_checked_range_and_reruns_idempotently(project) -> None:
    proj = project(sections=LEAN, retries=2, retry_delay_minutes=0.02)
    first, last = RUN_DATE - dt.timedelta(days=1), RUN_DATE
    for day in (first, last):
        proj.write_input(day)
    dag_id = f"backfill_{JOB}"

    def backfill(date_from: str, date_to: str) -> subprocess.CompletedProcess:
        return proj.dags_test(
            dag_id, "--conf", json.dumps({"date_from": date_from, "date_to": date_to})
        )

    refused = backfill("2026-11-31", str(last))  # not a date: the run is not even created
    assert refused.returncode != 0
    assert "2026-11-31" in refused.stdout + refused.stderr
    assert proj.query("SELECT count(*) FROM dag_run") == [(0,)]

    reversed_range = backfill(str(last), str(first))  # exit 2: fails at once
    assert reversed_range.returncode != 0
    assert proj.tasks(dag_id) == {"backfill": ("failed", 1)}
    assert "is before --from" in reversed_range.stdout + reversed_range.stderr

    done = backfill(str(first), str(last))
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    runs = {}
    for day in (first, last):
        partition = proj.predictions / f"ds={day}"
        assert pq.read_table(partition).num_rows == 300
        runs[day] = json.loads((partition / "_manifest.json").read_text())["run_id"]
    events = [e for e in proj.asset_events() if e["dag"] == dag_id]
    assert sorted(e["key"] for e in events) == [str(first), str(last)]
    assert all(e["asset"] == f"predictions.{proj.model}" for e in events)
    assert events[0]["extra"] == {"job": JOB, "backfill": [str(first), str(last)]}

    again = backfill(str(last), str(last))  # a rerun replaces that date only
    assert again.returncode == 0, (again.stdout[-4000:], again.stderr[-4000:])
    rerun = json.loads((proj.predictions / f"ds={last}" / "_manifest.json").read_text())
    assert rerun["run_id"] != runs[last] and rerun["output"]["rows"] == 300
    kept = json.loads((proj.predictions / f"ds={first}" / "_manifest.json").read_text())
    assert kept["run_id"] == runs[first]
