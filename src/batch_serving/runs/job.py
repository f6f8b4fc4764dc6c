"""The scoring job: config -> resolve models -> read -> validate -> score -> write -> commit.

Each step is a call into its own module that returns a value to the next; this module only
sequences them. One writer per (table, date): the run holds the date's lease from before
recovery until its post-commit steps are done. A failure at any point discards the staged
output and leaves the committed partition as it was.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from batch_serving.config import JobConfig
from batch_serving.errors import InputValidationError, OutputValidationError
from batch_serving.quality.gates import preload_gx_for
from batch_serving.runs.after_commit import after_commit
from batch_serving.runs.compare import compare_shadows
from batch_serving.runs.context import RunContext, in_background
from batch_serving.runs.models import PreparedModels, prepare_models, resolve_members
from batch_serving.runs.monitor import finish_monitoring, plan_monitoring, task_spec
from batch_serving.runs.records import build_manifest
from batch_serving.runs.recovery import recover_date, remove_dead_staging
from batch_serving.runs.steps import (
    commit_run,
    enforce_bad_rows,
    finish_duplicate_scan,
    gate_runner,
    reconcile,
    start_duplicate_scan,
    validate_input,
)
from batch_serving.spark.connectors import require_scheme
from batch_serving.spark.engines import choose_engine, engine_named
from batch_serving.tables.commit import Committed, discard
from batch_serving.tables.lease import Lease
from batch_serving.tables.manifest import AfterCommit, RunManifest
from batch_serving.tables.storage import AnyPath, spark_path

log = logging.getLogger(__name__)

REPORT_STEP = "report"


@dataclass(frozen=True)
class RunResult:
    manifest: RunManifest
    committed: Committed
    after: AfterCommit
    report: Path | None = None  # the run's HTML report (monitoring.enabled)


def run_score(
    spark: SparkSession, cfg: JobConfig, run_date: dt.date, *, wait: bool = False
) -> RunResult:
    """Score ``run_date`` and commit its predictions partition; raise on any failure."""
    run = RunContext.start(cfg, run_date)
    log.info("run %s: job %s, date %s, model %s", run.run_id, cfg.job, run_date, cfg.model.selector)
    with Lease(run.predictions.lease_file(run_date), run.run_id, wait=wait) as lease:
        recover_date(cfg, run_date)
        run.staging_removed.extend(remove_dead_staging(cfg, run.run_id))
        manifest, committed = _score_and_commit(spark, run, lease)
        log.info("committed %d rows to %s", committed.rows, committed.path)
        report = _start_report(run) if cfg.monitoring.enabled else None
        after = after_commit(spark, run, manifest, committed, report)
    return RunResult(manifest, committed, after, report.result() if report else None)


def _start_report(run: RunContext) -> Future[Path | None]:
    """The run's report, built in a thread while the SQL catalog registers the partition
    (``after_commit`` waits for it before the MLflow record, which logs it). Timed as the
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


def _staged_frame(spark: SparkSession, cfg: JobConfig, staged: AnyPath) -> DataFrame:
    require_scheme(spark, cfg.output.root, "output expectations on")
    return spark.read.parquet(spark_path(staged))


def _score_and_commit(
    spark: SparkSession, run: RunContext, lease: Lease
) -> tuple[RunManifest, Committed]:
    cfg, step, staging = run.cfg, run.timer.step, run.staging
    preload_gx_for(cfg)  # imported while the models load (if the caller did not start it)
    with step("resolve_model"):
        resolved = resolve_members(cfg)
    engine = engine_named(choose_engine(cfg))
    if engine.name == "dataframe":  # Spark itself writes the staged output
        require_scheme(spark, cfg.output.root, "output.root")
    models: PreparedModels | None = None
    try:
        with step("read"):  # footers (arrow_direct) or Spark's count: no rows yet
            data = engine.read(spark, cfg.input, run.run_date, cfg.storage)
        log.info("input %s: %d rows (engine %s)", data.where, data.rows, engine.name)
        scan = start_duplicate_scan(engine, data, cfg)  # reads the ids while models load
        with step("load_model"):
            models = prepare_models(spark, cfg, resolved)
        gates = gate_runner(run)
        with step("validate"):  # arrow_direct: the id scan goes on beside the scoring tasks
            valid = validate_input(
                engine, data, models.members, run, scan, defer=engine.exact_counts
            )
        checks = cfg.validation

        def gate_step(name: str, declared: tuple[object, ...]) -> AbstractContextManager[None]:
            return step(name) if declared else nullcontext()

        in_task = engine.exact_counts  # gate metrics counted by the scoring tasks
        with gate_step("gate_input", checks.input_expectations):
            input_gate = gates.plan(
                "input", checks.input_expectations, data.schema if in_task else None
            )
            if input_gate is not None and not input_gate.counted_in_task:
                gates.finish(  # nothing to wait for: stop before scoring if it fails
                    input_gate,
                    None,
                    lambda: engine.frame(spark, data),
                    InputValidationError,
                    data.where,
                )
                input_gate = None
        with gate_step("gate_output", checks.output_expectations):
            output_gate = gates.plan(
                "output", checks.output_expectations, valid.plan.output_schema if in_task else None
            )
        monitoring = None
        if cfg.monitoring.enabled:
            with step("drift_reference"):
                monitoring = plan_monitoring(spark, run, engine, data, valid.plan)
        with step("score_and_stage"):
            observe = task_spec(monitoring, input_gate, output_gate)
            counted = engine.stage(
                spark, data, valid.plan, models.handles(), staging, valid.duplicates, observe
            )
        if valid.pending is not None:
            with step("validate"):
                finish_duplicate_scan(valid, data)
        with gate_step("gate_input", checks.input_expectations):
            gates.finish(
                input_gate,
                counted.input if counted is not None else None,
                lambda: engine.frame(spark, data),
                InputValidationError,
                data.where,
            )
        with step("reconcile"):
            counts = reconcile(run, valid.rows(data))
            comparison = compare_shadows(valid.plan, staging.predictions)
            profile = counted.profile if counted is not None else None
            drift = finish_monitoring(monitoring, profile, run) if monitoring else None
        with gate_step("gate_output", checks.output_expectations):
            gates.finish(
                output_gate,
                counted.output if counted is not None else None,
                lambda: _staged_frame(spark, cfg, staging.predictions),
                OutputValidationError,
                str(run.predictions.partition_dir(run.run_date)),
            )
        enforce_bad_rows(run, counts)
        with step("commit"):
            manifest = build_manifest(
                run,
                valid.plan,
                models,
                engine.name,
                counts,
                gates,
                spark.version,
                comparison,
                data.files,
            )
            if drift is not None:
                manifest = manifest.model_copy(update={"drift": drift.section})
            committed = commit_run(run, manifest, gates, lease)
    finally:
        discard(staging.predictions)
        discard(staging.quarantine)
        if models is not None:
            models.release()
    return manifest, committed
