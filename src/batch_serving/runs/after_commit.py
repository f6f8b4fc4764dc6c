"""After the commit: SQL tables and the MLflow run record, each only if the partition still
holds this run's data.

These steps never touch the committed manifest; what they did is written to the run's own
record (``_runs/.../<run_id>/_after_commit.json``). If another run has replaced the partition
in the meantime (possible only if this run lost its lease), the steps are skipped and the
record says why, so no table or run record can describe another run's data.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import Future
from pathlib import Path

from pyspark.sql import SparkSession

from batch_serving.monitoring.history import REPORT_NAME
from batch_serving.runs.context import RunContext, in_background
from batch_serving.runs.monitor import RUN_PROFILE
from batch_serving.storage.files import data_files
from batch_serving.tables.commit import Committed
from batch_serving.tables.layout import QUARANTINE
from batch_serving.tables.manifest import (
    AFTER_COMMIT_NAME,
    AfterCommit,
    RunManifest,
    TimelineSpan,
    write_json,
)

log = logging.getLogger(__name__)

# timed like the run's steps: in ``_after_commit.json``'s durations (the manifest is written
# before them), so the summary and the benchmark show what the post-commit steps cost
CATALOG_STEP = "sql_catalog"
RECORD_STEP = "mlflow_record"


def after_commit(
    spark: SparkSession,
    run: RunContext,
    manifest: RunManifest,
    committed: Committed,
    report: Future[Path | None] | None = None,
) -> AfterCommit:
    """The SQL catalog in a thread beside the MLflow record (the JVM's metastore work and
    Python's tracking calls depend on nothing of each other; the record waits for ``report``,
    the run report being built meanwhile, and logs it), then ``_after_commit.json`` with the
    run's timeline. Both start only while the partition holds this run's data."""
    cfg = run.cfg
    skipped = _other_run(run)
    catalog = (
        in_background("sql-catalog", lambda: _register(spark, run))
        if skipped is None and cfg.catalog.enabled
        else None
    )
    mlflow_run_id = (
        _record(run, manifest, committed, report)
        if skipped is None and cfg.tracking.log_runs
        else None
    )
    if report is not None:
        report.result()  # never raises: a report that cannot be built is a warning
    tables = catalog.result() if catalog is not None else []
    record = AfterCommit(
        run_id=run.run_id,
        partition=str(committed.path),
        tables=tables,
        mlflow_run_id=mlflow_run_id,
        tracking_enabled=cfg.tracking.log_runs and skipped is None,
        durations_s=dict(run.timer.durations),
        skipped=skipped,
        timeline=[TimelineSpan(**dataclasses.asdict(span)) for span in run.timer.spans],
    )
    write_json(run.predictions.run_dir(run.run_id) / AFTER_COMMIT_NAME, record)
    return record


def _register(spark: SparkSession, run: RunContext) -> list[str]:
    """The committed partition in the SQL tables (the quarantine's only if it has rows)."""
    from batch_serving.spark.catalog import register_partition

    cfg, tables = run.cfg, []
    with run.timer.step(CATALOG_STEP):
        for database, layout in (
            (cfg.catalog.predictions_database, run.predictions),
            (cfg.catalog.quarantine_database, run.quarantine),
        ):
            empty = not data_files(layout.committed_dir(run.run_date))
            if layout.table == QUARANTINE and empty:
                continue  # nothing quarantined: five SQL statements saved on most nights
            name = register_partition(spark, database, layout, run.run_date)
            if name is not None:
                tables.append(name.replace("`", ""))
    return tables


def _record(
    run: RunContext, manifest: RunManifest, committed: Committed, report: Future[Path | None] | None
) -> str | None:
    """The MLflow run record, with monitoring's files and GX's Data Docs pages (local roots
    only); None when the tracking server could not be reached (a warning, see the log). The
    record is created while ``report`` is still being built; only its files wait for it."""
    from batch_serving.runs.mlflow_record import log_run

    records = run.predictions.run_dir(run.run_id).as_local()

    def files() -> list[Path]:
        if records is None:
            return []
        if report is not None:
            report.result()  # never raises: a report that cannot be built is a warning
        extra = [
            *(records / n for n in (RUN_PROFILE, REPORT_NAME)),
            *sorted(records.glob("_datadocs_*.html")),
        ]
        return [p for p in extra if p.is_file()]

    with run.timer.step(RECORD_STEP):
        return log_run(run.cfg, manifest, committed.path, files)


def _other_run(run: RunContext) -> str | None:
    """None while the date holds this run's data; otherwise why the steps stop."""
    holder = run.predictions.current_run_id(run.run_date)
    if holder == run.run_id:
        return None
    partition = run.predictions.partition_dir(run.run_date)
    reason = f"partition {partition} now holds run {holder}, not {run.run_id}"
    log.warning("post-commit steps skipped: %s", reason)
    return reason
