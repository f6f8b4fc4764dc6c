"""Output layout: the ONE place that builds the paths of output tables, staging and leases.

Under ``output.root``::

    predictions/<model>/ds=YYYY-MM-DD/part-*.parquet + _manifest.json   (committed)
    _staging/predictions/<model>/<run_id>/                              (being written)
    _trash/predictions/<model>/ds=YYYY-MM-DD.<run_id>/                  (old copy, during swap)
    _runs/predictions/<model>/<run_id>/                                 (per-run records)
    _leases/predictions/<model>/ds=YYYY-MM-DD.json                      (the date's writer)

Spark and other engines skip ``_``-prefixed directories and files, so none of these show up
as data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from batch_serving.tables.lease import lease_path

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

    def partition_name(self, run_date: dt.date) -> str:
        return f"{PARTITION_COLUMN}={run_date.isoformat()}"

    def partition_dir(self, run_date: dt.date) -> Path:
        return self.table_dir / self.partition_name(run_date)

    def staging_dir(self, run_id: str) -> Path:
        return self.root / "_staging" / self.table / self.model / run_id

    def trash_dir(self, run_date: dt.date, run_id: str) -> Path:
        return self._trash_parent / f"{self.partition_name(run_date)}.{run_id}"

    def run_dir(self, run_id: str) -> Path:
        """Per-run records (validation results, report), kept whether the run committed or not."""
        return self.root / "_runs" / self.table / self.model / run_id

    def lease_file(self, run_date: dt.date) -> Path:
        """Who is writing this date right now (see ``tables.lease``)."""
        return lease_path(self.root, self.table, self.model, self.partition_name(run_date))

    def committed_dates(self) -> list[str]:
        prefix = f"{PARTITION_COLUMN}="
        if not self.table_dir.is_dir():
            return []
        return sorted(p.name[len(prefix) :] for p in self.table_dir.glob(prefix + "*"))

    def trash_entries(self, run_date: dt.date) -> list[Path]:
        prefix = f"{self.partition_name(run_date)}."
        parent = self._trash_parent
        return sorted(parent.glob(prefix + "*")) if parent.is_dir() else []

    @property
    def _trash_parent(self) -> Path:
        return self.root / "_trash" / self.table / self.model


def predictions_layout(output_root: str, model: str) -> TableLayout:
    return TableLayout(Path(output_root), PREDICTIONS, model)


def quarantine_layout(output_root: str, model: str) -> TableLayout:
    return TableLayout(Path(output_root), QUARANTINE, model)
