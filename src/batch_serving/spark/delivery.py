"""Ship the model to executors: broadcast it once, or let workers fetch it from the registry.

Either way a ``ModelHandle`` travels inside the UDF closure; ``handle.get()`` on a worker goes
through ``model_cache`` so a worker loads each model version at most once. Accumulators count
real loads and the distinct worker processes that asked, so a run can report both.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Literal

import cloudpickle
from pyspark.accumulators import Accumulator, AccumulatorParam
from pyspark.broadcast import Broadcast
from pyspark.core.context import SparkContext
from pyspark.sql import SparkSession

from batch_serving.config import LoadingConfig
from batch_serving.errors import ModelLoadError
from batch_serving.models import cache as model_cache
from batch_serving.models.artifacts import fetch_and_load
from batch_serving.models.cache import MAX_MODELS, LruCache
from batch_serving.models.registry import ModelRef

Strategy = Literal["broadcast", "per_partition"]


class _UnionParam(AccumulatorParam[frozenset[int]]):
    def zero(self, value: frozenset[int]) -> frozenset[int]:
        return frozenset()

    def addInPlace(self, a: frozenset[int], b: frozenset[int]) -> frozenset[int]:
        return frozenset(a) | frozenset(b)


@dataclass(frozen=True)
class ModelHandle:
    """Picklable pointer to a model; resolves to the loaded model inside a Python worker."""

    ref: ModelRef
    strategy: Strategy
    extra_trusted_types: tuple[str, ...]
    payload: Broadcast[bytes] | None
    loads: Accumulator[int]
    workers: Accumulator[frozenset[int]]

    def get(self) -> Any:
        model, loaded_now = model_cache.get_or_load(self.ref.cache_key, self._load)
        if loaded_now:
            self.loads.add(1)
        self.workers.add(frozenset([os.getpid()]))
        return model

    def _load(self) -> Any:
        if self.payload is not None:
            return cloudpickle.loads(self.payload.value)
        return fetch_and_load(self.ref, self.extra_trusted_types).obj


@dataclass(frozen=True)
class DeliveryPlan:
    handle: ModelHandle
    artifact_mb: float

    @property
    def strategy(self) -> Strategy:
        return self.handle.strategy


def plan_delivery(
    spark: SparkSession,
    ref: ModelRef,
    model_obj: Any,
    size_mb: float,
    loading: LoadingConfig,
    extra_trusted_types: tuple[str, ...] = (),
) -> DeliveryPlan:
    """Choose the strategy (``auto``: by artifact size vs ``broadcast_max_mb``) and prepare it.

    A broadcast is created once per model version and Spark context, and reused by later jobs
    of the same session (backfills, notebooks): a registered version never changes, and a
    broadcast that a finished job unpersisted is sent again on its next use."""
    strategy: Strategy
    if loading.strategy == "auto":
        strategy = "broadcast" if size_mb <= loading.broadcast_max_mb else "per_partition"
    else:
        strategy = loading.strategy
    sc = spark.sparkContext
    payload = _broadcast(sc, ref, model_obj) if strategy == "broadcast" else None
    handle = ModelHandle(
        ref=ref,
        strategy=strategy,
        extra_trusted_types=extra_trusted_types,
        payload=payload,
        loads=sc.accumulator(0),
        workers=sc.accumulator(frozenset(), _UnionParam()),
    )
    return DeliveryPlan(handle=handle, artifact_mb=size_mb)


def _unpersist(payload: Broadcast[bytes]) -> None:
    with contextlib.suppress(Exception):  # its context may have stopped since
        payload.unpersist()


# the driver's broadcasts, by (Spark application, model version, artifact location)
_BROADCASTS: LruCache[tuple[str, str, str], Broadcast[bytes]] = LruCache(MAX_MODELS, _unpersist)


def _broadcast(sc: SparkContext, ref: ModelRef, model_obj: Any) -> Broadcast[bytes]:
    def create() -> Broadcast[bytes]:
        try:
            return sc.broadcast(cloudpickle.dumps(model_obj))
        except Exception as exc:
            raise ModelLoadError(
                f"{ref.uri} cannot be serialized for broadcast ({exc}); "
                "use loading.strategy: per_partition"
            ) from None

    key = (str(sc.applicationId), ref.cache_key, ref.artifact_uri)
    return _BROADCASTS.get_or_load(key, create)[0]


def release(plan: DeliveryPlan) -> None:
    """Free the broadcast blocks once the job is done."""
    if plan.handle.payload is not None:
        plan.handle.payload.unpersist()
