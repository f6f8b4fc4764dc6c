"""Read one date partition of the warehouse table (Hive-style ``<col>=<date>`` directories)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from batch_serving.config import InputConfig
from batch_serving.errors import InputNotFoundError, StorageError


def partition_path(cfg: InputConfig, run_date: dt.date) -> str:
    return f"{cfg.path.rstrip('/')}/{cfg.partition_column}={run_date.isoformat()}"


def available_dates(cfg: InputConfig) -> list[str]:
    """Dates present under a local table root (for error messages); empty if not local."""
    root = Path(cfg.path)
    if "://" in cfg.path or not root.is_dir():
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
    return Path(partition_path(cfg, run_date).removeprefix("file://")).is_dir()


def read_partition(spark: SparkSession, cfg: InputConfig, run_date: dt.date) -> DataFrame:
    """The partition's rows; a missing partition names the path and the dates that exist."""
    path = partition_path(cfg, run_date)
    try:
        return spark.read.parquet(path)
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            raise missing_partition(cfg, run_date) from None
        raise StorageError(f"cannot read input partition {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
