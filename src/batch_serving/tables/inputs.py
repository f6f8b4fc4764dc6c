"""The input table's date partitions (Hive-style ``<col>=<date>`` directories)."""

from __future__ import annotations

import datetime as dt

from batch_serving.config import InputConfig, StorageConfig
from batch_serving.errors import InputNotFoundError
from batch_serving.storage import Location, location


def partition_path(cfg: InputConfig, run_date: dt.date) -> str:
    return f"{cfg.path.rstrip('/')}/{cfg.partition_column}={run_date.isoformat()}"


def partition_location(
    cfg: InputConfig, run_date: dt.date, storage: StorageConfig | None = None
) -> Location:
    """The partition as a ``Location`` on its filesystem."""
    return location(partition_path(cfg, run_date), storage)


def available_dates(cfg: InputConfig, storage: StorageConfig | None = None) -> list[str]:
    """Dates present under the table root (for error messages)."""
    root = location(cfg.path, storage)
    if not root.is_dir():
        return []
    prefix = f"{cfg.partition_column}="
    names: list[str] = [p.name for p in root.iterdir()]
    return sorted(n[len(prefix) :] for n in names if n.startswith(prefix))


def missing_partition(
    cfg: InputConfig, run_date: dt.date, storage: StorageConfig | None = None
) -> InputNotFoundError:
    dates = available_dates(cfg, storage)
    shown = dates[-5:] if dates else "none"
    return InputNotFoundError(
        f"input partition {partition_path(cfg, run_date)} for {run_date} does not exist; "
        f"latest dates present: {shown}"
    )


def partition_exists(
    cfg: InputConfig, run_date: dt.date, storage: StorageConfig | None = None
) -> bool:
    return partition_location(cfg, run_date, storage).is_dir()
