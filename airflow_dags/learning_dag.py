"""Airflow DAGs ``learn_<job>``: online learning with gated promotion (issue #25), one per job
file that has a learning file ``conf/learning/<job file name>`` (beside ``conf/jobs/``; a job
without one has no learning DAG). Each run, on the learning file's ``cron`` (UTC)::

    learn     batch-serving learn --no-snapshot --run-date <ds - 1 day>: the day's labels
              (complete once the day is over) matched point in time to the predictions and
              inputs, learned from the checkpoint (a rerun learns nothing twice)
    register  batch-serving snapshot: the learner registered as @challenger if it learned
              anything since the last snapshot
    shadow    spark-submit jobs/score.py --run-date <ds>: the job scores its date again with
              the challenger as the job file's shadow member (the served columns are the
              champion's, unchanged); the challenger is proven to load and score on Spark, and
              the run manifest compares it with the champion
    promote   batch-serving promote --run-date <ds - 1 day>: @champion moves only if every gate
              of the learning file passes on the last evaluation_days of labels

The job file must declare that shadow member (``members: {challenger: {name: <model>, alias:
challenger, role: shadow}}``): without it, the DAG file's import error names the job and the
member to add. Register a first challenger (``batch-serving learn``) before adding the member,
or the nightly score fails on the missing alias (exit 3).

Failures follow the jobs' exit codes (``batch_serving_airflow.exits``): 2, 3, 4 and 8 fail the
task at once, and so does 11 (a gate refused the challenger: the same labels and versions
refuse again; the champion stays); every other code is retried with backoff. Owner, retries,
pool and failure callback are the job file's ``schedule:`` section. A bad learning or job
file is this DAG file's import error naming the file: the learning DAGs are missing until it
is fixed, the score and backfill DAGs (their own DAG files) are not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.providers.standard.hooks.subprocess import SubprocessHook
from airflow.sdk import DAG, Context
from airflow.sdk.exceptions import AirflowFailException
from batch_serving_airflow import settings
from batch_serving_airflow.dags import QUIET_DRIVER, Job, timetable
from batch_serving_airflow.exits import fail_on_exit_code
from batch_serving_airflow.operators import BatchServingCommand, ScoreSubmitOperator
from batch_serving_airflow.submit import submit_arguments

from batch_serving.errors import ConfigError, PromotionGateError
from batch_serving.learning.settings import LearningConfig, load_learning_config

LEARNING_DIR = settings.CONF_DIR.parent / "learning"
LABEL_DAY = "{{ macros.ds_add(ds, -1) }}"  # yesterday's labels: that day is complete


def fail_on_learning_exit(code: int, what: str) -> None:
    """``fail_on_exit_code``, plus: a refused promotion fails at once (a retry of the same
    versions on the same labels is refused again)."""
    if code == PromotionGateError.exit_code:
        raise AirflowFailException(
            f"{what} exited with {code} (a promotion gate refused the challenger; @champion "
            "did not move): not retried, the next day's challenger is judged again"
        )
    fail_on_exit_code(code, what)


class LearningCommand(BatchServingCommand):
    """A ``batch-serving`` command whose exit codes follow ``fail_on_learning_exit``."""

    def execute(self, context: Context) -> None:
        self._hook = SubprocessHook()
        result = self._hook.run_command(
            [self.executable, *self.arguments], env={**os.environ, **self.env}
        )
        fail_on_learning_exit(result.exit_code, f"batch-serving {self.arguments[0]}")


def check_shadow(job: Job, learning: LearningConfig, learning_file: Path) -> None:
    """The job scores the challenger as a shadow, or the shadow task would prove nothing."""
    model, alias = job.cfg.model.name, learning.challenger_alias
    for member in job.cfg.members.values():
        if (member.name, member.alias, member.role) == (model, alias, "shadow"):
            return
    raise ConfigError(
        f"{job.config_file}: {learning_file} registers {model}@{alias}, but the job has no "
        f"shadow member scoring it; add members: {{challenger: {{name: {model}, alias: "
        f"{alias}, role: shadow}}}}"
    )


def command(job: Job, learning_file: Path, task_id: str, args: list[str], doc: str) -> Any:
    return LearningCommand(
        task_id=task_id,
        executable=str(settings.VENV / "bin" / "batch-serving"),
        arguments=[args[0], *job.job_args, "--learning", str(learning_file), *args[1:]],
        env=settings.run_env(),
        doc_md=doc,
    )


def build_learning_dag(job: Job, learning_file: Path) -> DAG:
    """learn -> register -> shadow -> promote for one job."""
    learning = load_learning_config(learning_file)
    check_shadow(job, learning, learning_file)
    cfg = job.cfg
    with DAG(
        dag_id=f"learn_{cfg.job}",
        description=f"Online learning and gated promotion of {cfg.model.name}",
        schedule=timetable(learning.cron),
        start_date=job.start_date,
        catchup=False,
        max_active_runs=1,
        default_args=job.default_args,
        tags=[*job.tags, "learning"],
        doc_md=__doc__,
    ) as dag:
        learn = command(
            job,
            learning_file,
            "learn",
            ["learn", "--run-date", LABEL_DAY, "--no-snapshot"],
            "Learns yesterday's labels, matched point in time to the predictions and the "
            "feature rows they were made from, from the checkpoint (nothing twice).",
        )
        register = command(
            job,
            learning_file,
            "register",
            ["snapshot"],
            f"Registers the learner as {cfg.model.name}@{learning.challenger_alias} if it "
            "learned anything since the last snapshot.",
        )
        shadow = ScoreSubmitOperator(
            task_id="shadow",
            application=str(settings.HOME / "jobs" / "score.py"),
            application_args=[*job.job_args, "--run-date", "{{ ds }}"],
            conn_id=cfg.schedule.spark_conn_id,
            submit=submit_arguments(cfg, QUIET_DRIVER, settings.CONNECTOR_JARS),
            env_vars=settings.run_env(),
            doc_md=f"Scores the date again with @{learning.challenger_alias} as the job's "
            "shadow member: the served columns stay the champion's; the run manifest compares "
            "the two.",
            **job.spark_task_args,
        )
        promote = command(
            job,
            learning_file,
            "promote",
            ["promote", "--run-date", LABEL_DAY, "--actor", f"airflow:learn_{cfg.job}"],
            f"Moves @{learning.champion_alias} to @{learning.challenger_alias} if every gate "
            "passes on the recent labels; a refusal (exit 11) fails the task without retries.",
        )
        learn >> register >> shadow >> promote
    return dag


def learning_dags(learning_dir: Path = LEARNING_DIR) -> dict[str, DAG]:
    """One DAG per learning file, by dag_id; its job file has the same name in the job
    directory (``BATCH_SERVING_CONF_DIR``)."""
    dags = {}
    for learning_file in sorted(learning_dir.glob("*.yaml")):
        job_file = settings.CONF_DIR / learning_file.name
        if not job_file.is_file():
            raise ConfigError(f"learning file {learning_file} has no job file {job_file}")
        dag = build_learning_dag(Job.load(job_file, settings.ENV_OVERLAY), learning_file)
        dags[dag.dag_id] = dag
    return dags


globals().update(learning_dags())
