"""Airflow on a real cluster (issue #29 item 3): the score task's spark-submit command carries
the job's (overlaid) ``spark:`` section, the input sensor waits for a completeness marker on
local disks and object stores, one bad job file hides only its own DAGs, and the Spark tasks
have a pool, a time limit and a configurable failure callback.

The path and argument logic (``inputs.py``, ``submit.py``) has no Airflow in it and is tested
here in the jobs venv (S3 against moto); what Airflow builds from it is read in Airflow's venv.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, RUN_DATE

from batch_serving.config import JobConfig, StorageConfig, load_config
from batch_serving.errors import ConfigError
from batch_serving.storage import location

sys.path.insert(0, str(REPO / "airflow_dags"))
from batch_serving_airflow import generate
from batch_serving_airflow.inputs import awaited, partition_ready, partition_uri
from batch_serving_airflow.submit import submit_arguments

AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"
DS = str(RUN_DATE)


def job_config(input_path: str, spark: dict[str, Any] | None = None, **schedule: Any) -> JobConfig:
    return JobConfig.model_validate(
        {
            "job": "marker_job",
            "model": {"name": "m", "alias": "champion", "tracking_uri": "sqlite:////tmp/m.db"},
            "input": {"path": input_path},
            "entity_columns": ["customer_id"],
            "output": {"root": "/tmp/out"},
            "spark": spark or {},
            "schedule": schedule,
        }
    )


# ---------------------------------------------------------------------------------------------
# spark-submit arguments (no Airflow)
# ---------------------------------------------------------------------------------------------


def test_prod_overlay_spark_section_becomes_submit_arguments(tmp_path: Path) -> None:
    cfg = load_config(REPO / "conf" / "jobs" / "churn.yaml", env="prod")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "b.jar").touch()
    (lib / "a.jar").touch()
    submit = submit_arguments(cfg, "-Dlog4j2.configurationFile=file:///q", lib)
    assert submit.arguments == {
        "deploy_mode": "client",
        "yarn_queue": "ml-batch",
        "archives": "hdfs:///apps/batch-serving/batch-serving-env.tar.gz#environment",
        "jars": f"{lib / 'a.jar'},{lib / 'b.jar'}",
    }
    assert submit.conf == {
        "spark.pyspark.python": "./environment/bin/python",
        "spark.executor.instances": "8",
        "spark.executor.cores": "4",
        "spark.executor.memory": "8g",
        "spark.driver.memory": "4g",
        "spark.sql.shuffle.partitions": "64",
        "spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile=file:///q",
    }
    assert (submit.name, submit.master) == ("churn-nightly-prod", "yarn")


def test_job_jars_and_java_options_win_over_ours(tmp_path: Path) -> None:
    own = {"spark.jars": "/opt/delta.jar", "spark.driver.extraJavaOptions": "-Dx=1"}
    cfg = job_config("/tmp/in", spark={"conf": own})
    (tmp_path / "connector.jar").touch()
    submit = submit_arguments(cfg, "-Dquiet=1", tmp_path)
    assert submit.arguments == {"jars": "/opt/delta.jar"}  # not the connector jars too
    assert submit.conf["spark.driver.extraJavaOptions"] == "-Dquiet=1 -Dx=1"  # the job's last
    assert submit.name == "batch-serving-marker_job"
    assert submit_arguments(cfg, "", tmp_path / "none").conf["spark.driver.extraJavaOptions"] == (
        "-Dx=1"
    )


# ---------------------------------------------------------------------------------------------
# The input sensor's completeness check (no Airflow)
# ---------------------------------------------------------------------------------------------


def test_local_partition_is_ready_only_once_its_marker_is_there(tmp_path: Path) -> None:
    cfg = job_config(str(tmp_path / "warehouse"))
    partition = tmp_path / "warehouse" / f"ds={DS}"
    assert partition_ready(cfg, DS) is False  # no partition at all
    partition.mkdir(parents=True)
    (partition / "part-00000.parquet").write_bytes(b"PAR1")
    assert partition_ready(cfg, DS) is False  # half-written: data, no marker
    (partition / "_SUCCESS").touch()
    assert partition_ready(cfg, DS) is True
    assert awaited(cfg, DS) == f"{partition}/_SUCCESS"
    assert partition_ready(cfg, "2026-11-23") is False  # another date's marker does not count


def test_marker_name_is_configurable_and_null_means_any_parquet(tmp_path: Path) -> None:
    partition = tmp_path / f"ds={DS}"
    partition.mkdir()
    (partition / "_SUCCESS").touch()
    custom = job_config(str(tmp_path), input_marker="_LOADED")
    assert partition_ready(custom, DS) is False  # _SUCCESS is not the configured marker
    (partition / "_LOADED").touch()
    assert partition_ready(custom, DS) is True

    any_parquet = job_config(str(tmp_path), input_marker=None)
    assert partition_ready(any_parquet, "2026-11-23") is False
    assert partition_ready(any_parquet, DS) is False  # markers are not data
    (partition / "part-0.parquet").write_bytes(b"PAR1")
    assert partition_ready(any_parquet, DS) is True
    assert awaited(any_parquet, DS) == f"{partition}/*.parquet"


@pytest.mark.parametrize("marker", ["a/_SUCCESS", "*.done", ""])
def test_marker_must_be_a_plain_file_name(marker: str) -> None:
    with pytest.raises(Exception, match="input_marker"):
        job_config("/tmp/in", input_marker=marker)


def test_input_marker_key_is_named_when_invalid_in_a_job_file(tmp_path: Path) -> None:
    job = yaml.safe_load((REPO / "conf" / "jobs" / "churn.yaml").read_text())
    job["schedule"]["input_marker"] = "x/y"
    (tmp_path / "conf" / "jobs").mkdir(parents=True)
    path = tmp_path / "conf" / "jobs" / "churn.yaml"
    path.write_text(yaml.safe_dump(job))
    with pytest.raises(ConfigError, match=r"schedule\.input_marker"):
        load_config(path)


def test_s3_input_is_never_a_local_path() -> None:
    cfg = job_config("s3://bucket/warehouse/features/")
    assert partition_uri(cfg, DS) == f"s3://bucket/warehouse/features/ds={DS}"
    assert awaited(cfg, DS) == f"s3://bucket/warehouse/features/ds={DS}/_SUCCESS"


def test_date_must_be_rendered(tmp_path: Path) -> None:
    """A template that was not rendered (or a glob) is refused, not looked up as a path."""
    with pytest.raises(ValueError):
        partition_ready(job_config(str(tmp_path)), "{{ ds }}")


def test_s3_partition_waits_for_its_marker_on_the_object_store(s3: Any) -> None:
    bucket = f"bs-{uuid.uuid4().hex[:12]}"
    storage = StorageConfig.model_validate(s3.storage)
    location(f"s3://{bucket}", storage).mkdir()
    cfg = job_config(f"s3://{bucket}/warehouse").model_copy(update={"storage": storage})
    partition = location(f"s3://{bucket}/warehouse/ds={DS}", storage)
    assert partition_ready(cfg, DS) is False
    (partition / "part-00000.parquet").write_bytes(b"PAR1")
    assert partition_ready(cfg, DS) is False  # data without marker: still being written
    (partition / "_SUCCESS").write_bytes(b"")
    assert partition_ready(cfg, DS) is True


# ---------------------------------------------------------------------------------------------
# One DAG file per job file (no Airflow)
# ---------------------------------------------------------------------------------------------


def test_generate_writes_missing_dag_files_and_check_names_them(tmp_path: Path) -> None:
    conf_dir, dags = tmp_path / "conf", tmp_path / "dags"
    conf_dir.mkdir()
    dags.mkdir()
    (conf_dir / "a.yaml").touch()
    (conf_dir / "b.yaml").touch()
    (dags / "gone_dags.py").touch()
    args = ["--conf-dir", str(conf_dir), "--dags-folder", str(dags)]
    assert generate.main([*args, "--check"]) == 1
    assert generate.main(args) == 0
    assert (dags / "a_dags.py").read_text().endswith('globals().update(job_dags("a.yaml"))\n')
    assert (dags / "b_dags.py").exists()
    assert generate.orphans(conf_dir, dags) == [dags / "gone_dags.py"]
    (dags / "gone_dags.py").unlink()
    assert generate.main([*args, "--check"]) == 0


def test_every_repo_job_file_has_its_dag_file() -> None:
    conf_dir = REPO / "conf" / "jobs"
    assert generate.missing(conf_dir) == [] and generate.orphans(conf_dir) == []
    for job in conf_dir.glob("*.yaml"):
        expected = generate.TEMPLATE.format(name=job.name)
        assert generate.dag_file(job).read_text() == expected


# ---------------------------------------------------------------------------------------------
# What Airflow builds (Airflow's venv)
# ---------------------------------------------------------------------------------------------

SUBMIT_PROBE = """
import json
from batch_serving_airflow.dags import job_dags
task = job_dags("churn.yaml")["score_churn_nightly"].get_task("score")
print(json.dumps(task._get_hook()._build_spark_submit_command(task.application)))
"""

DAGBAG_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import BundleDagBag
folder = sys.argv[1]
bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="dags-folder")
print(json.dumps({
    "errors": {k.rsplit("/", 1)[-1]: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {t.task_id: {
        "pool": t.pool,
        "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
        "mode": getattr(t, "mode", None),
        "callback": [getattr(c, "__qualname__", "?") for c in
                     (t.on_failure_callback if isinstance(t.on_failure_callback, list)
                      else [t.on_failure_callback])],
    } for t in d.tasks} for d in bag.dags.values()},
}))
"""


def airflow_env(tmp_path: Path, conf_dir: Path, dags: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(dags)]),
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        BATCH_SERVING_HOME=str(REPO),
        BATCH_SERVING_CONF_DIR=str(conf_dir),
        BATCH_SERVING_VENV=str(REPO / ".venv"),
        **extra,
    )
    return env


def airflow_probe(code: str, env: dict[str, str], *args: str) -> Any:
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"{AIRFLOW_PYTHON} missing: `make install` creates it")
    probe = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    return json.loads(probe.stdout.strip().splitlines()[-1])


def dags_folder(tmp_path: Path, conf_dir: Path, **files: str) -> Path:
    """A DAG folder as a deployment has it: the library, its .airflowignore, one DAG file per
    job file (generate.py) and ``files``."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "batch_serving_airflow").symlink_to(REPO / "airflow_dags" / "batch_serving_airflow")
    (folder / ".airflowignore").write_text((REPO / "airflow_dags" / ".airflowignore").read_text())
    for job in sorted(conf_dir.glob("*.yaml")):
        generate.write(job, folder)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def job_file(conf_dir: Path, name: str, job: str, **schedule: Any) -> None:
    conf_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "job": job,
        "model": {"name": f"m_{job}", "alias": "champion", "tracking_uri": "sqlite:///m.db"},
        "input": {"path": "warehouse"},
        "entity_columns": ["customer_id"],
        "output": {"root": "out"},
        "schedule": schedule,
    }
    (conf_dir / name).write_text(yaml.safe_dump(body))


@pytest.mark.slow
def test_score_task_submits_the_prod_overlay_spark_settings(tmp_path: Path) -> None:
    """The command SparkSubmitHook really builds for the score task, with BATCH_SERVING_ENV=prod
    and a YARN connection whose extras say cluster mode (the job's deploy mode wins)."""
    conn = {"conn_type": "spark", "host": "yarn", "extra": {"deploy-mode": "cluster"}}
    env = airflow_env(
        tmp_path,
        REPO / "conf" / "jobs",
        REPO / "airflow_dags",
        BATCH_SERVING_ENV="prod",
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps(conn),
    )
    command = airflow_probe(SUBMIT_PROBE, env)
    flags = {
        command[i]: command[i + 1]
        for i in range(1, len(command) - 1)
        if command[i] in ("--master", "--deploy-mode", "--queue", "--archives", "--name", "--jars")
    }
    assert flags["--master"] == "yarn"
    assert flags["--deploy-mode"] == "client"
    assert flags["--queue"] == "ml-batch"
    assert flags["--archives"] == "hdfs:///apps/batch-serving/batch-serving-env.tar.gz#environment"
    assert flags["--name"] == "churn-nightly-prod"
    jars = sorted(str(p) for p in (REPO / "jars" / "lib").glob("*.jar"))
    assert flags.get("--jars", "").split(",") == jars if jars else "--jars" not in flags
    confs = {command[i + 1] for i, arg in enumerate(command) if arg == "--conf"}
    assert {
        "spark.executor.instances=8",
        "spark.executor.cores=4",
        "spark.executor.memory=8g",
        "spark.driver.memory=4g",
        "spark.pyspark.python=./environment/bin/python",
        "spark.sql.shuffle.partitions=64",
    } <= confs
    quiet = "spark.driver.extraJavaOptions=-Dlog4j2.configurationFile="
    assert any(c.startswith(quiet) for c in confs)
    application = command.index(str(REPO / "jobs" / "score.py"))
    assert command[application + 1 :] == [
        "--config",
        str(REPO / "conf" / "jobs" / "churn.yaml"),
        "--env",
        "prod",
        "--run-date",
        "{{ ds }}",
    ]


@pytest.mark.slow
def test_bad_job_file_hides_only_its_own_dags_and_tasks_get_pool_timeout_callback(
    tmp_path: Path,
) -> None:
    conf_dir = tmp_path / "conf" / "jobs"
    job_file(
        conf_dir,
        "good.yaml",
        "good",
        pool="spark",
        execution_timeout_minutes=90,
        on_failure_callback="team_alerts:page",
    )
    job_file(conf_dir, "plain.yaml", "plain")
    job_file(conf_dir, "bad.yaml", "bad", retry_count=3)  # a misspelt key
    job_file(conf_dir, "nocallback.yaml", "nocallback", on_failure_callback="team_alerts:missing")
    alerts = "def page(context):\n    print('paged', context)\n"
    folder = dags_folder(tmp_path, conf_dir, **{"team_alerts.py": alerts})
    found = airflow_probe(DAGBAG_PROBE, airflow_env(tmp_path, conf_dir, folder), str(folder))

    assert set(found["errors"]) == {"bad_dags.py", "nocallback_dags.py"}
    assert (
        f"invalid config {conf_dir / 'bad.yaml'}: schedule.retry_count"
        in found["errors"]["bad_dags.py"]
    )
    assert (
        "schedule.on_failure_callback 'team_alerts:missing'"
        in found["errors"]["nocallback_dags.py"]
    )
    assert sorted(found["dags"]) == ["backfill_good", "backfill_plain", "score_good", "score_plain"]

    good, plain = found["dags"]["score_good"], found["dags"]["score_plain"]
    assert good["score"]["pool"] == "spark" and good["score"]["timeout"] == 90 * 60
    assert found["dags"]["backfill_good"]["backfill"]["pool"] == "spark"
    assert found["dags"]["backfill_good"]["backfill"]["timeout"] is None  # a range has no limit
    assert all(t["callback"] == ["page"] for t in good.values())
    assert plain["score"]["pool"] == "default_pool" and plain["score"]["timeout"] == 180 * 60
    assert all(t["callback"] == ["log_failure"] for t in plain.values())
    assert plain["wait_for_input"]["mode"] == "reschedule"  # no worker slot while waiting
    assert plain["validate_input"]["timeout"] is None  # the limit is the Spark task's
