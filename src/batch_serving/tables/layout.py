"""Output layout: the ONE place that builds the paths of output tables, staging and leases.

Under ``output.root``::

    predictions/<model>/ds=YYYY-MM-DD/part-*.parquet + _manifest.json   (committed)
    _staging/predictions/<model>/<run_id>/                              (being written)
    _trash/predictions/<model>/ds=YYYY-MM-DD.<run_id>/                  (old copy, during swap)
    _runs/predictions/<model>/<run_id>/                                 (per-run records)
    _leases/predictions/<model>/ds=YYYY-MM-DD.json                      (the date's writer)

Spark and other engines skip ``_``-prefixed directories and files, so none of these show up
as data.

On object stores (``storage.commit``: ``pointer``, see ``tables.object_commit``) a partition is
instead a pointer object plus immutable run directories, and staging is the run directory::

    predictions/<model>/ds=YYYY-MM-DD/_COMMITTED.json                   (pointer, written last)
    predictions/<model>/ds=YYYY-MM-DD/_runs/<run_id>/part-*.parquet + _manifest.json

and the leases live on a local (or shared POSIX) directory (``storage.lease_dir``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from batch_serving.config.sections import StorageConfig
from batch_serving.tables.lease import lease_path
from batch_serving.tables.storage import AnyPath, commits_by_pointer, lease_root, resolve

PARTITION_COLUMN = "ds"
POINTER_NAME = "_COMMITTED.json"
RUNS_DIR = "_runs"
PREDICTIONS = "predictions"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class TableLayout:
    """Paths of one output table (``predictions`` or ``quarantine``) of one model."""

    root: AnyPath
    table: str
    model: str
    pointer_commit: bool = False  # immutable run directories + a pointer (object stores)
    leases: Path | None = None  # where the leases live when the root is not a local path
    grace_period_s: float = 3600.0  # how long a replaced run directory stays readable

    @property
    def table_dir(self) -> AnyPath:
        return self.root / self.table / self.model

    def partition_name(self, run_date: dt.date) -> str:
        return f"{PARTITION_COLUMN}={run_date.isoformat()}"

    def partition_dir(self, run_date: dt.date) -> AnyPath:
        return self.table_dir / self.partition_name(run_date)

    def staging_dir(self, run_id: str) -> AnyPath:
        return self.root / "_staging" / self.table / self.model / run_id

    def run_data_dir(self, run_date: dt.date, run_id: str) -> AnyPath:
        """Pointer protocol: the run's immutable data directory (also its staging)."""
        return self.partition_dir(run_date) / RUNS_DIR / run_id

    def pointer_file(self, run_date: dt.date) -> AnyPath:
        return self.partition_dir(run_date) / POINTER_NAME

    def staging_for(self, run_date: dt.date, run_id: str) -> AnyPath:
        """Where a run writes before its commit: ``_staging`` (swap) or its run directory."""
        if self.pointer_commit:
            return self.run_data_dir(run_date, run_id)
        return self.staging_dir(run_id)

    def committed_dir(self, run_date: dt.date) -> AnyPath:
        """The directory holding the date's committed data and manifest: the partition itself
        (swap), or the run directory its pointer names (the partition, holding no manifest,
        when nothing is committed)."""
        if self.pointer_commit:
            from batch_serving.tables.object_commit import committed_run_dir

            return committed_run_dir(self, run_date) or self.partition_dir(run_date)
        return self.partition_dir(run_date)

    def current_run_id(self, run_date: dt.date) -> str | None:
        """Which run's data the date holds right now (None: nothing committed)."""
        from batch_serving.tables.manifest import committed_run_id

        if self.pointer_commit:
            from batch_serving.tables.object_commit import read_pointer

            pointer = read_pointer(self, run_date)
            return pointer.run_id if pointer else None
        return committed_run_id(self.partition_dir(run_date))

    def trash_dir(self, run_date: dt.date, run_id: str) -> AnyPath:
        return self._trash_parent / f"{self.partition_name(run_date)}.{run_id}"

    def run_dir(self, run_id: str) -> AnyPath:
        """Per-run records (validation results, report), kept whether the run committed or not."""
        return self.root / "_runs" / self.table / self.model / run_id

    def lease_file(self, run_date: dt.date) -> Path:
        """Who is writing this date right now (see ``tables.lease``)."""
        root = self.leases if self.leases is not None else self.root
        assert isinstance(root, Path), "a remote root needs a local lease directory"
        return lease_path(root, self.table, self.model, self.partition_name(run_date))

    def committed_dates(self) -> list[str]:
        prefix = f"{PARTITION_COLUMN}="
        if not self.table_dir.is_dir():
            return []
        names = sorted(p.name for p in self.table_dir.glob(prefix + "*"))
        if self.pointer_commit:
            names = [n for n in names if (self.table_dir / n / POINTER_NAME).is_file()]
        return [n[len(prefix) :] for n in names]

    def trash_entries(self, run_date: dt.date) -> list[AnyPath]:
        prefix = f"{self.partition_name(run_date)}."
        parent = self._trash_parent
        if not parent.is_dir():
            return []
        found: list[AnyPath] = list(parent.glob(prefix + "*"))
        return sorted(found, key=lambda p: p.name)

    @property
    def _trash_parent(self) -> AnyPath:
        return self.root / "_trash" / self.table / self.model


def predictions_layout(
    output_root: str, model: str, storage: StorageConfig | None = None
) -> TableLayout:
    return table_layout(output_root, PREDICTIONS, model, storage)


def quarantine_layout(
    output_root: str, model: str, storage: StorageConfig | None = None
) -> TableLayout:
    return table_layout(output_root, QUARANTINE, model, storage)


def table_layout(
    output_root: str, table: str, model: str, storage: StorageConfig | None = None
) -> TableLayout:
    """Local roots stay ``Path``s (swap protocol, unless ``storage.commit: pointer``); remote
    roots get a ``Location``, the pointer protocol on object stores, and local leases."""
    cfg = storage or StorageConfig()
    root = resolve(output_root, cfg)
    pointer = commits_by_pointer(root, cfg)
    if pointer and isinstance(root, Path):
        from batch_serving.tables.storage import location

        root = location(str(root), cfg)
    leases = lease_root(output_root, cfg) if not isinstance(root, Path) else None
    if isinstance(root, Path) or root.kind == "local":
        leases = None if isinstance(root, Path) else Path(root.path)
    return TableLayout(root, table, model, pointer, leases, cfg.grace_period_s)
