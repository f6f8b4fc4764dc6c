"""The commit protocol: the ONE place that swaps a staged partition in.

A run writes everything (data + manifest) into its staging directory, checks it, then swaps
it in with two renames on the same filesystem. Readers therefore see either the old complete
partition or the new complete one, never a half-written one. If a process dies between the two
renames, ``recover`` puts the previous partition back; every run, ``check-output``, ``publish``
and ``batch-serving recover`` call it first, under the date's lease (``tables.lease``), so
recovery never races a live commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from dataclasses import dataclass

from batch_serving.errors import StorageError
from batch_serving.tables.files import count_rows, data_files
from batch_serving.tables.layout import TableLayout
from batch_serving.tables.storage import AnyPath, Location

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Committed:
    """What a commit wrote: where, how many rows, how many data files."""

    path: AnyPath
    rows: int
    files: int


def recover(layout: TableLayout, run_date: dt.date) -> bool:
    """Undo a swap interrupted between its two renames; drop trash of completed swaps.

    Returns True if a previous partition was put back. Pointer protocol: nothing to undo
    (the pointer is one object); run directories past their grace period are removed."""
    if layout.pointer_commit:
        from batch_serving.tables.object_commit import clean_expired

        clean_expired(layout, run_date)
        return False
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
        _rmtree(leftover)
    return restored


def commit(layout: TableLayout, run_date: dt.date, staged: AnyPath, run_id: str) -> Committed:
    """Swap ``staged`` in as the partition for ``run_date``; other dates are never touched.
    On object stores: switch the date's pointer to it (``tables.object_commit``)."""
    if layout.pointer_commit:
        from batch_serving.tables.object_commit import commit_pointer

        return commit_pointer(layout, run_date, staged, run_id)
    target = layout.partition_dir(run_date)
    trash = layout.trash_dir(run_date, run_id)
    rows, files = count_rows(staged), len(data_files(staged))
    recover(layout, run_date)
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
    _rmtree(trash)
    return Committed(path=target, rows=rows, files=files)


def discard(staged: AnyPath) -> None:
    """Remove a run's staging directory (after a failure, or a successful commit's leftovers);
    a run directory its date's pointer names is the committed data and stays."""
    if isinstance(staged, Location):
        from batch_serving.tables.object_commit import is_committed

        if not is_committed(staged):
            staged.rmtree()
        return
    shutil.rmtree(staged, ignore_errors=True)


def _rename(src: AnyPath, dst: AnyPath) -> None:
    """A separate function so fault-injection tests can interrupt the swap between renames."""
    _move(src, dst)


def _move(src: AnyPath, dst: AnyPath) -> None:
    """An atomic directory rename: ``os.rename`` locally, the filesystem's move on HDFS."""
    if isinstance(src, Location) and isinstance(dst, Location):
        src.fs.move(src.path, dst.path)
    else:
        os.rename(src, dst)  # type: ignore[arg-type]


def _rmtree(path: AnyPath) -> None:
    if isinstance(path, Location):
        path.rmtree()
    else:
        shutil.rmtree(path, ignore_errors=True)
