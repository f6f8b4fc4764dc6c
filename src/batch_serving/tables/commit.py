"""Output layout and the commit protocol: the ONE place that builds output paths and commits.

Layout under ``output.root``::

    predictions/<model>/ds=YYYY-MM-DD/part-*.parquet + _manifest.json   (committed)
    _staging/predictions/<model>/<run_id>/                              (being written)
    _trash/predictions/<model>/ds=YYYY-MM-DD.<run_id>/                  (old copy, during swap)

A run writes everything (data + manifest) into its staging directory, checks it, then swaps
it in with two renames on the same filesystem. Readers therefore see either the old complete
partition or the new complete one, never a half-written one. If a process dies between the two
renames, the next run (or ``recover``) puts the previous partition back before doing anything.
Spark and other engines skip ``_``-prefixed directories and files, so staging, trash and the
manifest never show up as data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from batch_serving.errors import StorageError

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
PARTITION_COLUMN = "ds"
PREDICTIONS = "predictions"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class TableLayout:
    """Paths of one output table (``predictions`` or ``quarantine``) of one model."""

    root: Path
    table: str
    model: str

    @property
    def table_dir(self) -> Path:
        return self.root / self.table / self.model

    def partition_dir(self, run_date: dt.date) -> Path:
        return self.table_dir / f"{PARTITION_COLUMN}={run_date.isoformat()}"

    def staging_dir(self, run_id: str) -> Path:
        return self.root / "_staging" / self.table / self.model / run_id

    def trash_dir(self, run_date: dt.date, run_id: str) -> Path:
        return (
            self.root
            / "_trash"
            / self.table
            / self.model
            / f"{PARTITION_COLUMN}={run_date}.{run_id}"
        )

    def run_dir(self, run_id: str) -> Path:
        """Per-run records (validation results, report), kept whether the run committed or not."""
        return self.root / "_runs" / self.table / self.model / run_id

    def committed_dates(self) -> list[str]:
        prefix = f"{PARTITION_COLUMN}="
        if not self.table_dir.is_dir():
            return []
        return sorted(p.name[len(prefix) :] for p in self.table_dir.glob(prefix + "*"))

    def trash_entries(self, run_date: dt.date) -> list[Path]:
        parent = self.root / "_trash" / self.table / self.model
        prefix = f"{PARTITION_COLUMN}={run_date.isoformat()}."
        return sorted(p for p in parent.glob(prefix + "*")) if parent.is_dir() else []


def predictions_layout(output_root: str, model: str) -> TableLayout:
    return TableLayout(Path(output_root), PREDICTIONS, model)


def quarantine_layout(output_root: str, model: str) -> TableLayout:
    return TableLayout(Path(output_root), QUARANTINE, model)


@dataclass(frozen=True)
class Committed:
    """What a commit wrote: where, how many rows, how many data files."""

    path: Path
    rows: int
    files: int


def data_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(directory).parts)
    )


def count_rows(directory: Path) -> int:
    """Row count from Parquet footers only (no data read)."""
    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in data_files(directory))
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read staged output in {directory}: {exc}") from None


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    path = directory / MANIFEST_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(partition_dir: Path) -> dict[str, Any] | None:
    path = partition_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def recover(layout: TableLayout, run_date: dt.date) -> None:
    """Undo a swap interrupted between its two renames; drop trash of completed swaps."""
    target = layout.partition_dir(run_date)
    entries = layout.trash_entries(run_date)
    if not target.exists() and entries:
        newest = entries[-1]
        log.warning("restoring %s from interrupted commit (%s)", target, newest.name)
        os.rename(newest, target)
        entries = entries[:-1]
    for leftover in entries:
        shutil.rmtree(leftover, ignore_errors=True)


def commit(layout: TableLayout, run_date: dt.date, staged: Path, run_id: str) -> Committed:
    """Swap ``staged`` in as the partition for ``run_date``; other dates are never touched."""
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
            os.rename(trash, target)  # put the previous partition back right away
        raise StorageError(f"commit of {target} failed: {exc}") from None
    shutil.rmtree(trash, ignore_errors=True)
    return Committed(path=target, rows=rows, files=files)


def discard(staged: Path) -> None:
    """Remove a run's staging directory (after a failure, or a successful commit's leftovers)."""
    shutil.rmtree(staged, ignore_errors=True)


def _rename(src: Path, dst: Path) -> None:
    """A separate function so fault-injection tests can interrupt the swap between renames."""
    os.rename(src, dst)
