"""Batch engines: Spark moves rows and stages files; the scoring core scores them."""

from __future__ import annotations

from batch_serving.config import JobConfig
from batch_serving.errors import ConfigError
from batch_serving.models.adapters import SPARK_RUNTIME
from batch_serving.spark.connect import unsupported
from batch_serving.spark.engines.arrow_direct import ArrowDirectEngine
from batch_serving.spark.engines.base import CoreModels, Engine, InputData, Models, Staging
from batch_serving.spark.engines.dataframe import DataFrameEngine
from batch_serving.spark.engines.spark_ml import SparkMLEngine
from batch_serving.storage import pyarrow_can_read
from batch_serving.storage.files import is_local

__all__ = [
    "CoreModels",
    "Engine",
    "InputData",
    "Models",
    "Staging",
    "choose_engine",
    "engine_named",
]


def choose_engine(cfg: JobConfig, runtime: str | None = None) -> str:
    """``auto``: spark_ml for a single model Spark scores itself (``runtime``: the runtime of a
    single-model job's model), else arrow_direct for plain Parquet on a filesystem path, else
    dataframe. Under Spark Connect (``spark.remote``) only dataframe runs: arrow_direct hands
    work units to tasks with ``sparkContext.parallelize`` and counts with an accumulator (no
    RDDs and no accumulators in Connect)."""
    if runtime == SPARK_RUNTIME:
        return _spark_ml(cfg)
    if cfg.engine == "spark_ml":
        raise ConfigError(
            f"engine: spark_ml scores one model with MLmodel flavor '{SPARK_RUNTIME}' (a Spark ML "
            f"pipeline); job {cfg.job} has "
            + ("several models" if cfg.multi_model else f"model {cfg.model.selector} of another")
            + "; use engine: auto"
        )
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


def _spark_ml(cfg: JobConfig) -> str:
    """A Spark ML pipeline is scored by its transform: no other engine can run it."""
    if cfg.engine not in ("auto", "spark_ml"):
        raise ConfigError(
            f"engine: {cfg.engine} cannot score {cfg.model.selector}: it has MLmodel flavor "
            f"'{SPARK_RUNTIME}', a Spark ML pipeline that Spark scores with its own transform; "
            "set engine: auto (or spark_ml)"
        )
    if cfg.spark.remote is not None:
        raise ConfigError(
            f"{cfg.model.selector} has MLmodel flavor '{SPARK_RUNTIME}': engine spark_ml is not "
            "tested under Spark Connect (spark.remote); run this job with a classic session"
        )
    return "spark_ml"


_ENGINES: dict[str, type[Engine]] = {
    "arrow_direct": ArrowDirectEngine,
    "dataframe": DataFrameEngine,
    "spark_ml": SparkMLEngine,
}


def engine_named(name: str) -> Engine:
    return _ENGINES[name]()
