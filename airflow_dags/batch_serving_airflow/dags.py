"""The DAGs of one job file: ``score_<job>`` (nightly) and ``backfill_<job>`` (on demand).

``job_dags("churn.yaml")`` is all a job's DAG file calls (``airflow_dags/churn_dags.py``): one
DAG file per job file, so a broken job file is the import error of its own DAG file only and
every other job keeps running.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, Context, CronTriggerTimetable, Param

import batch_serving
from batch_serving.config import JobConfig, load_config

from . import __doc__ as PACKAGE_DOC
from . import settings
from .assets import (
    announce,
    predictions_asset,
    predictions_extra,
    serving_asset,
    serving_extra,
)
from .inputs import awaited
from .notify import failure_callback
from .operators import BatchServingCommand, JsonRecordCommand, ScoreSubmitOperator
from .sensors import InputPartitionSensor, TablePartitionSensor
from .submit import submit_arguments

log = logging.getLogger("batch_serving.airflow")

# The packaged log4j2 file keeps a healthy spark-submit run free of Hive/metastore WARN lines
# (a driver started by spark-submit never sees spark/session.py's default Java options).
QUIET_DRIVER = (
    "-Dlog4j2.configurationFile="
    + (Path(batch_serving.__file__).parent / "spark" / "log4j2.properties").as_uri()
)
DATE = r"^\d{4}-\d{2}-\d{2}$"


@dataclass(frozen=True)
class Job:
    """One job file, read (with any overlay) exactly as its tasks read it, and what every
    task of its DAGs shares: the CLI, the jobs environment, retries, the failure callback."""

    config_file: Path
    cfg: JobConfig
    env_overlay: str = ""

    @classmethod
    def load(cls, config_file: Path, env_overlay: str = "") -> Job:
        return cls(config_file, load_config(config_file, env=env_overlay or None), env_overlay)

    @property
    def job_args(self) -> list[str]:
        """``--config`` (and ``--env``), as every command takes them."""
        env = ["--env", self.env_overlay] if self.env_overlay else []
        return ["--config", str(self.config_file), *env]

    @property
    def default_args(self) -> dict[str, Any]:
        sched = self.cfg.schedule
        return {
            "owner": sched.owner,
            "retries": sched.retries,
            "retry_delay": dt.timedelta(minutes=sched.retry_delay_minutes),
            "retry_exponential_backoff": 2.0,  # a multiplier in Airflow 3.3 (True: read as 2.0)
            "max_retry_delay": dt.timedelta(minutes=sched.max_retry_delay_minutes),
            "on_failure_callback": failure_callback(
                sched.on_failure_callback, str(self.config_file)
            ),
        }

    @property
    def spark_task_args(self) -> dict[str, Any]:
        """What a task running Spark takes: its pool, and (nightly) its time limit."""
        sched = self.cfg.schedule
        timeout = sched.execution_timeout_minutes
        return {
            "pool": sched.pool,
            "execution_timeout": dt.timedelta(minutes=timeout) if timeout else None,
        }

    @property
    def start_date(self) -> dt.datetime:
        start = self.cfg.schedule.start_date
        return dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)

    @property
    def tags(self) -> list[str]:
        return ["batch-serving", f"model:{self.cfg.model.name}", *self.cfg.schedule.tags]

    def command(
        self,
        task_id: str,
        arguments: list[str],
        doc: str,
        operator: type[BatchServingCommand] = BatchServingCommand,
        **kwargs: Any,
    ) -> BatchServingCommand:
        return operator(
            task_id=task_id,
            executable=str(settings.VENV / "bin" / "batch-serving"),
            arguments=arguments,
            env=settings.run_env(),
            doc_md=doc,
            **kwargs,
        )


def timetable(cron: str) -> CronTriggerTimetable:
    """The cron schedule as a trigger timetable in UTC, whatever Airflow's
    ``[scheduler] create_cron_data_intervals`` says: a run's logical date is the moment it is
    scheduled, so the 03:00 run of day D has ``{{ ds }}`` = D and scores ds=D."""
    return CronTriggerTimetable(cron, timezone="UTC")


def input_sensor(job: Job) -> BaseOperator:
    """The task before ``validate_input``: the sensor of the date's partition; for an
    ``input.table`` with ``resolve_input`` upstream of it (the table's directory comes from the
    metastore, which only a Spark session reads: once, in the jobs environment), whose record
    the sensor reads from XCom."""
    cfg, sched = job.cfg, job.cfg.schedule
    waiting: dict[str, Any] = {
        "task_id": "wait_for_input",
        "cfg": cfg,
        "poke_interval": sched.sensor_poke_seconds,
        "timeout": sched.sensor_timeout_hours * 3600,
        "doc_md": f"Waits for `{awaited(cfg, '{{ ds }}')}` (schedule.input_marker), poking "
        "every schedule.sensor_poke_seconds without holding a worker slot between pokes; "
        "fails after schedule.sensor_timeout_hours.",
    }
    if cfg.input.table is None:
        return InputPartitionSensor(**waiting)
    resolve = job.command(
        "resolve_input",
        ["resolve-input", *job.job_args, "--run-date", "{{ ds }}", "--json"],
        f"Resolves input.table {cfg.input.table} in the metastore (a Spark session, DESCRIBE "
        "TABLE EXTENDED) to the directory of the date's partition; its JSON record (partition, "
        "marker) is this task's XCom, which wait_for_input reads.",
        operator=JsonRecordCommand,
    )
    wait = TablePartitionSensor(resolved_by=resolve.task_id, **waiting)
    resolve >> wait
    return wait


def build_score_dag(job: Job) -> DAG:
    """The nightly DAG: (resolve a table input ->) wait -> check input -> score -> check
    output -> publish."""
    cfg, sched = job.cfg, job.cfg.schedule
    predictions, serving = predictions_asset(cfg.model.name), serving_asset(cfg.model.name)
    with DAG(
        dag_id=f"score_{cfg.job}",
        description=f"Nightly batch scoring of {cfg.model.name} ({job.config_file.name})",
        schedule=timetable(sched.cron),
        start_date=job.start_date,
        catchup=sched.catchup,
        max_active_runs=sched.max_active_runs,
        default_args=job.default_args,
        tags=[*job.tags, "scoring"],
        doc_md=PACKAGE_DOC,
    ) as dag:
        wait = input_sensor(job)
        validate_input = job.command(
            "validate_input",
            ["check-input", *job.job_args, "--run-date", "{{ ds }}"],
            "Registry reachable, alias resolves, the model's columns are in the input.",
        )
        score = ScoreSubmitOperator(
            task_id="score",
            application=str(settings.HOME / "jobs" / "score.py"),
            application_args=[*job.job_args, "--run-date", "{{ ds }}"],
            conn_id=sched.spark_conn_id,
            submit=submit_arguments(cfg, QUIET_DRIVER, settings.CONNECTOR_JARS, settings.S3A_JARS),
            env_vars=settings.run_env(),
            outlets=[predictions],
            announcer=lambda context: announce(
                context, predictions, [context["ds"]], predictions_extra(cfg, context["ds"])
            ),
            doc_md=f"Scores the date and commits predictions/{cfg.model.name}/ds={{{{ ds }}}} "
            f"atomically; then emits Asset {predictions.name} with partition key {{{{ ds }}}}. "
            "spark-submit gets the job's whole spark.conf; pool schedule.pool, time limit "
            "schedule.execution_timeout_minutes.",
            **job.spark_task_args,
        )
        validate_output = job.command(
            "validate_output",
            ["check-output", *job.job_args, "--run-date", "{{ ds }}"],
            "The committed partition reconciles with its input and passed its gates.",
        )
        chain = wait >> validate_input >> score >> validate_output
        if sched.publish:
            publish = job.command(
                "publish",
                ["publish", *job.job_args, "--run-date", "{{ ds }}"],
                "Makes the date's predictions the lookup API's current snapshot; then emits "
                f"Asset {serving.name} with partition key {{{{ ds }}}}.",
                outlets=[serving],
                announcer=lambda context: announce(
                    context, serving, [context["ds"]], serving_extra(cfg, context["ds"])
                ),
            )
            chain >> publish
    return dag


def backfill_dates(context: Context) -> list[str]:
    """Every date of the run's range, oldest first (the command checked the range)."""
    first = dt.date.fromisoformat(context["params"]["date_from"])
    last = dt.date.fromisoformat(context["params"]["date_to"])
    return [str(first + dt.timedelta(days=n)) for n in range((last - first).days + 1)]


def build_backfill_dag(job: Job) -> DAG:
    """On demand: score a range of dates with ``batch-serving backfill`` (one Spark session).
    Its task takes the Spark pool; no time limit (a range takes as long as it has dates)."""
    cfg = job.cfg
    predictions = predictions_asset(cfg.model.name)
    with DAG(
        dag_id=f"backfill_{cfg.job}",
        description=f"Backfill a date range of {cfg.model.name} ({job.config_file.name})",
        schedule=None,
        start_date=job.start_date,
        catchup=False,
        max_active_runs=1,
        default_args=job.default_args,
        tags=[*job.tags, "backfill"],
        params={
            "date_from": Param(
                type="string", format="date", pattern=DATE, description="first date, YYYY-MM-DD"
            ),
            "date_to": Param(
                type="string",
                format="date",
                pattern=DATE,
                description="last date, YYYY-MM-DD (not before date_from)",
            ),
        },
        doc_md=PACKAGE_DOC,
    ) as dag:
        job.command(
            "backfill",
            [
                "backfill",
                *job.job_args,
                "--from",
                "{{ params.date_from }}",
                "--to",
                "{{ params.date_to }}",
            ],
            "Scores every date from date_from to date_to, oldest first, in one Spark session "
            "(spark.master of the job file); each date replaces its own partition, so a rerun "
            f"is idempotent. Then emits Asset {predictions.name} with one partition key per "
            "date. Stops at the first failing date: the dates before it are committed but "
            "announced only by a rerun.",
            pool=cfg.schedule.pool,
            outlets=[predictions],
            announcer=lambda context: announce(
                context,
                predictions,
                backfill_dates(context),
                {
                    "job": cfg.job,
                    "backfill": [context["params"][k] for k in ("date_from", "date_to")],
                },
            ),
        )
    return dag


def job_dags(job_file: str, conf_dir: Path | None = None) -> dict[str, DAG]:
    """The two DAGs of ``conf_dir/job_file`` (default ``BATCH_SERVING_CONF_DIR``), by dag_id,
    for the calling DAG file's globals. A bad job file raises ConfigError naming the file and
    the key: Airflow shows it as that DAG file's import error, and only its DAGs are missing."""
    job = Job.load((conf_dir or settings.CONF_DIR) / job_file, settings.ENV_OVERLAY)
    return {dag.dag_id: dag for dag in (build_score_dag(job), build_backfill_dag(job))}
