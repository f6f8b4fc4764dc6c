"""The ``dataframe`` engine: Spark reads the input, ``mapInArrow`` calls the scoring core.

For inputs Spark must read itself (remote filesystems, formats pyarrow cannot plan) and for
``duplicate_ids: keep_last`` (a window over the whole partition). Every row crosses
JVM -> Python -> JVM once through Arrow IPC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from batch_serving.config import InputConfig, StorageConfig
from batch_serving.quality.checks import duplicate_ids_arrow
from batch_serving.scoring.batch import BatchScorer, tagged
from batch_serving.scoring.observers import TaskCounts, TaskSpec
from batch_serving.scoring.plan import ERROR_CLASS, ScoringPlan
from batch_serving.spark import errors
from batch_serving.spark.connectors import require_scheme
from batch_serving.spark.delivery import ModelHandle
from batch_serving.spark.engines.base import CoreModels, InputData, Staging
from batch_serving.spark.reader import read_partition
from batch_serving.spark.task_counts import TaskTotals, task_totals
from batch_serving.storage import Location, location
from batch_serving.storage.files import checked_data_files, count_rows, is_local
from batch_serving.tables.inputs import missing_partition, partition_exists, partition_path


class DataFrameEngine(CoreModels):
    name = "dataframe"
    exact_counts = False  # mapInArrow is a transformation: see spark.task_counts

    def read(
        self,
        spark: SparkSession,
        cfg: InputConfig,
        run_date: dt.date,
        storage: StorageConfig | None = None,
    ) -> InputData:
        where = partition_path(cfg, run_date)
        require_scheme(spark, where, "input")
        files: tuple[Location, ...] = ()
        if is_local(where):
            # the one rule of data files (storage.files), checked first: Spark gets exactly the
            # files arrow_direct would read, and a non-Parquet one fails both engines alike
            if not partition_exists(cfg, run_date):
                raise missing_partition(cfg, run_date)
            found, rows = checked_data_files(location(where))  # rows: no Spark job
            files = tuple(found)
            paths = [str(f) for f in files]
            df = errors.reading(lambda: spark.read.parquet(*paths), where)
        else:
            df = errors.reading(lambda: read_partition(spark, cfg, run_date), where)
            rows = errors.reading(df.count, where)
        schema = to_arrow_schema(df.schema, timezone="UTC")
        return InputData(where, rows, schema, files, df)

    def duplicate_ids(self, data: InputData, entities: list[str]) -> tuple[int, list[Any]]:
        if data.files:  # ids only, via pyarrow: no Spark shuffle
            return duplicate_ids_arrow(data.files, entities)
        return errors.reading(lambda: duplicate_ids_spark(data.native, entities), data.where)

    def frame(self, spark: SparkSession, data: InputData) -> DataFrame:
        frame: DataFrame = data.native
        return frame

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
        selected = data.native.select(*plan.input_columns)
        if duplicates:  # validation.duplicate_ids: keep_last
            selected = keep_last_rows(selected, plan.entity_columns)
        # a transformation may count a task twice: exact counts (gates) are Spark's job here
        spec = observe.retry_tolerant() if observe is not None else None
        totals = task_totals(spark, spec, staging.counts) if spec is not None else None
        scored = score_frame(selected, plan, handles, spec, totals)
        ok = F.col(ERROR_CLASS).isNull()
        write_staged(scored.filter(ok).select(*plan.output_schema.names), staging.predictions)
        counts = totals.collect() if totals is not None else None
        if count_rows(staging.predictions) < data.rows - duplicates:
            # Rare path: some rows could not be scored. Score again (counting nothing: the
            # counts are in) to collect them rather than caching every run's output for a
            # quarantine that is almost always empty.
            bad = score_frame(selected, plan, handles).filter(~ok)
            bad = bad.select(*plan.quarantine_schema.names).coalesce(1)
            write_staged(bad, staging.quarantine)
        return counts


def score_frame(
    df: DataFrame,
    plan: ScoringPlan,
    handles: list[ModelHandle],
    observe: TaskSpec | None = None,
    totals: TaskTotals | None = None,
) -> DataFrame:
    """One row per input row in ``plan.tagged_schema``: predictions, and quarantined rows with
    ``error_class`` set. With ``observe``, each task adds its counts to ``totals`` (see
    ``spark.task_counts``)."""
    schema = plan.tagged_schema

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = BatchScorer(plan, [h.get() for h in handles])
        counts = observe.partial() if observe is not None else None
        for batch in batches:
            scored = scorer.score(batch)
            if counts is not None and observe is not None:
                counts.add(observe, batch, scored.predictions)
            yield from tagged(scored, schema)
        if counts is not None and totals is not None:
            totals.add(counts)

    return df.mapInArrow(score_batches, from_arrow_schema(schema))


def duplicate_ids_spark(df: DataFrame, entity_columns: list[str]) -> tuple[int, list[Any]]:
    """(rows beyond the first per entity id, a few example ids), from the id columns only."""
    counts = df.groupBy(*entity_columns).count().filter(F.col("count") > 1)
    extra = int(counts.agg(F.sum(F.col("count") - 1)).collect()[0][0] or 0)
    if not extra:
        return 0, []
    examples = [list(r)[:-1] for r in counts.limit(5).collect()]
    return extra, [e[0] if len(e) == 1 else e for e in examples]


def keep_last_rows(df: DataFrame, entity_columns: list[str]) -> DataFrame:
    """One row per entity id: the last one in read order (files, then rows within a file)."""
    from pyspark.sql.window import Window

    order = Window.partitionBy(*entity_columns).orderBy(F.col("_bs_seq").desc())
    return (
        df.withColumn("_bs_seq", F.monotonically_increasing_id())
        .withColumn("_bs_rank", F.row_number().over(order))
        .filter(F.col("_bs_rank") == 1)
        .drop("_bs_seq", "_bs_rank")
    )


def write_staged(df: DataFrame, staged: Location) -> None:
    """Spark writes ``df`` as the staged Parquet files (a failure is a ScoringError)."""
    errors.scoring(lambda: df.write.mode("overwrite").parquet(staged.spark_uri), staged)
