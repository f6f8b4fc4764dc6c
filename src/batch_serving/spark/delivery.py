"""Ship the model to executors: broadcast it once, or let workers fetch it from the registry.

Either way a ``ModelHandle`` travels inside the UDF closure; ``handle.get()`` on a worker goes
through ``model_cache`` so a worker loads each model version at most once. Accumulators count
real loads and the distinct worker processes that asked, so a run can report both.

Under Spark Connect there is no broadcast and no accumulator: the ``artifact`` strategy takes
broadcast's place (the model directory, zipped, travels with ``spark.addArtifacts`` and each
Python worker loads it once, keyed by the zip's digest), and the handle counts nothing.

A model Spark itself scores on the driver's plan (a Spark ML pipeline, engine ``spark_ml``)
travels nowhere: its ``driver`` handle holds the loaded value and is never shipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import cloudpickle
from pyspark.accumulators import Accumulator, AccumulatorParam
from pyspark.broadcast import Broadcast
from pyspark.core.context import SparkContext
from pyspark.sql import SparkSession

from batch_serving.config import LoadingConfig
from batch_serving.errors import ModelLoadError
from batch_serving.models import cache as model_cache
from batch_serving.models.artifacts import download_model, fetch_and_load, load_model_dir
from batch_serving.models.cache import MAX_MODELS, LruCache
from batch_serving.models.registry import ModelRef
from batch_serving.spark.connect import is_connect

Strategy = Literal["broadcast", "per_partition", "artifact", "driver"]
T = TypeVar("T")


@dataclass(frozen=True)
class Uncounted(Generic[T]):
    """An accumulator's stand-in under Spark Connect (which has none): adds nothing, and its
    value stays ``zero``, so a Connect run reports 0 model loads and 0 workers."""

    zero: T

    def add(self, term: T) -> None:
        return None

    @property
    def value(self) -> T:
        return self.zero


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
    loads: Accumulator[int] | Uncounted[int]
    workers: Accumulator[frozenset[int]] | Uncounted[frozenset[int]]
    artifact: str | None = None  # ``artifact``: the zip's name among the session's files
    local: Any = None  # ``driver``: the loaded value itself (such a handle is never shipped)

    @property
    def cache_key(self) -> str:
        """The worker cache's key: the shipped zip's digest (in its name), else the version."""
        return self.artifact or self.ref.cache_key

    def get(self) -> Any:
        if self.strategy == "driver":
            return self.local
        model, loaded_now = model_cache.get_or_load(self.cache_key, self._load)
        if loaded_now:
            self.loads.add(1)
        self.workers.add(frozenset([os.getpid()]))
        return model

    def _load(self) -> Any:
        if self.payload is not None:
            return cloudpickle.loads(self.payload.value)
        if self.artifact is not None:
            return load_shipped(self.artifact, self.ref.uri, self.extra_trusted_types)
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
    broadcast that a finished job unpersisted is sent again on its next use. Under Spark
    Connect, ``broadcast`` (chosen or by size) ships the model directory as an artifact."""
    strategy: Strategy
    if loading.strategy == "auto":
        strategy = "broadcast" if size_mb <= loading.broadcast_max_mb else "per_partition"
    else:
        strategy = loading.strategy
    if is_connect(spark):
        return _connect_plan(spark, ref, strategy, size_mb, extra_trusted_types)
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


def driver_delivery(ref: ModelRef, model_obj: Any, size_mb: float) -> DeliveryPlan:
    """The ``driver`` plan: the model stays where it was loaded (no Python worker loads it, so
    the manifest's ``model_loads`` and ``python_workers`` are 0)."""
    handle = ModelHandle(
        ref=ref,
        strategy="driver",
        extra_trusted_types=(),
        payload=None,
        loads=Uncounted(0),
        workers=Uncounted(frozenset()),
        local=model_obj,
    )
    return DeliveryPlan(handle=handle, artifact_mb=size_mb)


def _connect_plan(
    spark: SparkSession,
    ref: ModelRef,
    strategy: Strategy,
    size_mb: float,
    extra_trusted_types: tuple[str, ...],
) -> DeliveryPlan:
    artifact = _shipped(spark, ref) if strategy == "broadcast" else None
    handle = ModelHandle(
        ref=ref,
        strategy="artifact" if artifact is not None else strategy,
        extra_trusted_types=extra_trusted_types,
        payload=None,
        loads=Uncounted(0),
        workers=Uncounted(frozenset()),
        artifact=artifact,
    )
    return DeliveryPlan(handle=handle, artifact_mb=size_mb)


# zips the driver made, by model version and artifact location: (zip path, its name)
_ZIPS: LruCache[tuple[str, str], tuple[Path, str]] = LruCache(MAX_MODELS)
# names already added, by Connect session: a session refuses a name it holds
_SHIPPED: LruCache[tuple[str, str], str] = LruCache(MAX_MODELS * 4)
_ZIP_DIR: list[Path] = []


def _shipped(spark: SparkSession, ref: ModelRef) -> str:
    """Zip the model directory once per process, add it to the session once; its name."""
    path, name = _ZIPS.get_or_load((ref.cache_key, ref.artifact_uri), lambda: _zip_model(ref))[0]

    def add() -> str:
        spark.addArtifacts(str(path), file=True)
        return name

    session = str(getattr(spark, "session_id", id(spark)))
    return _SHIPPED.get_or_load((session, name), add)[0]


def _zip_model(ref: ModelRef) -> tuple[Path, str]:
    """The model directory as one zip named by the digest of its files (names and bytes), so
    a worker's cache key changes exactly when the model's files do."""
    if not _ZIP_DIR:
        _ZIP_DIR.append(Path(tempfile.mkdtemp(prefix="bs-artifacts-")))
    with tempfile.TemporaryDirectory(prefix="bs-ship-") as tmp:
        model_dir = download_model(ref, tmp)
        files = sorted(p for p in model_dir.rglob("*") if p.is_file())
        digest = hashlib.sha256()
        for file in files:
            digest.update(str(file.relative_to(model_dir)).encode() + b"\0")
            digest.update(file.read_bytes())
        name = f"bs-model-{digest.hexdigest()[:32]}.zip"
        path = _ZIP_DIR[0] / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                archive.write(file, str(file.relative_to(model_dir)))
    return path, name


def load_shipped(name: str, label: str, extra_trusted_types: tuple[str, ...] = ()) -> Any:
    """Worker side of ``artifact``: unzip the session file ``name`` and load it (once per
    worker, through ``model_cache``)."""
    from pyspark import SparkFiles

    shipped = Path(SparkFiles.get(name))
    if not shipped.is_file():
        raise ModelLoadError(f"{label}: shipped model {name} not found in this worker's files")
    with tempfile.TemporaryDirectory(prefix="bs-shipped-") as tmp:
        with zipfile.ZipFile(shipped) as archive:
            archive.extractall(tmp)
        return load_model_dir(Path(tmp), label, extra_trusted_types).obj


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
