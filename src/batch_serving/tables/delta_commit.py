"""The Delta Lake commit protocol (``output.format: delta``, issue #23.2).

A prediction (or quarantine) table is a Delta table partitioned by ``ds``. Each run writes its
Parquet files where the pointer protocol would, in an immutable directory of its own inside the
table::

    predictions/<model>/_delta_log/000...N.json         the transaction log (the commit)
    predictions/<model>/ds=D/_runs/<run_id>/part-*.parquet + _manifest.json

and the commit is ONE Delta transaction (delta-rs ``create_write_transaction``, mode
``overwrite`` with the partition filter ``ds = D``): it removes the date's previous files and
adds this run's files as they are, with no rewrite of the data. A log entry appears whole or
not at all, so a Delta reader (Spark's ``delta`` source, ``VERSION AS OF``, delta-rs, DuckDB)
sees the previous version or the new one, never a mix, whenever the writer dies. Other dates
are untouched; the date's lease still serialises its writers, and a conflict Delta reports
anyway is a ``StorageError`` naming the table.

On S3 the table lives on the bucket and the log is still the commit: delta-rs writes each
log entry with a conditional PUT (``If-None-Match``), so of two writers of one version exactly
one wins and the other retries on the newer version (``_with_retries``). The store must support
conditional writes (AWS S3, MinIO, R2, moto do); the pointer protocol is not used for Delta.

The files a version removed stay (time travel reads them) until ``VACUUM``; a run that never
committed is removed by ``discard``. The run directory the current version names holds
exactly that version's files of the date, so readers that take the committed directory
(``publish``, the notebook helpers) read the committed version's rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from batch_serving.config.sections import StorageConfig
from batch_serving.errors import StorageError
from batch_serving.storage import Location
from batch_serving.storage.files import data_files, read_footer
from batch_serving.tables.manifest import read_manifest, write_manifest
from batch_serving.tables.protocol import Committed

if TYPE_CHECKING:
    from batch_serving.tables.layout import TableLayout

log = logging.getLogger(__name__)

DELTA_LOG = "_delta_log"
RUNS_DIR = "_runs"
PARTITION = "ds"  # tables.layout.PARTITION_COLUMN (not imported: layout imports this module)
RUN_ID_KEY = "batch_serving.run_id"
DATE_KEY = "batch_serving.ds"
COMMIT_ATTEMPTS = 10  # conflicts with runs of other dates (see _with_retries)


@dataclass(frozen=True)
class DeltaCommit:
    """Runs stage in ``ds=D/_runs/<run_id>`` inside the Delta table; the commit is one
    transaction that replaces the date's files by the run's."""

    name: str = "delta"
    table_format: str = "delta"

    def staging_dir(self, layout: TableLayout, run_date: dt.date, run_id: str) -> Location:
        return layout.partition_dir(run_date) / RUNS_DIR / run_id

    def committed_dir(self, layout: TableLayout, run_date: dt.date) -> Location:
        run_id = self.current_run_id(layout, run_date)
        if run_id is None:
            return layout.partition_dir(run_date)
        return self.staging_dir(layout, run_date, run_id)

    def current_run_id(self, layout: TableLayout, run_date: dt.date) -> str | None:
        runs = _current_runs(layout.table_dir).get(run_date.isoformat(), set())
        if len(runs) > 1:  # only a writer outside this project could do this
            raise StorageError(
                f"Delta table {layout.table_dir} holds files of several runs for "
                f"{PARTITION}={run_date}: {sorted(runs)}"
            )
        return next(iter(runs), None)

    def holds_commit(self, partition: Location) -> bool:
        day = partition.name.removeprefix(f"{PARTITION}=")
        return day in _current_runs(partition.parent)

    def catalog_location(self, layout: TableLayout, run_date: dt.date) -> Location | None:
        return None  # a Delta table has no partition locations: its log says which files

    def commit(
        self, layout: TableLayout, run_date: dt.date, staged: Location, run_id: str
    ) -> Committed:
        files = data_files(staged)
        if not files and not _is_delta(layout.table_dir):
            return Committed(path=staged, rows=0, files=0)  # e.g. no quarantined rows yet
        version, rows = commit_files(layout.table_dir, run_date, staged, files, run_id)
        _record_version(staged, version)
        log.info(
            "committed %s %s=%s as Delta version %d", layout.table_dir, PARTITION, run_date, version
        )
        return Committed(path=staged, rows=rows, files=len(files), version=version)

    def recover(self, layout: TableLayout, run_date: dt.date) -> bool:
        """Nothing to undo: a transaction-log entry is there whole or not at all. Directories
        of runs killed before their commit go once past the grace period (replaced runs stay:
        time travel reads them, until VACUUM)."""
        runs = layout.partition_dir(run_date) / RUNS_DIR
        if not runs.is_dir():
            return False
        committed = _ever_committed(layout.table_dir, run_date.isoformat())
        now = time.time()
        for directory in list(runs.iterdir()):
            if directory.name in committed:
                continue
            if now - directory.newest_mtime() >= layout.grace_period_s:
                log.info("removing %s: a run that never committed", directory)
                directory.rmtree(ignore_errors=True)
        return False

    def discard(self, layout: TableLayout, staged: Location) -> None:
        """A run directory the current version names is the committed data and stays; a
        replaced one stays too (time travel reads it) until VACUUM."""
        day = staged.parent.parent.name.removeprefix(f"{PARTITION}=")
        if staged.name in _ever_committed(layout.table_dir, day):
            return
        staged.rmtree(ignore_errors=True)


def commit_files(
    table: Location, run_date: dt.date, staged: Location, files: list[Location], run_id: str
) -> tuple[int, int]:
    """One Delta transaction: the date's files become ``files``; returns (version, rows)."""
    from deltalake.exceptions import DeltaError
    from deltalake.transaction import CommitProperties, create_table_with_add_actions

    day = run_date.isoformat()
    actions, schema, rows = _add_actions(table, staged, files, day)
    props = CommitProperties(custom_metadata={RUN_ID_KEY: run_id, DATE_KEY: day})
    uri = _uri(table)

    def transact() -> None:
        if not _is_delta(table):
            try:
                create_table_with_add_actions(
                    uri,
                    schema,
                    actions,
                    mode="append",
                    partition_by=[PARTITION],
                    storage_options=storage_options(table),
                    commit_properties=props,
                )
                return
            except DeltaError:
                if not _is_delta(table):
                    raise
                # a run of another date created the table first: replace our date in it
        open_table(table).create_write_transaction(
            actions,
            mode="overwrite",
            schema=schema,
            partition_by=[PARTITION],
            partition_filters=[(PARTITION, "=", day)],
            commit_properties=props,
        )

    try:
        _with_retries(transact)
        version = _version_of(table, run_id, day)
    except Exception as exc:  # delta-rs CommitFailedError, DeltaError, OSError alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(
            f"Delta commit of {table} {PARTITION}={day} (run {run_id}) failed: {first}"
        ) from None
    return version, rows


def _with_retries(transact: Callable[[], None]) -> None:
    """Run ``transact`` again on the newest version when delta-rs reports a conflict.

    delta-rs checks a partition-filtered overwrite as if it read the whole table, so a run of
    another date committing meanwhile fails it ("a concurrent transaction deleted data this
    operation read"). The date's lease means no one else wrote THIS date, so redoing the same
    replace on the newer version is exactly what the run meant; a failed attempt wrote no log
    entry. A conflict that outlasts the attempts is the caller's StorageError.
    """
    from deltalake.exceptions import CommitFailedError

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            transact()
            return
        except CommitFailedError:
            if attempt == COMMIT_ATTEMPTS:
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)


def _record_version(staged: Location, version: int) -> None:
    """Name the version in the run's manifest (one atomic rewrite, after the commit: a run
    killed in between leaves it unnamed, and ``committed_version`` reads it from the log)."""
    try:
        manifest = read_manifest(staged)
        if manifest is not None:
            output = manifest.output.model_copy(update={"table_version": version})
            write_manifest(staged, manifest.model_copy(update={"output": output}))
    except (OSError, StorageError) as exc:  # committed already: the log has the version
        log.warning(
            "committed Delta version %d, but naming it in %s failed: %s", version, staged, exc
        )


def committed_version(table: Location, run_date: dt.date) -> int | None:
    """The table version whose commit wrote the date's current data (None: none)."""

    if not _is_delta(table):
        return None
    run_ids = _current_runs(table).get(run_date.isoformat(), set())
    if not run_ids:
        return None
    return _version_of(table, next(iter(run_ids)), run_date.isoformat())


def _add_actions(
    table: Location, staged: Location, files: list[Location], day: str
) -> tuple[list[Any], Any, int]:
    """Add actions for the run's files (paths relative to the table, row counts from the
    footers) and the table schema: the files' columns plus the ``ds`` date."""
    from deltalake import Schema
    from deltalake.transaction import AddAction

    actions, rows, schema = [], 0, None
    base = table.path.rstrip("/") + "/"
    infos = {info.path: info for info in staged.infos()}
    for file in files:
        footer = read_footer(file)
        schema = schema or footer.schema.to_arrow_schema()
        info = infos[file.path]
        rows += footer.num_rows
        actions.append(
            AddAction(
                path=file.path[len(base) :],
                size=int(info.size),
                partition_values={PARTITION: day},
                modification_time=int(info.mtime_ns // 1_000_000),
                data_change=True,
                stats=json.dumps({"numRecords": footer.num_rows}),
            )
        )
    if schema is None:  # no rows this run: the date's files go, the table's schema stays
        return actions, open_table(table).schema(), rows
    wanted = schema.append(pa.field(PARTITION, pa.date32()))
    return actions, Schema.from_arrow(_merged(table, wanted)), rows


def _merged(table: Location, wanted: pa.Schema) -> pa.Schema:
    """The table's columns, then the run's new ones: a run with fewer columns (another model
    version) must not hide other dates' columns. A column whose Delta type changed is refused
    by name (old dates' files could no longer be read as the table says)."""
    from deltalake import Schema

    if not _is_delta(table):
        return wanted
    existing = open_table(table).schema()
    types = {field.name: str(field.type) for field in existing.fields}
    merged = pa.schema(existing.to_arrow())
    for field, typed in zip(wanted, Schema.from_arrow(wanted).fields, strict=True):
        if field.name not in types:
            merged = merged.append(field)
        elif types[field.name] != str(typed.type):
            raise StorageError(
                f"Delta table {table}: column {field.name!r} is {field.type} in this run but "
                f"{merged.field(field.name).type} in the table; not committing"
            )
    return merged


def _current_runs(table: Location) -> dict[str, set[str]]:
    """date -> the run directories the table's current version reads for it."""
    if not _is_delta(table):
        return {}
    adds = pa.table(open_table(table).get_add_actions(flatten=True)).to_pydict()
    found: dict[str, set[str]] = {}
    for path, day in zip(adds["path"], adds[f"partition.{PARTITION}"], strict=True):
        found.setdefault(str(day), set()).add(_run_of(path))
    return found


def _ever_committed(table: Location, day: str) -> set[str]:
    """Runs any version of the table committed for ``day`` (from the commits' metadata)."""
    if not _is_delta(table):
        return set()
    return {
        str(entry[RUN_ID_KEY])
        for entry in open_table(table).history()
        if entry.get(DATE_KEY) == day and RUN_ID_KEY in entry
    } | _current_runs(table).get(day, set())


def _version_of(table: Location, run_id: str, day: str) -> int:
    for entry in open_table(table).history():  # newest first
        if entry.get(RUN_ID_KEY) == run_id and entry.get(DATE_KEY) == day:
            return int(entry["version"])
    raise StorageError(f"Delta table {table} has no commit of run {run_id} for {PARTITION}={day}")


def _run_of(path: str) -> str:
    """``ds=D/_runs/<run_id>/part-0.parquet`` -> ``<run_id>``."""
    parts = path.split("/")
    return parts[parts.index(RUNS_DIR) + 1] if RUNS_DIR in parts else ""


def open_table(table: Location, version: int | None = None) -> Any:
    """delta-rs' ``DeltaTable`` of ``table`` (at ``version``; None: the newest), on local disk
    or on S3 with the job's endpoint and credentials."""
    from deltalake import DeltaTable

    return DeltaTable(_uri(table), version=version, storage_options=storage_options(table))


def storage_options(table: Location) -> dict[str, str] | None:
    """delta-rs' options for ``table``'s store, from the ``storage:`` config that opened it
    (the same endpoint, region and keys pyarrow uses); None locally. Keys left out (no
    endpoint, no keys) fall back to the AWS defaults and credential chain, as pyarrow's do.
    ``aws_conditional_put: etag`` makes each log entry a put-if-absent: no lock table needed."""
    if table.is_local:
        return None
    s3 = (table.storage or StorageConfig()).s3
    options = {"AWS_REGION": s3.region, "aws_conditional_put": "etag"}
    if s3.endpoint_override:
        options["AWS_ENDPOINT_URL"] = f"{s3.scheme}://{s3.endpoint_override}"
        options["AWS_ALLOW_HTTP"] = str(s3.scheme == "http").lower()
    if s3.access_key:
        options["AWS_ACCESS_KEY_ID"] = s3.access_key
    if s3.secret_key:
        options["AWS_SECRET_ACCESS_KEY"] = s3.secret_key.get_secret_value()
    return options


def _uri(table: Location) -> str:
    """The table's URI for delta-rs: a local path, or ``s3://bucket/key``. Other remote
    schemes are refused by name (delta-rs could open them, but they are not tested here)."""
    local = table.as_local()
    if local is not None:
        return str(local)
    if table.scheme != "s3":
        raise StorageError(
            f"Delta tables are supported on local paths and s3:// only, not {table} "
            "(use output.format: parquet there)"
        )
    return table.uri


def _is_delta(table: Location) -> bool:
    """A Delta table with at least one commit (a log directory alone is not one)."""
    from deltalake import DeltaTable

    return (table / DELTA_LOG).is_dir() and bool(
        DeltaTable.is_deltatable(_uri(table), storage_options=storage_options(table))
    )
