"""Two Airflow DAGs per scoring job in ``conf/jobs/*.yaml`` (adding a job = adding a YAML).

Runs in Airflow's own virtualenv (``.venv-airflow``), which has the project installed without
its dependencies (``pip install --no-deps -e .``): this file imports Airflow and the light
parts of ``batch_serving`` (config, output layout, manifest, serving pointer: pydantic and
PyYAML only), so a job file is read with the jobs' own rules and a bad one is a DAG import
error naming the key. The tasks call the jobs environment's executables
(``.venv/bin/spark-submit``, ``.venv/bin/batch-serving``), so Airflow's dependencies never
meet Spark's.

``score_<job>``, nightly (``schedule.cron``)::

    wait_for_input  deferred until the input partition ds={{ ds }} has a Parquet file
                    (FileTrigger in the triggerer: no worker slot while waiting)
    validate_input  batch-serving check-input: registry/alias, columns, row count (no Spark)
    score           spark-submit jobs/score.py --run-date {{ ds }} (GX gates inside; commit
                    is atomic, a rerun replaces only that date); outlet: Asset
                    predictions.<model>, partition key {{ ds }}
    validate_output batch-serving check-output: committed, reconciled, gates passed
    publish         batch-serving publish (if schedule.publish); outlet: Asset
                    serving.<model>, partition key {{ ds }}

``backfill_<job>``, on demand only: params ``date_from`` / ``date_to`` (YYYY-MM-DD, checked
when the run is triggered); one task runs ``batch-serving backfill --from --to``, which
replaces each date's partition, so running a range again is idempotent. Outlet: Asset
predictions.<model>, one partition key per date of the range.

Failures: the commands' exit codes say whether a retry can help. 2 (config), 3 (registry,
model, alias or version), 4 (input validation) and 8 (publish refused) fail the task at once
(AirflowFailException, no retries); anything else (1 unexpected, 5 scoring, 6 output
validation, 7 storage or lease held, 9 registry unreachable, a signal) is retried
``schedule.retries`` times with exponential backoff.

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
import glob
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.hooks.subprocess import SubprocessHook
from airflow.providers.standard.triggers.file import FileTrigger
from airflow.sdk import DAG, Asset, BaseOperator, BaseSensorOperator, Context, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException

import batch_serving
from batch_serving.config import JobConfig, load_config
from batch_serving.errors import BatchServingError, ConfigError
from batch_serving.serving.pointer import ServingLayout, read_pointer
from batch_serving.tables.layout import predictions_layout
from batch_serving.tables.manifest import read_manifest

log = logging.getLogger("batch_serving.airflow")

HOME = Path(os.environ.get("BATCH_SERVING_HOME", Path(__file__).resolve().parents[1]))
CONF_DIR = Path(os.environ.get("BATCH_SERVING_CONF_DIR", HOME / "conf" / "jobs"))
VENV = Path(os.environ.get("BATCH_SERVING_VENV", HOME / ".venv"))
ENV_OVERLAY = os.environ.get("BATCH_SERVING_ENV", "")

# ---------------------------------------------------------------------------------------------
# Exit codes (``batch-serving --help``): which failures a retry can fix
# ---------------------------------------------------------------------------------------------

EXIT_CODES = {
    1: "unexpected error",
    2: "invalid config or arguments",
    3: "model/alias/version unknown or not loadable",
    4: "input validation failed",
    5: "too many rows could not be scored",
    6: "output validation failed",
    7: "storage error or another run holds the date's lease",
    8: "publish refused",
    9: "model registry unreachable",
}
# Retrying cannot change these: the same config, model and input fail the same way. An
# unreachable registry is exit 9, retried like the other transient failures.
NOT_RETRYABLE = frozenset({2, 3, 4, 8})
# The packaged log4j2 file keeps a healthy spark-submit run free of Hive/metastore WARN lines
# (a driver started by spark-submit never sees spark/session.py's default Java options).
QUIET_DRIVER = {
    "spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile="
    + (Path(batch_serving.__file__).parent / "spark" / "log4j2.properties").as_uri()
}
SPARK_SUBMIT_EXIT = re.compile(r"Error code is: (-?\d+)")


def fail_on_exit_code(code: int, what: str) -> None:
    """Raise for a failed command: AirflowFailException (the task fails now, no retries) when a
    retry cannot help, AirflowException (retried with backoff) for every other code."""
    if code == 0:
        return
    meaning = EXIT_CODES.get(code, "killed by a signal" if code < 0 else "unknown exit code")
    if code in NOT_RETRYABLE:
        raise AirflowFailException(
            f"{what} exited with {code} ({meaning}): a retry cannot fix this, so it is not "
            "retried; fix the cause, then clear the task"
        )
    raise AirflowException(f"{what} exited with {code} ({meaning}); retried if tries are left")


def spark_submit_exit_code(error: BaseException) -> int | None:
    """spark-submit's exit code from the provider's failure message ("... Error code is: N.").

    In client and local deploy modes the driver runs inside spark-submit, whose exit code is
    then the driver's (``sys.exit(main(...))`` in jobs/score.py). None when the message has no
    code (e.g. a cluster-mode status failure): then the task is retried as before.
    """
    match = SPARK_SUBMIT_EXIT.search(str(error))
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------
# Assets: what downstream DAGs schedule on
# ---------------------------------------------------------------------------------------------


def predictions_asset(model: str) -> Asset:
    """``predictions/<model>/``; one partitioned event per committed date (key: YYYY-MM-DD)."""
    return Asset(f"predictions.{model}")


def serving_asset(model: str) -> Asset:
    """The lookup API's current snapshot of ``model``; one event per published date."""
    return Asset(f"serving.{model}")


def announce(context: Context, asset: Asset, dates: list[str], extra: dict[str, Any]) -> None:
    """Attach partition keys (dates) and ``extra`` to the task's event for ``asset``; Airflow
    records it when the task succeeds."""
    event = context["outlet_events"][asset]
    event.add_partitions(dates)
    event.extra.update(extra)


def predictions_extra(cfg: JobConfig, ds: str) -> dict[str, Any]:
    """What a consumer needs to read the date: its path, and what the manifest says of it."""
    run_date = dt.date.fromisoformat(ds)
    partition = predictions_layout(cfg.output.root, cfg.model.name).partition_dir(run_date)
    extra: dict[str, Any] = {"job": cfg.job, "ds": ds, "path": str(partition)}
    try:
        manifest = read_manifest(partition)
    except BatchServingError as error:  # committed and checked already: say so, do not fail
        log.warning("asset event for %s without manifest details: %s", partition, error)
        return extra
    if manifest is not None:
        extra.update(
            run_id=manifest.run_id,
            rows=manifest.output.rows,
            model_version=manifest.model.version,
        )
    return extra


def serving_extra(cfg: JobConfig, ds: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"job": cfg.job, "ds": ds, "backends": list(cfg.publish.backends)}
    try:
        pointer = read_pointer(ServingLayout(cfg.serving_root), cfg.model.name)
    except BatchServingError as error:
        log.warning("asset event for serving.%s without snapshot id: %s", cfg.model.name, error)
        return extra
    if pointer is not None:
        extra["snapshot"] = pointer.current
    return extra


# ---------------------------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------------------------

Announcer = Callable[[Context], None]


class InputPartitionSensor(BaseSensorOperator):
    """Waits until a file matches ``pattern`` (a glob), deferred: the standard provider's
    ``FileTrigger`` polls in the triggerer every ``poke_interval`` seconds, so no worker slot
    is held while waiting. Fails (without retries) after ``timeout`` seconds."""

    template_fields = ("pattern",)

    def __init__(self, *, pattern: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pattern = pattern

    def poke(self, context: Context) -> bool:
        return any(os.path.isfile(path) for path in glob.glob(self.pattern))

    def execute(self, context: Context) -> None:
        if self.poke(context):
            return
        self.defer(
            trigger=FileTrigger(filepath=self.pattern, poke_interval=self.poke_interval),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: Any = None) -> None:
        if not event:
            raise AirflowException(f"trigger ended without finding {self.pattern}")
        log.info("input found: %s", self.pattern)


class BatchServingCommand(BaseOperator):
    """Runs ``batch-serving <arguments>`` (an argument list, no shell) and fails the task per
    ``fail_on_exit_code``; then ``announcer`` (if any) sets the outlet events."""

    template_fields = ("arguments",)

    def __init__(
        self,
        *,
        executable: str,
        arguments: list[str],
        env: dict[str, str],
        announcer: Announcer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.executable, self.arguments, self.env = executable, arguments, env
        self.announcer = announcer
        self._hook: SubprocessHook | None = None

    def execute(self, context: Context) -> None:
        self._hook = SubprocessHook()
        result = self._hook.run_command(
            [self.executable, *self.arguments], env={**os.environ, **self.env}
        )
        fail_on_exit_code(result.exit_code, f"batch-serving {self.arguments[0]}")
        if self.announcer is not None:
            self.announcer(context)

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.send_sigterm()


class ScoreSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator whose failures follow the score job's exit codes (read from the
    provider's error message, see ``spark_submit_exit_code``); then ``announcer`` (if any)
    sets the outlet events."""

    def __init__(self, *, announcer: Announcer | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.announcer = announcer

    def execute(self, context: Context) -> None:
        try:
            super().execute(context)
        except AirflowFailException:
            raise
        except AirflowException as error:
            code = spark_submit_exit_code(error)
            if code is None:
                raise
            fail_on_exit_code(code, "spark-submit jobs/score.py")
            raise
        if self.announcer is not None:
            self.announcer(context)


# ---------------------------------------------------------------------------------------------
# DAGs
# ---------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Job:
    """One job file, read (with any overlay) exactly as its tasks read it, and what every
    task of its DAGs shares: the CLI, the jobs environment, retries."""

    config_file: Path
    cfg: JobConfig

    @classmethod
    def load(cls, config_file: Path) -> Job:
        return cls(config_file, load_config(config_file, env=ENV_OVERLAY or None))

    @property
    def job_args(self) -> list[str]:
        """``--config`` (and ``--env``), as every command takes them."""
        return ["--config", str(self.config_file), *(["--env", ENV_OVERLAY] if ENV_OVERLAY else [])]

    @property
    def run_env(self) -> dict[str, str]:
        env = {
            "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYSPARK_PYTHON": str(VENV / "bin" / "python"),
            "PYSPARK_DRIVER_PYTHON": str(VENV / "bin" / "python"),
            "JAVA_HOME": os.environ.get("JAVA_HOME", ""),
        }
        return {k: v for k, v in env.items() if v}

    @property
    def default_args(self) -> dict[str, Any]:
        sched = self.cfg.schedule
        return {
            "owner": sched.owner,
            "retries": sched.retries,
            "retry_delay": dt.timedelta(minutes=sched.retry_delay_minutes),
            "retry_exponential_backoff": 2.0,  # a multiplier in Airflow 3.3 (True: read as 2.0)
            "max_retry_delay": dt.timedelta(minutes=sched.max_retry_delay_minutes),
            "on_failure_callback": on_failure,
        }

    @property
    def start_date(self) -> dt.datetime:
        start = self.cfg.schedule.start_date
        return dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)

    @property
    def tags(self) -> list[str]:
        return ["batch-serving", f"model:{self.cfg.model.name}", *self.cfg.schedule.tags]

    def command(
        self, task_id: str, arguments: list[str], doc: str, **kwargs: Any
    ) -> BatchServingCommand:
        return BatchServingCommand(
            task_id=task_id,
            executable=str(VENV / "bin" / "batch-serving"),
            arguments=arguments,
            env=self.run_env,
            doc_md=doc,
            **kwargs,
        )

    def input_pattern(self) -> str:
        """Glob of the date's input Parquet files (the input path escaped, it is not a glob)."""
        partition = f"{self.cfg.input.partition_column}={{{{ ds }}}}"
        return str(Path(glob.escape(self.cfg.input.path)) / partition / "*.parquet")


def build_score_dag(job: Job) -> DAG:
    """The nightly DAG: wait -> check input -> score -> check output -> publish."""
    cfg, sched = job.cfg, job.cfg.schedule
    predictions, serving = predictions_asset(cfg.model.name), serving_asset(cfg.model.name)
    with DAG(
        dag_id=f"score_{cfg.job}",
        description=f"Nightly batch scoring of {cfg.model.name} ({job.config_file.name})",
        schedule=sched.cron,
        start_date=job.start_date,
        catchup=sched.catchup,
        max_active_runs=sched.max_active_runs,
        default_args=job.default_args,
        tags=[*job.tags, "scoring"],
        doc_md=__doc__,
    ) as dag:
        wait = InputPartitionSensor(
            task_id="wait_for_input",
            pattern=job.input_pattern(),
            poke_interval=sched.sensor_poke_seconds,
            timeout=sched.sensor_timeout_hours * 3600,
            doc_md="Deferred (no worker slot) until the date's input partition has a Parquet "
            "file; fails after schedule.sensor_timeout_hours.",
        )
        validate_input = job.command(
            "validate_input",
            ["check-input", *job.job_args, "--run-date", "{{ ds }}"],
            "Registry reachable, alias resolves, the model's columns are in the input.",
        )
        score = ScoreSubmitOperator(
            task_id="score",
            application=str(HOME / "jobs" / "score.py"),
            application_args=[*job.job_args, "--run-date", "{{ ds }}"],
            conn_id="spark_default",
            conf=QUIET_DRIVER,
            name=f"batch-serving-{cfg.job}",
            env_vars=job.run_env,
            outlets=[predictions],
            announcer=lambda context: announce(
                context, predictions, [context["ds"]], predictions_extra(cfg, context["ds"])
            ),
            doc_md=f"Scores the date and commits predictions/{cfg.model.name}/ds={{{{ ds }}}} "
            f"atomically; then emits Asset {predictions.name} with partition key {{{{ ds }}}}.",
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


DATE = r"^\d{4}-\d{2}-\d{2}$"


def backfill_dates(context: Context) -> list[str]:
    """Every date of the run's range, oldest first (the command checked the range)."""
    first = dt.date.fromisoformat(context["params"]["date_from"])
    last = dt.date.fromisoformat(context["params"]["date_to"])
    return [str(first + dt.timedelta(days=n)) for n in range((last - first).days + 1)]


def build_backfill_dag(job: Job) -> DAG:
    """On demand: score a range of dates with ``batch-serving backfill`` (one Spark session)."""
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
        doc_md=__doc__,
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


def build_dags(conf_dir: Path) -> list[DAG]:
    """Every job's DAGs; any invalid job file fails the import, listing every invalid file
    (Airflow shows it as this file's import error) rather than scheduling with a guess."""
    dags, problems = [], []
    for config_file in sorted(conf_dir.glob("*.yaml")):
        try:
            job = Job.load(config_file)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        dags += [build_score_dag(job), build_backfill_dag(job)]
    if problems:
        raise ConfigError("\n".join(problems))
    return dags


for _dag in build_dags(CONF_DIR):
    globals()[_dag.dag_id] = _dag
