"""The commit step: ``commit``/``recover``/``discard`` ask the layout's commit protocol
(``tables.protocol``); this module also holds the rename-swap protocol, ``RenameSwap``.

Rename swap (local disks, HDFS): a run writes everything (data + manifest) into its staging
directory, checks it, then swaps it in with two renames on the same filesystem. Readers
therefore see either the old complete partition or the new complete one, never a half-written
one. If a process dies between the two renames, ``recover`` puts the previous partition back;
every run, ``check-output``, ``publish`` and ``batch-serving recover`` call it first, under the
date's lease (``tables.lease``), so recovery never races a live commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batch_serving.errors import StorageError
from batch_serving.storage import Location
from batch_serving.storage.files import count_rows, data_files
from batch_serving.tables.manifest import committed_run_id
from batch_serving.tables.protocol import Committed

if TYPE_CHECKING:
    from batch_serving.tables.layout import TableLayout

__all__ = ["Committed", "RenameSwap", "commit", "discard", "recover"]

log = logging.getLogger(__name__)


def commit(layout: TableLayout, run_date: dt.date, staged: Location, run_id: str) -> Committed:
    """Make ``staged`` the date's data by the layout's protocol; other dates are never
    touched."""
    return layout.protocol.commit(layout, run_date, staged, run_id)


def recover(layout: TableLayout, run_date: dt.date) -> bool:
    """Undo what an interrupted commit of ``run_date`` left; True if previous data came back."""
    return layout.protocol.recover(layout, run_date)


def discard(layout: TableLayout, staged: Location) -> None:
    """Remove a run's staging; what the date's commit holds stays."""
    layout.protocol.discard(layout, staged)


@dataclass(frozen=True)
class RenameSwap:
    """Staging under ``_staging``; the commit renames the partition to ``_trash`` and the
    staging to the partition."""

    name: str = "swap"
    table_format: str = "parquet"

    def staging_dir(self, layout: TableLayout, run_date: dt.date, run_id: str) -> Location:
        return layout.staging_dir(run_id)

    def committed_dir(self, layout: TableLayout, run_date: dt.date) -> Location:
        return layout.partition_dir(run_date)

    def current_run_id(self, layout: TableLayout, run_date: dt.date) -> str | None:
        return committed_run_id(layout.partition_dir(run_date))

    def holds_commit(self, partition: Location) -> bool:
        return True  # a partition directory exists only once a swap put it there

    def catalog_location(self, layout: TableLayout, run_date: dt.date) -> Location | None:
        return None  # the partition is where Hive expects it

    def recover(self, layout: TableLayout, run_date: dt.date) -> bool:
        """Undo a swap interrupted between its two renames; drop trash of completed swaps."""
        target = layout.partition_dir(run_date)
        entries = layout.trash_entries(run_date)
        restored = False
        if not target.exists() and entries:
            newest = entries[-1]
            log.warning("restoring %s from interrupted commit (%s)", target, newest.name)
            _move(newest, target)
            entries = entries[:-1]
            restored = True
        for leftover in entries:
            leftover.rmtree(ignore_errors=True)
        return restored

    def commit(
        self, layout: TableLayout, run_date: dt.date, staged: Location, run_id: str
    ) -> Committed:
        target = layout.partition_dir(run_date)
        trash = layout.trash_dir(run_date, run_id)
        rows, files = count_rows(staged), len(data_files(staged))
        self.recover(layout, run_date)
        target.parent.mkdir(parents=True, exist_ok=True)
        moved_old = False
        try:
            if target.exists():
                trash.parent.mkdir(parents=True, exist_ok=True)
                _rename(target, trash)
                moved_old = True
            _rename(staged, target)
        except OSError as exc:
            if moved_old and not target.exists():
                _move(trash, target)  # put the previous partition back right away
            raise StorageError(f"commit of {target} failed: {exc}") from None
        trash.rmtree(ignore_errors=True)
        return Committed(path=target, rows=rows, files=files)

    def discard(self, layout: TableLayout, staged: Location) -> None:
        staged.rmtree(ignore_errors=True)  # a committed staging directory was renamed away


def _rename(src: Location, dst: Location) -> None:
    """A separate function so fault-injection tests can interrupt the swap between renames."""
    _move(src, dst)


def _move(src: Location, dst: Location) -> None:
    """An atomic directory rename (``os.rename`` locally, the filesystem's move on HDFS)."""
    src.move_to(dst)
