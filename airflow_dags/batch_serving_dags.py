"""One nightly Airflow DAG per scoring job in ``conf/jobs/*.yaml`` (adding a job = adding a YAML).

Runs in Airflow's own virtualenv (``.venv-airflow``), which has the project installed without
its dependencies (``pip install --no-deps -e .``): this file imports Airflow and
``batch_serving.config`` (pydantic, pydantic-settings, PyYAML only), so a job file is read with
the jobs' own rules and a bad one is a DAG import error naming the key. The tasks call the jobs
environment's executables (``.venv/bin/spark-submit``, ``.venv/bin/batch-serving``), so
Airflow's dependencies never meet Spark's.

    wait_for_input  sensor: the input partition ds={{ ds }} has Parquet files (reschedule mode)
    validate_input  batch-serving check-input: registry/alias, columns, row count (no Spark)
    score           SparkSubmitOperator: jobs/score.py --run-date {{ ds }} (GX gates inside;
                    commit is atomic, a rerun replaces only that date)
    validate_output batch-serving check-output: committed, reconciled, gates passed
    publish         batch-serving publish: the lookup API's current snapshot (if schedule.publish)

Settings per job come from the YAML's ``schedule:`` section (cron, start_date, catchup,
retries with exponential backoff, max_active_runs, sensor timing, tags; defaults in
``batch_serving.config.ScheduleConfig``). Environment:
``BATCH_SERVING_HOME`` (project root; default: this file's parent directory),
``BATCH_SERVING_CONF_DIR`` (default ``$BATCH_SERVING_HOME/conf/jobs``),
``BATCH_SERVING_VENV`` (default ``$BATCH_SERVING_HOME/.venv``), ``BATCH_SERVING_ENV`` (an
overlay name passed as ``--env``). Failures call ``on_failure`` below: the hook point for
paging/Slack; it logs one structured line by default.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG

from batch_serving.config import load_config
from batch_serving.errors import ConfigError

log = logging.getLogger("batch_serving.airflow")

HOME = Path(os.environ.get("BATCH_SERVING_HOME", Path(__file__).resolve().parents[1]))
CONF_DIR = Path(os.environ.get("BATCH_SERVING_CONF_DIR", HOME / "conf" / "jobs"))
VENV = Path(os.environ.get("BATCH_SERVING_VENV", HOME / ".venv"))
ENV_OVERLAY = os.environ.get("BATCH_SERVING_ENV", "")


def on_failure(context: dict[str, Any]) -> None:
    """Failure hook point: replace or extend (pager, Slack, ticket). Logs one line by default."""
    ti = context.get("task_instance")
    log.error(
        "batch-serving task failed: dag=%s task=%s date=%s try=%s log=%s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        context.get("ds"),
        getattr(ti, "try_number", "?"),
        getattr(ti, "log_url", "?"),
    )


def input_ready(input_dir: str, partition_column: str, ds: str) -> bool:
    """True once the date's partition holds at least one Parquet file."""
    partition = Path(input_dir) / f"{partition_column}={ds}"
    return partition.is_dir() and any(partition.glob("*.parquet"))


def build_dag(config_file: Path) -> DAG:
    """One job file's DAG; the file is read (with any overlay) exactly as its tasks read it."""
    cfg = load_config(config_file, env=ENV_OVERLAY or None)
    name, model, sched = cfg.job, cfg.model.name, cfg.schedule
    env_flag = f" --env {ENV_OVERLAY}" if ENV_OVERLAY else ""
    cli = f"{VENV / 'bin' / 'batch-serving'} {{cmd}} --config {config_file}{env_flag}"
    run_env = {
        "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYSPARK_PYTHON": str(VENV / "bin" / "python"),
        "PYSPARK_DRIVER_PYTHON": str(VENV / "bin" / "python"),
        "JAVA_HOME": os.environ.get("JAVA_HOME", ""),
    }
    run_env = {k: v for k, v in run_env.items() if v}
    default_args = {
        "owner": sched.owner,
        "retries": sched.retries,
        "retry_delay": dt.timedelta(minutes=sched.retry_delay_minutes),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=sched.max_retry_delay_minutes),
        "on_failure_callback": on_failure,
    }
    start = sched.start_date
    with DAG(
        dag_id=f"score_{name}",
        description=f"Nightly batch scoring of {model} ({config_file.name})",
        schedule=sched.cron,
        start_date=dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC),
        catchup=sched.catchup,
        max_active_runs=sched.max_active_runs,
        default_args=default_args,
        tags=["batch-serving", "scoring", f"model:{model}", *sched.tags],
        doc_md=__doc__,
    ) as dag:
        wait = PythonSensor(
            task_id="wait_for_input",
            python_callable=input_ready,
            op_kwargs={
                "input_dir": cfg.input.path,  # absolute: load_config resolved it
                "partition_column": cfg.input.partition_column,
                "ds": "{{ ds }}",
            },
            mode="reschedule",
            poke_interval=sched.sensor_poke_seconds,
            timeout=sched.sensor_timeout_hours * 3600,
            doc_md="Waits for the input partition of the logical date (Parquet files present).",
        )

        def cli_task(task_id: str, command: str, doc: str) -> BashOperator:
            return BashOperator(
                task_id=task_id,
                bash_command=cli.format(cmd=command) + " --run-date {{ ds }}",
                env=run_env,
                append_env=True,
                doc_md=doc,
            )

        validate_input = cli_task(
            "validate_input",
            "check-input",
            "Registry reachable, alias resolves, the model's columns are in the input.",
        )
        score = SparkSubmitOperator(
            task_id="score",
            application=str(HOME / "jobs" / "score.py"),
            application_args=[
                "--config",
                str(config_file),
                "--run-date",
                "{{ ds }}",
                *(["--env", ENV_OVERLAY] if ENV_OVERLAY else []),
            ],
            conn_id="spark_default",
            name=f"batch-serving-{name}",
            env_vars=run_env,
            doc_md="Scores the date and commits predictions/<model>/ds={{ ds }} atomically.",
        )
        validate_output = cli_task(
            "validate_output",
            "check-output",
            "The committed partition reconciles with its input and passed its gates.",
        )
        chain = wait >> validate_input >> score >> validate_output
        if sched.publish:
            publish = cli_task(
                "publish",
                "publish",
                "Makes the date's predictions the lookup API's current snapshot.",
            )
            chain >> publish
    return dag


def build_dags(conf_dir: Path) -> list[DAG]:
    """Every job's DAG; any invalid job file fails the import, listing every invalid file
    (Airflow shows it as this file's import error) rather than scheduling with a guess."""
    dags, problems = [], []
    for config_file in sorted(conf_dir.glob("*.yaml")):
        try:
            dags.append(build_dag(config_file))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return dags


for _dag in build_dags(CONF_DIR):
    globals()[_dag.dag_id] = _dag
