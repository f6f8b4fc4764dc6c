"""Read one date partition of the warehouse table with Spark."""

from __future__ import annotations

import datetime as dt

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from batch_serving.config import InputConfig
from batch_serving.errors import StorageError, first_line
from batch_serving.storage import spark_uri
from batch_serving.tables.inputs import missing_partition, partition_path


def read_partition(spark: SparkSession, cfg: InputConfig, run_date: dt.date) -> DataFrame:
    """The partition's rows; a missing partition names the path and the dates that exist."""
    path = partition_path(cfg, run_date)
    try:
        return spark.read.parquet(spark_uri(path))  # s3a:// for s3://
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            raise missing_partition(cfg, run_date) from None
        raise StorageError(f"cannot read input partition {path}: {first_line(exc)}") from None
