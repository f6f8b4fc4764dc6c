"""The commit protocol where directory rename is not atomic (object stores): a pointer object.

Object stores (S3, GCS, ADLS) have no directory rename; copying a partition into place is
neither atomic nor cheap. Instead each run writes an immutable directory of its own, and one
small object, written last, says which run the date is::

    ds=D/_runs/<run_id>/part-*.parquet     1. executors write the data (each file one PUT)
    ds=D/_runs/<run_id>/_manifest.json     2. the run writes its manifest
    ds=D/_COMMITTED.json                   3. ONE PUT of the pointer: this is the commit
                                           4. replaced runs older than the grace period go

A single PUT is atomic on every object store (the object appears whole or not at all), so a
reader that resolves the pointer sees the previous run or the new one, never a mix. The run
directory a pointer replaced stays readable for ``storage.grace_period_s`` (a reader that
resolved the old pointer just before the switch finishes its read), and is deleted by the
next commit or recovery of that date after the grace period. Directories of runs that never
committed (failed: removed right away; killed: left behind) are deleted once their newest file
is older than the grace period. Every step here runs under the date's lease.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from batch_serving.errors import StorageError
from batch_serving.storage import Location
from batch_serving.storage.files import count_rows, data_files
from batch_serving.tables.protocol import Committed

if TYPE_CHECKING:
    from batch_serving.tables.layout import TableLayout

log = logging.getLogger(__name__)

POINTER_NAME = "_COMMITTED.json"
RUNS_DIR = "_runs"


@dataclass(frozen=True)
class Pointer:
    """What ``_COMMITTED.json`` says: the current run, its directory (relative to the
    partition), its row count, and the replaced runs still inside their grace period."""

    run_id: str
    data: str
    rows: int
    files: int
    committed_at: str
    replaced: dict[str, str] = field(default_factory=dict)  # run_id -> when it was replaced


@dataclass(frozen=True)
class PointerCommit:
    """Each run stages in its own immutable ``_runs/<run_id>`` directory of the partition; the
    commit is one PUT of the date's pointer."""

    name: str = "pointer"
    table_format: str = "parquet"

    def staging_dir(self, layout: TableLayout, run_date: dt.date, run_id: str) -> Location:
        return run_data_dir(layout, run_date, run_id)

    def committed_dir(self, layout: TableLayout, run_date: dt.date) -> Location:
        return committed_run_dir(layout, run_date) or layout.partition_dir(run_date)

    def current_run_id(self, layout: TableLayout, run_date: dt.date) -> str | None:
        pointer = read_pointer(layout, run_date)
        return pointer.run_id if pointer else None

    def holds_commit(self, partition: Location) -> bool:
        return (partition / POINTER_NAME).is_file()

    def catalog_location(self, layout: TableLayout, run_date: dt.date) -> Location | None:
        """The metastore follows the pointer: the partition's LOCATION is the run directory."""
        return self.committed_dir(layout, run_date)

    def commit(
        self, layout: TableLayout, run_date: dt.date, staged: Location, run_id: str
    ) -> Committed:
        return commit_pointer(layout, run_date, staged, run_id)

    def recover(self, layout: TableLayout, run_date: dt.date) -> bool:
        """Nothing to undo (the pointer is one object); run directories past their grace
        period are removed."""
        clean_expired(layout, run_date)
        return False

    def discard(self, layout: TableLayout, staged: Location) -> None:
        """A run directory its date's pointer names is the committed data and stays."""
        if not is_committed(staged):
            staged.rmtree()


def run_data_dir(layout: TableLayout, run_date: dt.date, run_id: str) -> Location:
    """The run's immutable data directory (also its staging)."""
    return layout.partition_dir(run_date) / RUNS_DIR / run_id


def pointer_file(layout: TableLayout, run_date: dt.date) -> Location:
    return layout.partition_dir(run_date) / POINTER_NAME


def read_pointer(layout: TableLayout, run_date: dt.date) -> Pointer | None:
    path = pointer_file(layout, run_date)
    try:
        raw = json.loads(path.read_text())
        return Pointer(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise StorageError(f"unreadable commit pointer {path}: {exc}") from None


def committed_run_dir(layout: TableLayout, run_date: dt.date) -> Location | None:
    """The directory the date's pointer names (None: nothing committed)."""
    pointer = read_pointer(layout, run_date)
    return None if pointer is None else layout.partition_dir(run_date) / pointer.data


def commit_pointer(
    layout: TableLayout, run_date: dt.date, staged: Location, run_id: str
) -> Committed:
    """Make ``staged`` (this run's directory, manifest included) the date's data."""
    rows, files = count_rows(staged), len(data_files(staged))
    previous = read_pointer(layout, run_date)
    now = _now()
    replaced = dict(previous.replaced) if previous else {}
    if previous is not None and previous.run_id != run_id:
        replaced[previous.run_id] = now
    replaced.pop(run_id, None)
    pointer = Pointer(run_id, f"{RUNS_DIR}/{run_id}", rows, files, now, replaced)
    try:
        _write_pointer(pointer_file(layout, run_date), pointer)
    except OSError as exc:
        raise StorageError(
            f"commit of {layout.partition_dir(run_date)} failed writing its pointer: {exc}"
        ) from None
    try:
        clean_expired(layout, run_date)
    except OSError as exc:  # committed already; the next commit or recover retries
        log.warning("committed, but removing replaced runs failed: %s", exc)
    return Committed(path=staged, rows=rows, files=files)


def clean_expired(layout: TableLayout, run_date: dt.date) -> list[str]:
    """Delete run directories past the grace period: replaced ones (by replacement time) and
    never-committed ones (by their newest file); rewrite the pointer without them."""
    pointer = read_pointer(layout, run_date)
    runs = layout.partition_dir(run_date) / RUNS_DIR
    if not runs.is_dir():
        return []
    grace, now = layout.grace_period_s, time.time()
    current = pointer.run_id if pointer else None
    replaced = dict(pointer.replaced) if pointer else {}
    removed: list[str] = []
    for directory in list(runs.iterdir()):
        name = directory.name
        if name == current:
            continue
        if name in replaced:
            age = now - dt.datetime.fromisoformat(replaced[name]).timestamp()
        else:
            age = now - directory.newest_mtime()
        if age >= grace:
            _remove_dir(directory)
            removed.append(name)
    if pointer is not None and any(r in replaced for r in removed):
        kept = {k: v for k, v in replaced.items() if k not in removed}
        trimmed = Pointer(**{**asdict(pointer), "replaced": kept})
        _write_pointer(pointer_file(layout, run_date), trimmed)
    if removed:
        log.info("removed run directories past the grace period: %s", ", ".join(removed))
    return removed


def is_committed(staged: Location) -> bool:
    """Does the date's pointer name this run directory (``<partition>/_runs/<run_id>``)?"""
    pointer = staged.parent.parent / POINTER_NAME
    try:
        return bool(json.loads(pointer.read_text()).get("run_id") == staged.name)
    except (OSError, ValueError):
        return False


def _write_pointer(path: Location, pointer: Pointer) -> None:
    """One PUT, or a rename on a local disk (a separate function so fault-injection tests can
    fail the commit point)."""
    payload = json.dumps(asdict(pointer), indent=2, sort_keys=True) + "\n"
    path.write_atomic(payload.encode())


def _remove_dir(directory: Location) -> None:
    """A separate function so fault-injection tests can fail the cleanup step."""
    directory.rmtree()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
