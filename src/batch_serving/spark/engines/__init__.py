"""Batch engines: Spark moves rows and stages files; the scoring core scores them."""

from __future__ import annotations

from batch_serving.config import JobConfig
from batch_serving.errors import ConfigError
from batch_serving.spark.connect import unsupported
from batch_serving.spark.engines.arrow_direct import ArrowDirectEngine
from batch_serving.spark.engines.base import Engine, InputData, Staging
from batch_serving.spark.engines.dataframe import DataFrameEngine
from batch_serving.storage import pyarrow_can_read
from batch_serving.storage.files import is_local

__all__ = ["Engine", "InputData", "Staging", "choose_engine", "engine_named"]


def choose_engine(cfg: JobConfig) -> str:
    """``auto``: arrow_direct for plain Parquet on a filesystem path, else dataframe. Under
    Spark Connect (``spark.remote``) only dataframe runs: arrow_direct hands work units to
    tasks with ``sparkContext.parallelize`` and counts with an accumulator (no RDDs and no
    accumulators in Connect)."""
    if cfg.spark.remote is not None:
        if cfg.engine == "arrow_direct":
            raise ConfigError(
                unsupported("engine: arrow_direct (RDD tasks)", "use engine: dataframe or auto")
            )
        return "dataframe"
    if cfg.engine != "auto":
        return cfg.engine
    if cfg.validation.duplicate_ids == "keep_last":
        return "dataframe"  # needs a window over the whole partition
    # object stores too: pyarrow's own clients need no Hadoop connector jars
    path = cfg.input.root  # a table input is resolved to its location by then
    return "arrow_direct" if is_local(path) or pyarrow_can_read(path) else "dataframe"


def engine_named(name: str) -> Engine:
    return ArrowDirectEngine() if name == "arrow_direct" else DataFrameEngine()
