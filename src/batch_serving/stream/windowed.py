"""``WindowedSource``: a stream source whose events arrive with their windowed features
(``features``, issue #24), and the two hooks ``runner`` calls (``carried``, ``query_conf``).

A variant behind the ``StreamSource`` seam: it wraps the job's source (files, Kafka, rate),
adds the features in ``read`` (``stream.windowed_frame``) and hands each micro-batch's
enriched rows to the same validation and scoring as any other (``stream.batches``). The
model's input columns may then name features (``amount_sum_10m``) like any event column.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_serving.config import JobConfig
from batch_serving.features.online import TIME, OnlineFeatureWriter, connect, online_prefix
from batch_serving.features.spec import WindowSpec
from batch_serving.features.stream import state_store_conf, windowed_frame
from batch_serving.stream.source import BatchInput, BatchPart, ParquetFileSource, StreamSource


@dataclass
class WindowedSource:
    """``inner``'s events with ``spec``'s features, each released once the watermark passes
    it (so an event is scored a watermark's delay after it happened)."""

    inner: StreamSource
    spec: WindowSpec
    online: OnlineFeatureWriter | None = None
    _cached: DataFrame | None = field(default=None, repr=False)

    def describe(self) -> str:
        return f"{self.inner.describe()} (windowed features by {self.spec.entity})"

    def passthrough_columns(self) -> list[str]:
        """The inner source's, then the features: each scored (or quarantined) row keeps the
        features it was scored with, which ``training-set --check`` compares offline."""
        return [*self.inner.passthrough_columns(), *self.spec.names]

    def read(self, spark: SparkSession) -> DataFrame:
        return windowed_frame(self.inner.read(spark), self.spec)

    def batch_input(self, frame: DataFrame, batch_id: int, needed: Sequence[str]) -> BatchInput:
        """The batch's released events. Cached: each action on a stateful batch would run the
        state store's step again. Parquet files are taken as Spark read them for the window
        (the per-file schema grouping of ``ParquetFileSource`` re-reads the files, which would
        bypass the features); the other sources split the enriched rows as they always do."""
        if self._cached is not None:
            self._cached.unpersist()
        self._cached = frame.persist()
        if self.online is not None:
            self.online.write(batch_id, self._released(self._cached))
        if isinstance(self.inner, ParquetFileSource):
            return BatchInput([BatchPart(self._cached, f"{self.describe()} batch {batch_id}")])
        return self.inner.batch_input(self._cached, batch_id, needed)

    def _released(self, frame: DataFrame) -> pd.DataFrame:
        """What the online store keeps of the batch's events (those with an entity and a
        time): the entity, the time in microseconds, the aggregated columns."""
        spec = self.spec
        kept = frame.where(F.col(spec.entity).isNotNull() & F.col(spec.event_time).isNotNull())
        return kept.select(
            spec.entity, F.unix_micros(spec.event_time).alias(TIME), *spec.columns
        ).toPandas()


def windowed(source: StreamSource, cfg: JobConfig) -> StreamSource:
    """The job's source, with its ``windows:`` features (and their online store) if it
    declares any."""
    if cfg.windows is None:
        return source
    spec = WindowSpec.from_config(cfg.windows)
    url = cfg.windows.redis_url
    online = None if url is None else OnlineFeatureWriter(connect(url), online_prefix(cfg), spec)
    return WindowedSource(source, spec, online)


def carried(
    source: StreamSource, selected: Sequence[str], event_time: str | None = None
) -> list[str]:
    """The columns the stream hands to each micro-batch: ``selected`` (what scoring reads),
    the stream's ``event_time`` column (a Kafka batch checks each message's time in it) and,
    for windowed features with an online store, the columns it keeps."""
    extra: list[str] = [event_time] if event_time else []
    if isinstance(source, WindowedSource) and source.online is not None:
        extra += [source.spec.entity, source.spec.event_time, *source.spec.columns]
    return list(dict.fromkeys([*selected, *extra]))


def query_conf(spark: SparkSession, cfg: JobConfig) -> AbstractContextManager[None]:
    """Where the job's stream starts: ``state_store_conf`` for windowed features."""
    return nullcontext() if cfg.windows is None else state_store_conf(spark)
