"""What every engine offers the run: read an input partition, then score and stage it.

Engines only move rows and stage files; validation, gates, reconcile and commit belong to the
run (``runs.job``), and scoring itself to the core (``scoring.batch``), or to Spark for a model
Spark scores itself (``spark_ml``). How an engine sees its models (``Models``: describe one,
deliver it to where it scores) is the core's (``CoreModels``) unless the engine says otherwise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from batch_serving.config import InputConfig, LoadingConfig, StorageConfig
from batch_serving.models import adapters
from batch_serving.models.adapters import LoadedModel, ModelSpec, OutputRequest
from batch_serving.models.registry import ModelRef
from batch_serving.scoring.observers import TaskCounts, TaskSpec
from batch_serving.scoring.plan import ScoringPlan
from batch_serving.spark.delivery import DeliveryPlan, ModelHandle, plan_delivery
from batch_serving.storage import AnyPath, Location


@dataclass(frozen=True)
class InputData:
    """One input partition as an engine found it (footers or a Spark frame, not rows)."""

    where: str
    rows: int
    schema: pa.Schema
    files: tuple[AnyPath, ...]  # data files (pyarrow-readable); empty when Spark reads them
    native: Any = None  # the engine's own handle: footers (arrow_direct) or a DataFrame


@dataclass(frozen=True)
class Staging:
    """Where a run stages its two outputs before the commit."""

    predictions: Location
    quarantine: Location
    counts: Location  # the tasks' counts under Spark Connect (``spark.task_counts``)


class Models(Protocol):
    """How the models reach what scores them: described once on the driver, then delivered."""

    def describe(
        self, spark: SparkSession, loaded: LoadedModel, request: OutputRequest, label: str
    ) -> ModelSpec: ...

    def deliver(
        self,
        spark: SparkSession,
        ref: ModelRef,
        loaded: LoadedModel,
        size_mb: float,
        loading: LoadingConfig,
        trusted: tuple[str, ...] = (),
    ) -> DeliveryPlan: ...


class CoreModels:
    """Models the Arrow core scores in Python workers: described by their runtime adapter
    (which refuses what the core cannot score, e.g. a Spark ML pipeline) and shipped to the
    workers (``spark.delivery``: broadcast, per partition, or an artifact under Connect)."""

    def describe(
        self, spark: SparkSession, loaded: LoadedModel, request: OutputRequest, label: str
    ) -> ModelSpec:
        return adapters.describe(loaded, request, label)

    def deliver(
        self,
        spark: SparkSession,
        ref: ModelRef,
        loaded: LoadedModel,
        size_mb: float,
        loading: LoadingConfig,
        trusted: tuple[str, ...] = (),
    ) -> DeliveryPlan:
        return plan_delivery(spark, ref, loaded.obj, size_mb, loading, trusted)


class Engine(Models, Protocol):
    name: str
    # tasks' counts are applied exactly once (an action's accumulator): the gates' metrics
    # can be counted while scoring; otherwise the gates query Spark
    exact_counts: bool

    def read(
        self,
        spark: SparkSession,
        cfg: InputConfig,
        run_date: dt.date,
        storage: StorageConfig | None = None,
    ) -> InputData: ...

    def duplicate_ids(self, data: InputData, entities: list[str]) -> tuple[int, list[Any]]: ...

    def frame(self, spark: SparkSession, data: InputData) -> DataFrame:
        """The input as a Spark DataFrame (for Great Expectations gates)."""
        ...

    def stage(
        self,
        spark: SparkSession,
        data: InputData,
        plan: ScoringPlan,
        handles: list[ModelHandle],
        staging: Staging,
        duplicates: int,
        observe: TaskSpec | None = None,
    ) -> TaskCounts | None:
        """Score every row and write predictions (and quarantined rows) under ``staging``;
        ``duplicates`` > 0: keep the last row per entity id, dropping that many. With
        ``observe``, also count what it asks for (drift profile, gate metrics) in the same
        pass and return the merged per-task counts."""
        ...
