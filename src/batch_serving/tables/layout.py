"""Output layout: the ONE place that builds the paths of output tables, staging and leases.

Under ``output.root``::

    predictions/<model>/ds=YYYY-MM-DD/part-*.parquet + _manifest.json   (committed)
    _staging/predictions/<model>/<run_id>/                              (being written)
    _trash/predictions/<model>/ds=YYYY-MM-DD.<run_id>/                  (old copy, during swap)
    _runs/predictions/<model>/<run_id>/                                 (per-run records)
    _leases/predictions/<model>/ds=YYYY-MM-DD.json                      (the date's writer)

Spark and other engines skip ``_``-prefixed directories and files, so none of these show up
as data.

Where the date's data is and where a run stages depend on the commit protocol
(``tables.protocol``), chosen once here from the output root and carried by the layout: the
layout above is the rename swap's; on object stores (``tables.object_commit``) a partition is
instead a pointer object plus immutable run directories, and staging is the run directory::

    predictions/<model>/ds=YYYY-MM-DD/_COMMITTED.json                   (pointer, written last)
    predictions/<model>/ds=YYYY-MM-DD/_runs/<run_id>/part-*.parquet + _manifest.json

The leases (``tables.lease``) are files under a local root; under a remote one they are
objects on the bucket kept apart by conditional writes (``tables.object_lease``; S3), or files
on ``storage.lease_dir`` when it is set (and for stores without conditional writes here).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from batch_serving.config.sections import StorageConfig
from batch_serving.storage import Location, as_location, lease_root, location
from batch_serving.storage.conditional import conditional_objects, object_key
from batch_serving.tables.commit import RenameSwap
from batch_serving.tables.delta_commit import DELTA_LOG, DeltaCommit
from batch_serving.tables.file_lease import FileLeases
from batch_serving.tables.lease import LeaseHolder, LeaseStore, WriteLease
from batch_serving.tables.object_commit import PointerCommit
from batch_serving.tables.object_lease import ObjectLeases
from batch_serving.tables.protocol import CommitProtocol

PARTITION_COLUMN = "ds"
PREDICTIONS = "predictions"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class TableLayout:
    """Paths of one output table (``predictions`` or ``quarantine``) of one model, and the
    commit protocol its dates are committed with."""

    root: Location
    table: str
    model: str
    protocol: CommitProtocol = field(default_factory=RenameSwap)
    leases: LeaseStore | None = None  # where the leases live; None: files under a local root
    grace_period_s: float = 3600.0  # how long a replaced run directory stays readable

    def __post_init__(self) -> None:
        # local-only callers (the stream, tests) may hand in a plain Path
        object.__setattr__(self, "root", as_location(self.root))

    @property
    def table_dir(self) -> Location:
        return self.root / self.table / self.model

    def partition_name(self, run_date: dt.date) -> str:
        return f"{PARTITION_COLUMN}={run_date.isoformat()}"

    def partition_dir(self, run_date: dt.date) -> Location:
        return self.table_dir / self.partition_name(run_date)

    def staging_dir(self, run_id: str) -> Location:
        return self.root / "_staging" / self.table / self.model / run_id

    def staging_for(self, run_date: dt.date, run_id: str) -> Location:
        """Where a run writes before its commit (the protocol's choice)."""
        return self.protocol.staging_dir(self, run_date, run_id)

    def committed_dir(self, run_date: dt.date) -> Location:
        """The directory holding the date's committed data and manifest (the partition,
        holding no manifest, when nothing is committed)."""
        return self.protocol.committed_dir(self, run_date)

    def current_run_id(self, run_date: dt.date) -> str | None:
        """Which run's data the date holds right now (None: nothing committed)."""
        return self.protocol.current_run_id(self, run_date)

    def trash_dir(self, run_date: dt.date, run_id: str) -> Location:
        return self._trash_parent / f"{self.partition_name(run_date)}.{run_id}"

    def run_dir(self, run_id: str) -> Location:
        """Per-run records (validation results, report), kept whether the run committed or not."""
        return self.root / "_runs" / self.table / self.model / run_id

    def lease(self, run_date: dt.date, run_id: str, *, wait: bool = False) -> WriteLease:
        """The date's lease for ``run_id``: one writer per date (see ``tables.lease``)."""
        partition = self.partition_name(run_date)
        return self.lease_store.lease(self.table, self.model, partition, run_id, wait=wait)

    def lease_holders(self) -> list[LeaseHolder]:
        """Who holds a lease of this table and model now (one per date being written)."""
        return self.lease_store.holders(self.table, self.model)

    @property
    def lease_store(self) -> LeaseStore:
        if self.leases is not None:
            return self.leases
        return FileLeases(self.root.local_path("the leases"))

    def committed_dates(self) -> list[str]:
        prefix = f"{PARTITION_COLUMN}="
        if not self.table_dir.is_dir():
            return []
        found = sorted(self.table_dir.glob(prefix + "*"), key=lambda p: p.name)
        return [p.name[len(prefix) :] for p in found if self.protocol.holds_commit(p)]

    def trash_entries(self, run_date: dt.date) -> list[Location]:
        prefix = f"{self.partition_name(run_date)}."
        parent = self._trash_parent
        if not parent.is_dir():
            return []
        return sorted(parent.glob(prefix + "*"), key=lambda p: p.name)

    @property
    def _trash_parent(self) -> Location:
        return self.root / "_trash" / self.table / self.model


def predictions_layout(
    output_root: str,
    model: str,
    storage: StorageConfig | None = None,
    output_format: str | None = None,
) -> TableLayout:
    return table_layout(output_root, PREDICTIONS, model, storage, output_format)


def quarantine_layout(
    output_root: str,
    model: str,
    storage: StorageConfig | None = None,
    output_format: str | None = None,
) -> TableLayout:
    return table_layout(output_root, QUARANTINE, model, storage, output_format)


def table_layout(
    output_root: str,
    table: str,
    model: str,
    storage: StorageConfig | None = None,
    output_format: str | None = None,
) -> TableLayout:
    """The layout of ``output_root`` with its commit protocol and its lease store, both
    chosen here once (``lease_store``).

    ``output_format`` is ``output.format`` (writers pass it); None (readers that have no job
    config) means: a Delta table if the table already is one (a ``_delta_log``), else Parquet."""
    cfg = storage or StorageConfig()
    root = location(output_root, cfg)
    leases = lease_store(root, output_root, cfg)
    if output_format == "delta" or (
        output_format is None and (root / table / model / DELTA_LOG).is_dir()
    ):
        return TableLayout(root, table, model, DeltaCommit(), leases, cfg.grace_period_s)
    return TableLayout(root, table, model, commit_protocol(root, cfg), leases, cfg.grace_period_s)


def commit_protocol(root: Location, storage: StorageConfig | None = None) -> CommitProtocol:
    """``storage.commit``: ``auto`` is the rename swap where a directory rename is atomic
    (local disks, HDFS) and the pointer protocol where it is not (object stores)."""
    mode = (storage or StorageConfig()).commit
    if mode == "pointer" or (mode == "auto" and not root.renames_directories):
        return PointerCommit()
    return RenameSwap()


def lease_store(root: Location, output_root: str, storage: StorageConfig) -> LeaseStore:
    """Files under a local root; under a remote one, files on ``storage.lease_dir`` when it
    is set, else objects on the bucket where it answers conditional writes (S3), else files
    in the system temp directory (one driver host)."""
    local = root.as_local()
    if local is not None:
        return FileLeases(local)
    objects = None if storage.lease_dir else conditional_objects(root)
    if objects is not None:
        return ObjectLeases(objects, object_key(root))
    return FileLeases(lease_root(output_root, storage))
