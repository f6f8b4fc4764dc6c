"""The run's own steps between the engine's read and the commit: validate, reconcile, commit.

Each takes what the previous step returned and returns what the next one needs.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from batch_serving.config import JobConfig
from batch_serving.errors import LeaseHeldError, OutputValidationError, ScoringError
from batch_serving.quality.checks import check_duplicates, check_not_empty
from batch_serving.quality.gates import GateRunner, write_reports
from batch_serving.runs.context import RunContext, in_background
from batch_serving.scoring.plan import Member, ScoringPlan, plan_for_job
from batch_serving.spark.engines import Engine, InputData
from batch_serving.storage.files import count_rows, data_files
from batch_serving.tables.commit import Committed, commit
from batch_serving.tables.layout import TableLayout
from batch_serving.tables.lease import WriteLease
from batch_serving.tables.manifest import RunManifest, read_manifest, write_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Validated:
    """The input passed every check: the scoring plan, and rows to drop as duplicates."""

    plan: ScoringPlan
    duplicates: int  # extra rows removed by duplicate_ids: keep_last
    pending: DuplicateScan | None = None  # the scan still running (see finish_duplicate_scan)

    def rows(self, data: InputData) -> int:
        return data.rows - self.duplicates


@dataclass(frozen=True)
class Counts:
    """Staged rows after scoring, reconciled against the input."""

    input_rows: int
    output_rows: int
    output_files: int
    bad_rows: int
    allowed_bad_rows: int


DuplicateScan = Future[tuple[int, list[Any]]]


def start_duplicate_scan(engine: Engine, data: InputData, cfg: JobConfig) -> DuplicateScan | None:
    """Start reading the id columns in a thread (pyarrow and numpy release the GIL), so the
    scan overlaps the models' loading; None when there is nothing to scan yet: ids not
    checked, no files to read directly, or an id column missing (the plan names it)."""
    entities = list(cfg.entity_columns)
    if (
        cfg.validation.duplicate_ids == "allow"
        or not data.files
        or any(c not in data.schema.names for c in entities)
    ):
        return None
    return in_background("duplicate-ids", lambda: engine.duplicate_ids(data, entities))


def validate_input(
    engine: Engine,
    data: InputData,
    members: tuple[Member, ...],
    run: RunContext,
    scan: DuplicateScan | None = None,
    *,
    defer: bool = False,
) -> Validated:
    """Empty partition, columns and types (by planning the casts), duplicate ids (``scan``:
    the ids already being read, see ``start_duplicate_scan``). ``defer``: under ``fail``, a
    running scan is left to finish beside the scoring tasks (``finish_duplicate_scan`` fails
    the run before anything is committed)."""
    cfg = run.cfg
    check_not_empty(data.rows, cfg.validation.allow_empty, data.where)
    plan = plan_for_job(cfg, members, data.schema, run.run_id, run.started, data.where)
    policy = cfg.validation.duplicate_ids
    if policy == "allow":
        return Validated(plan, 0)
    if defer and policy == "fail" and scan is not None:
        return Validated(plan, 0, pending=scan)
    # the scan reads cfg.entity_columns: the plan's entity columns, in that order
    found = scan.result() if scan is not None else engine.duplicate_ids(data, plan.entity_columns)
    extra, examples = found
    check_duplicates(extra, examples, plan.entity_columns, policy, data.where)
    return Validated(plan, extra if policy == "keep_last" else 0)


def finish_duplicate_scan(valid: Validated, data: InputData) -> None:
    """The deferred duplicate-id check of ``validate_input``: fails naming the ids."""
    if valid.pending is not None:
        extra, examples = valid.pending.result()
        check_duplicates(extra, examples, valid.plan.entity_columns, "fail", data.where)


def gate_runner(run: RunContext) -> GateRunner:
    return GateRunner(
        previous_input_rows(run.predictions, run.run_date),
        run.predictions.run_dir(run.run_id),
        f"{run.predictions.model} run {run.run_id}",
    )


def previous_input_rows(layout: TableLayout, run_date: dt.date) -> int | None:
    """Input rows of the latest committed run before ``run_date`` (for row_count_change)."""
    earlier = [d for d in layout.committed_dates() if d < run_date.isoformat()]
    if not earlier:
        return None
    manifest = read_manifest(layout.committed_dir(dt.date.fromisoformat(earlier[-1])))
    return manifest.input.rows if manifest else None


def reconcile(run: RunContext, input_rows: int) -> Counts:
    """Every input row is either scored or quarantined, exactly once."""
    staging = run.staging
    output_rows = count_rows(staging.predictions)
    bad_rows = count_rows(staging.quarantine)
    if output_rows + bad_rows != input_rows:
        raise OutputValidationError(
            f"staged output has {output_rows} scored + {bad_rows} quarantined rows but "
            f"input {run.where} has {input_rows}; nothing committed"
        )
    allowed = run.cfg.validation.allowed_bad_rows(input_rows)
    if bad_rows:
        log.warning("%d rows quarantined (allowed: %d)", bad_rows, allowed)
    files = len(data_files(staging.predictions))
    return Counts(input_rows, output_rows, files, bad_rows, allowed)


def enforce_bad_rows(run: RunContext, counts: Counts) -> None:
    """Over ``max_bad_rows``: commit the quarantine (for inspection), not the predictions."""
    if counts.bad_rows <= counts.allowed_bad_rows:
        return
    q_path = commit(run.quarantine, run.run_date, run.staging.quarantine, run.run_id).path
    raise ScoringError(
        f"{counts.bad_rows} of {counts.input_rows} rows could not be scored (max_bad_rows "
        f"{run.cfg.validation.max_bad_rows}); top errors: {top_errors(q_path)}; "
        f"quarantined to {q_path}; predictions not committed"
    )


def commit_run(
    run: RunContext, manifest: RunManifest, gates: GateRunner, lease: WriteLease
) -> Committed:
    """Write the manifest (once, inside the staged partition), then swap both tables in,
    provided this run still holds the date's lease (a run stalled past the stale timeout
    may have been taken over)."""
    if not lease.still_held():
        holder = lease.holder()
        raise LeaseHeldError(
            f"run {run.run_id} lost the lease {lease.where} before its commit (now held by "
            f"{holder.describe() if holder else 'nobody'}); nothing committed"
        )
    staging = run.staging
    staging.quarantine.mkdir(parents=True, exist_ok=True)  # a clean run may have written none
    write_manifest(staging.predictions, manifest)
    write_manifest(staging.quarantine, manifest)
    if gates.results:
        write_reports(staging.predictions, gates.results, run.title)
    commit(run.quarantine, run.run_date, staging.quarantine, run.run_id)
    return commit(run.predictions, run.run_date, staging.predictions, run.run_id)


def top_errors(quarantine_dir: object, top: int = 3) -> str:
    table = pq.read_table(quarantine_dir, columns=["error_class", "error_message"]).to_pandas()
    counts = table.groupby("error_class")["error_message"].agg(["count", "first"])
    counts = counts.sort_values("count", ascending=False).head(top)
    return ", ".join(
        f"{cls}: {row['count']} (e.g. {row['first']!r})" for cls, row in counts.iterrows()
    )
