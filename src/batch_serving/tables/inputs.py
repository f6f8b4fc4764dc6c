"""The input table's date partitions (Hive-style ``<col>=<date>`` directories)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from batch_serving.config import InputConfig
from batch_serving.errors import InputNotFoundError
from batch_serving.tables.files import is_local, local_path


def partition_path(cfg: InputConfig, run_date: dt.date) -> str:
    return f"{cfg.path.rstrip('/')}/{cfg.partition_column}={run_date.isoformat()}"


def available_dates(cfg: InputConfig) -> list[str]:
    """Dates present under a local table root (for error messages); empty if not local."""
    root = Path(cfg.path)
    if not is_local(cfg.path) or not root.is_dir():
        return []
    prefix = f"{cfg.partition_column}="
    return sorted(p.name[len(prefix) :] for p in root.iterdir() if p.name.startswith(prefix))


def missing_partition(cfg: InputConfig, run_date: dt.date) -> InputNotFoundError:
    dates = available_dates(cfg)
    shown = dates[-5:] if dates else "none"
    return InputNotFoundError(
        f"input partition {partition_path(cfg, run_date)} for {run_date} does not exist; "
        f"latest dates present: {shown}"
    )


def partition_exists(cfg: InputConfig, run_date: dt.date) -> bool:
    return local_path(partition_path(cfg, run_date)).is_dir()
