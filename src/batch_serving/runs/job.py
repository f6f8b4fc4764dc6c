"""The scoring job: config -> resolve models -> read -> validate -> score -> write -> commit.

Each step is a call into its own module that returns a value to the next; this module only
sequences them. One writer per (table, date): the run holds the date's lease from before
recovery until its post-commit steps are done. A failure at any point discards the staged
output and leaves the committed partition as it was.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from pyspark.sql import SparkSession

from batch_serving.config import JobConfig
from batch_serving.config.members import MemberModel
from batch_serving.models.registry import ModelRef
from batch_serving.quality.gates import preload_gx_for
from batch_serving.runs.after_commit import after_commit
from batch_serving.runs.checks import RunChecks
from batch_serving.runs.context import RunContext, StepTimer, in_background
from batch_serving.runs.models import (
    fetch_models,
    prepare_models,
    resolve_members,
    served_runtime,
)
from batch_serving.runs.outcome import staged_outcome
from batch_serving.runs.preflight import check_rules
from batch_serving.runs.records import build_manifest
from batch_serving.runs.recovery import recover_date, remove_dead_staging
from batch_serving.runs.steps import (
    commit_run,
    enforce_bad_rows,
    start_duplicate_scan,
    validate_input,
)
from batch_serving.spark.connectors import require_scheme, use_storage
from batch_serving.spark.engines import Engine, choose_engine, engine_named
from batch_serving.spark.engines.dataframe import DataFrameEngine
from batch_serving.spark.input_table import resolve_input
from batch_serving.spark.metastore import wake_metastore
from batch_serving.tables.commit import Committed, discard
from batch_serving.tables.lease import WriteLease
from batch_serving.tables.manifest import AfterCommit, RunManifest

log = logging.getLogger(__name__)

REPORT_STEP = "report"
SESSION_STEP = "spark_session"  # the JVM's start, beside FETCH_STEP (see start_session)
FETCH_STEP = "fetch_models"
METASTORE_STEP = "metastore"  # the Hive client's start, beside the scoring


@dataclass(frozen=True)
class RunResult:
    manifest: RunManifest
    committed: Committed
    after: AfterCommit
    report: Path | None = None  # the run's HTML report (monitoring.enabled)


@dataclass(frozen=True)
class PreparedRun:
    """What a run settles without Spark: its identity and every model pinned to a version (a
    bad alias or an unreachable registry fails here, before anything is read)."""

    run: RunContext
    resolved: list[tuple[MemberModel, ModelRef]]


def prepare_run(cfg: JobConfig, run_date: dt.date, timer: StepTimer | None = None) -> PreparedRun:
    """The Spark-free start of a run (``run_prepared`` then does the rest); the session may be
    starting meanwhile (``open_session_early``). Starts GX's import on a thread. ``timer``:
    one that timed the process's startup already (the CLI's), so the run's timeline has it."""
    run = RunContext.start(cfg, run_date, timer)
    log.info("run %s: job %s, date %s, model %s", run.run_id, cfg.job, run_date, cfg.model.selector)
    preload_gx_for(cfg)
    with run.timer.step("resolve_model"):
        resolved = resolve_members(cfg)
    check_rules(cfg, run_date, resolved)  # the rules against the models' outputs
    return PreparedRun(run, resolved)


def open_session_early(
    cfg: JobConfig, timer: StepTimer, open_session: Callable[[], SparkSession]
) -> Future[SparkSession]:
    """``open_session()`` on a thread from a command's first step, before ``prepare_run``:
    the JVM's start is another process's work and resolving the aliases, checking the rules
    and loading the models is Python's, so the run waits for the longer of the two, not their
    sum. Once the session is up, its metastore client wakes on a thread of its own while
    Python still works (``metastore``). A bad alias or rule still fails with its own message
    and exit code, before anything is read; the JVM started beside it ends with the process.
    Hand the future to ``start_session``. Timed as ``spark_session``."""

    def build() -> SparkSession:
        with timer.step(SESSION_STEP):
            spark = open_session()
        if cfg.catalog.enabled:
            _wake_metastore(spark, cfg, timer)
        return spark

    return in_background("spark-session", build)


def start_session(prepared: PreparedRun, session: Future[SparkSession]) -> SparkSession:
    """The run's session, while this thread downloads and loads the pinned models: ``session``
    is the one ``open_session_early`` is building. Timed as ``fetch_models``."""
    with prepared.run.timer.step(FETCH_STEP):
        fetch_models(prepared.run.cfg, prepared.resolved)
    return session.result()


def run_score(
    spark: SparkSession, cfg: JobConfig, run_date: dt.date, *, wait: bool = False
) -> RunResult:
    """Score ``run_date`` and commit its predictions partition; raise on any failure."""
    return run_prepared(spark, prepare_run(cfg, run_date), wait=wait)


def run_prepared(spark: SparkSession, prepared: PreparedRun, *, wait: bool = False) -> RunResult:
    """The Spark part of a run ``prepare_run`` started. One writer per (table, date): the
    date's lease is held from before recovery until the post-commit steps end."""
    run = prepared.run
    if run.cfg.catalog.enabled:  # the Hive client starts beside the scoring, if not yet
        _wake_metastore(spark, run.cfg, run.timer)
    prepared = _input_resolved(spark, prepared)
    run = prepared.run
    cfg, run_date = run.cfg, run.run_date
    use_storage(spark, cfg.storage)  # a session this job did not build reaches its buckets too
    with run.predictions.lease(run_date, run.run_id, wait=wait) as lease:
        recover_date(cfg, run_date)
        run.staging_removed.extend(remove_dead_staging(cfg, run.run_id))
        manifest, committed = _score_and_commit(spark, prepared, lease)
        log.info("committed %d rows to %s", committed.rows, committed.path)
        report = _start_report(run) if cfg.monitoring.enabled else None
        after = after_commit(spark, run, manifest, committed, report)
    return RunResult(manifest, committed, after, report.result() if report else None)


def _input_resolved(spark: SparkSession, prepared: PreparedRun) -> PreparedRun:
    """The run with its ``input.table`` resolved to the table's files (``spark.input_table``);
    a ``path`` input is returned as it is. Timed as ``resolve_input``."""
    run = prepared.run
    if run.cfg.input.table is None:
        return prepared
    with run.timer.step("resolve_input"):
        cfg = resolve_input(spark, run.cfg)
    log.info("input.table %s: files under %s", cfg.input.table, cfg.input.root)
    return replace(prepared, run=replace(run, cfg=cfg))


def _wake_metastore(spark: SparkSession, cfg: JobConfig, timer: StepTimer) -> None:
    """The session's metastore client, created on a thread (``spark.metastore``); timed as
    ``metastore`` (the embedded Derby's boot on a process's first run, ~0 s after). Once
    per run: the session's thread may have begun it already."""
    if not timer.claim(METASTORE_STEP):
        return

    def wake() -> None:
        with timer.step(METASTORE_STEP):
            wake_metastore(spark, cfg.catalog.predictions_database, cfg.model.name)

    in_background("metastore", wake, uncut=True)  # Derby's files: never cut off by the exit


def _start_report(run: RunContext) -> Future[Path | None]:
    """The run's report, built in a thread while the SQL catalog registers the partition
    and the MLflow record is created (the record waits for it only to log it). Timed as the
    post-commit step ``report``, in ``_after_commit.json``."""

    def build() -> Path | None:
        with run.timer.step(REPORT_STEP):
            return _report(run.cfg, run.run_date)

    return in_background("run-report", build)


def _report(cfg: JobConfig, run_date: dt.date) -> Path | None:
    """The run's report, before the post-commit steps (so the MLflow record can log it); the
    partition is committed already, so a report that cannot be built is a warning only."""
    from batch_serving.monitoring.build import build_reports

    try:
        return build_reports(cfg, run_date)
    except Exception as exc:
        log.warning("run report not built (batch-serving report rebuilds it): %s", exc)
        return None


def _score_and_commit(
    spark: SparkSession, prepared: PreparedRun, lease: WriteLease
) -> tuple[RunManifest, Committed]:
    """read -> load -> validate -> score -> reconcile -> commit; checks wrap the scoring."""
    run, step = prepared.run, prepared.run.timer.step
    cfg, staging, engine = run.cfg, run.staging, _engine(spark, prepared)
    with ExitStack() as cleanup:  # the staged output is discarded however the run ends
        cleanup.callback(_discard_staging, run)
        with step("read"):  # footers (arrow_direct) or Spark's count: no rows yet
            data = engine.read(spark, cfg.input, run.run_date, cfg.storage)
        log.info("input %s: %d rows (engine %s)", data.where, data.rows, engine.name)
        scan = start_duplicate_scan(engine, data, cfg)  # reads the ids while models load
        with step("load_model"):
            models = prepare_models(spark, cfg, prepared.resolved, engine)
            cleanup.callback(models.release)
        with step("validate"):  # arrow_direct: the id scan goes on beside the scoring tasks
            valid = validate_input(
                engine, data, models.members, run, scan, defer=engine.exact_counts
            )
        checks = RunChecks.start(spark, run, engine, data, valid)  # gates and drift
        observe = checks.before_scoring()
        with step("score_and_stage"):
            counted = engine.stage(
                spark, data, valid.plan, models.handles(), staging, valid.duplicates, observe
            )
        checks.after_scoring(counted)
        with step("reconcile"):
            outcome = staged_outcome(run, valid.plan, valid.rows(data), data.files)
            checks.finish_drift()
        checks.before_commit()
        enforce_bad_rows(run, outcome.counts)
        with step("commit"):
            manifest = build_manifest(
                run, valid.plan, models, engine.name, outcome, checks.gates, spark.version
            )
            manifest = checks.record(manifest)
            committed = commit_run(run, manifest, checks.gates, lease)
    return manifest, committed


def _engine(spark: SparkSession, prepared: PreparedRun) -> Engine:
    """The job's engine (a single Spark ML model is scored by Spark: ``spark_ml``); the
    DataFrame engines have Spark itself write the staged output, so Spark must be able to
    open the output root."""
    cfg = prepared.run.cfg
    engine = engine_named(choose_engine(cfg, served_runtime(cfg, prepared.resolved)))
    if isinstance(engine, DataFrameEngine):
        require_scheme(spark, cfg.output.root, "output.root")
    return engine


def _discard_staging(run: RunContext) -> None:
    discard(run.predictions, run.staging.predictions)
    discard(run.quarantine, run.staging.quarantine)
