"""The commit protocol seam: how a run's staged output becomes a date's data (issue #27.3).

One interface, one implementation per way of making a commit atomic, chosen ONCE from the
output root (``tables.layout.table_layout``) and carried by the ``TableLayout``:

* ``RenameSwap`` (``tables.commit``): two directory renames, where a rename is atomic (local
  disks, HDFS);
* ``PointerCommit`` (``tables.object_commit``): immutable run directories and one pointer
  object written last (object stores);
* a table format (Delta Lake) fits the same methods: its staging is the table's data
  directory, its commit a transaction-log entry, and ``Committed.version`` the table version.

Every caller (the run, recovery, the SQL catalog, readers) asks the layout's protocol; none
checks which one it is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from batch_serving.storage import Location

if TYPE_CHECKING:
    from batch_serving.tables.layout import TableLayout


@dataclass(frozen=True)
class Committed:
    """What a commit wrote: where, how many rows, how many data files, and the table version
    it made (table formats; None for directory protocols)."""

    path: Location
    rows: int
    files: int
    version: int | None = None


class CommitProtocol(Protocol):
    """Where a run stages, how it commits and recovers, and where the committed data is."""

    @property
    def name(self) -> str:
        """What ``storage.commit`` calls it (``swap``, ``pointer``, ``delta``)."""
        ...

    @property
    def table_format(self) -> str:
        """What readers open the table as: ``parquet`` (Hive partitions) or ``delta``."""
        ...

    def staging_dir(self, layout: TableLayout, run_date: dt.date, run_id: str) -> Location:
        """Where a run writes before its commit."""
        ...

    def committed_dir(self, layout: TableLayout, run_date: dt.date) -> Location:
        """The directory holding the date's committed data and manifest (the partition when
        nothing is committed)."""
        ...

    def current_run_id(self, layout: TableLayout, run_date: dt.date) -> str | None:
        """Which run's data the date holds right now (None: nothing committed)."""
        ...

    def holds_commit(self, partition: Location) -> bool:
        """Whether a ``ds=`` directory found in the table is a committed date."""
        ...

    def catalog_location(self, layout: TableLayout, run_date: dt.date) -> Location | None:
        """The LOCATION the SQL catalog must give the date's partition; None: the Hive
        default (``<table>/ds=<date>``), so the catalog sets none."""
        ...

    def commit(
        self, layout: TableLayout, run_date: dt.date, staged: Location, run_id: str
    ) -> Committed:
        """Make ``staged`` (data and manifest) the date's data, atomically for readers."""
        ...

    def recover(self, layout: TableLayout, run_date: dt.date) -> bool:
        """Finish or undo what a dead commit left; True if previous data was put back."""
        ...

    def discard(self, layout: TableLayout, staged: Location) -> None:
        """Remove a run's staging (after a failure, or a successful commit's leftovers); never
        what is committed."""
        ...
