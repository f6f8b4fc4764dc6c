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


def read_partition(spark: SparkSession, cfg: InputConfig, run_date: dt.date) -> DataFrame:
    """The partition's rows; a missing partition names the path and the dates that exist."""
    path = partition_path(cfg, run_date)
    try:
        return spark.read.parquet(path)
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            dates = available_dates(cfg)
            shown = dates[-5:] if dates else "none"
            raise InputNotFoundError(
                f"input partition {path} for {run_date} does not exist; latest dates present: "
                f"{shown}"
            ) from None
        raise StorageError(f"cannot read input partition {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
