"""The input table's date partitions: THE place that spells a date's directory.

Hive-style ``<col>=<value>`` directories, nested in the table's partition order: the date
(``input.partition_format``, e.g. ``dt=20261122``) and the ``input.partition_filter`` columns
fixed, columns below the last fixed one read whole. Every reader (both engines, check-input,
the feature snapshot, the Airflow sensor) asks here, so they all read the same files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from batch_serving.config import InputConfig, JobConfig, StorageConfig
from batch_serving.errors import InputNotFoundError
from batch_serving.storage import Location, location


def date_value(cfg: InputConfig, run_date: dt.date) -> str:
    """The date as the directory spells it (``20261122`` for ``yyyyMMdd``)."""
    return run_date.strftime(cfg.date_strftime)


def partition_path(cfg: InputConfig, run_date: dt.date) -> str:
    """``<root>/<col>=<value>/...`` down to the last fixed partition column."""
    return spelt_partition_path(cfg, date_value(cfg, run_date))


def spelt_partition_path(cfg: InputConfig, spelt_date: str) -> str:
    """``partition_path`` with the date already spelt (or a placeholder, for docs)."""
    values = {cfg.partition_column: spelt_date, **cfg.partition_filter}
    parts = [f"{column}={values[column]}" for column in cfg.nesting[: len(values)]]
    return "/".join([cfg.root.rstrip("/"), *parts])


def partition_location(
    cfg: InputConfig, run_date: dt.date, storage: StorageConfig | None = None
) -> Location:
    """The partition as a ``Location`` on its filesystem."""
    return location(partition_path(cfg, run_date), storage)


def available_dates(cfg: InputConfig, storage: StorageConfig | None = None) -> list[str]:
    """Dates present beside the run's (same filter values above the date), as ISO dates, for
    error messages; directory names that do not parse with the format are left out."""
    above = cfg.nesting[: cfg.nesting.index(cfg.partition_column)]
    parent = "/".join([cfg.root.rstrip("/"), *(f"{c}={cfg.partition_filter[c]}" for c in above)])
    root = location(parent, storage)
    if not root.is_dir():
        return []
    prefix = f"{cfg.partition_column}="
    dates = []
    for name in (p.name for p in root.iterdir()):
        if name.startswith(prefix):
            try:
                day = dt.datetime.strptime(name[len(prefix) :], cfg.date_strftime).date()
            except ValueError:
                continue
            dates.append(day.isoformat())
    return sorted(dates)


def missing_partition(
    cfg: InputConfig, run_date: dt.date, storage: StorageConfig | None = None
) -> InputNotFoundError:
    dates = available_dates(cfg, storage)
    shown = dates[-5:] if dates else "none"
    table = f" of table {cfg.table}" if cfg.table is not None else ""
    return InputNotFoundError(
        f"input partition {partition_path(cfg, run_date)}{table} for {run_date} does not "
        f"exist; latest dates present: {shown}"
    )


def partition_exists(
    cfg: InputConfig, run_date: dt.date, storage: StorageConfig | None = None
) -> bool:
    return partition_location(cfg, run_date, storage).is_dir()


@dataclass(frozen=True)
class AwaitedPartition:
    """Where a date's input partition is and which file marks it complete: what the Airflow
    input sensor waits on (``batch-serving resolve-input``). For an ``input.table`` only a
    Spark session knows the directory (the metastore is Spark's), so it is computed once,
    where the jobs run, and the sensor is handed the result."""

    source: str  # the table or path as the job file names it
    run_date: dt.date
    root: str  # the path, or the table's location in the metastore
    partition: str
    marker: str | None  # schedule.input_marker; None: any Parquet file marks it complete

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.source,
            "run_date": self.run_date.isoformat(),
            "root": self.root,
            "partition": self.partition,
            "marker": self.marker,
        }

    def lines(self) -> list[str]:
        awaited = f"{self.partition}/{self.marker or '*.parquet'}"
        return [f"input {self.source} for {self.run_date}: {awaited}"]


def awaited_partition(cfg: JobConfig, run_date: dt.date) -> AwaitedPartition:
    """The date's partition of ``cfg`` (whose ``input.table``, if any, is resolved) and its
    completeness marker."""
    return AwaitedPartition(
        source=cfg.input.source,
        run_date=run_date,
        root=cfg.input.root,
        partition=partition_path(cfg.input, run_date),
        marker=cfg.schedule.input_marker,
    )
