"""The ``arrow_direct`` engine: Spark schedules tasks, each task streams Parquet with pyarrow.

The DataFrame engine moves every row JVM -> Python -> JVM through Arrow IPC. This engine skips
the JVM data path: the driver plans *work units* (row groups of one or more files),
balanced by row count from the Parquet footers. Each Spark task then reads its unit with
pyarrow, scores it with the scoring core, and writes ``part-<unit>.parquet`` into the run's
staging directory under a temporary name it then renames, so a retried or speculative task
overwrites instead of duplicating.
Applicable when the input is plain Parquet on a filesystem the executors can read: a local
or shared path, or an object store / HDFS URI (``storage``: pyarrow's own clients, no Hadoop
jars). How a part file appears whole is the storage's business (``Location.atomic_file``): a
temporary name renamed on a local disk, the final key on object stores (a PUT appears whole or
not at all, and a retried task overwrites the same key).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession

from batch_serving.config import InputConfig, StorageConfig
from batch_serving.quality.checks import duplicate_ids_arrow
from batch_serving.scoring.batch import BatchScorer
from batch_serving.scoring.observers import TaskCounts, TaskSpec
from batch_serving.scoring.plan import ScoringPlan
from batch_serving.scoring.storage import StoredPredictions
from batch_serving.spark import errors
from batch_serving.spark.connectors import require_scheme
from batch_serving.spark.delivery import ModelHandle
from batch_serving.spark.engines.base import CoreModels, InputData, Staging
from batch_serving.spark.task_counts import task_totals
from batch_serving.storage import AnyPath, AtomicFile, Location, as_location, spark_uri
from batch_serving.storage.files import ParquetInput, inspect_input
from batch_serving.tables.inputs import missing_partition, partition_location, partition_path

BATCH_ROWS = 65_536


@dataclass(frozen=True)
class Piece:
    """Some row groups of one file."""

    path: str
    row_groups: tuple[int, ...]
    rows: int
    fs: pafs.FileSystem


@dataclass(frozen=True)
class WorkUnit:
    """What one task scores into one ``part-<index>`` file: row groups of one or more files."""

    index: int
    pieces: tuple[Piece, ...]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)


class ArrowDirectEngine(CoreModels):
    name = "arrow_direct"
    exact_counts = True

    def read(
        self,
        spark: SparkSession,
        cfg: InputConfig,
        run_date: dt.date,
        storage: StorageConfig | None = None,
    ) -> InputData:
        partition = partition_location(cfg, run_date, storage)
        if not partition.is_dir():
            raise missing_partition(cfg, run_date, storage)
        where = partition_path(cfg, run_date)
        found = inspect_input(partition)
        return InputData(where, found.rows, found.schema, found.files, found)

    def duplicate_ids(self, data: InputData, entities: list[str]) -> tuple[int, list[Any]]:
        return duplicate_ids_arrow(data.files, entities)

    def frame(self, spark: SparkSession, data: InputData) -> DataFrame:
        require_scheme(spark, data.where, "input expectations on")
        return spark.read.parquet(spark_uri(data.where))

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
        units = plan_units(data.native, max(spark.sparkContext.defaultParallelism * 2, 1))
        staging.predictions.mkdir(parents=True, exist_ok=True)
        staging.quarantine.mkdir(parents=True, exist_ok=True)
        dirs = (staging.predictions, staging.quarantine)
        spec = observe if observe is not None and not observe.empty else None
        totals = task_totals(spark, spec, staging.counts) if spec is not None else None

        def score_units(it: Iterable[WorkUnit]) -> None:
            scorer = BatchScorer(plan, [h.get() for h in handles])
            stored = StoredPredictions(plan)
            counter = _Counter(spec, spec.partial()) if spec is not None else None
            for unit in it:
                _score_unit(unit, scorer, stored, dirs, counter)
            if totals is not None and counter is not None:
                totals.add(counter.counts)

        rdd = spark.sparkContext.parallelize(units, len(units))
        errors.scoring(lambda: rdd.foreachPartition(score_units), staging.predictions)
        return totals.collect() if totals is not None else None


@dataclass
class _Counter:
    """One task's counts of the batches it scores."""

    spec: TaskSpec
    counts: TaskCounts


def plan_units(found: ParquetInput, target_units: int) -> list[WorkUnit]:
    """Split the partition into units of about ``rows / target_units`` rows along row groups;
    a unit may span files. Each task costs Spark tens of milliseconds of its own (scheduling,
    a Python worker round trip), so 80 small files make 4 units, not 80 tasks. An input
    without rows makes one empty unit: the run still writes a predictions file."""
    goal = max(1, -(-found.rows // max(1, target_units)))
    units: list[WorkUnit] = []
    pieces: list[Piece] = []
    rows = 0

    def close() -> None:
        nonlocal pieces, rows
        units.append(WorkUnit(len(units), tuple(pieces)))
        pieces, rows = [], 0

    for file, groups in zip(found.files, found.row_groups, strict=True):
        where: Location = as_location(file)
        path, fs = where.path, where.fs
        current: list[int] = []
        current_rows = 0
        for i, n in enumerate(groups):
            if not n:
                continue  # nothing to read (an empty file still has one empty row group)
            if rows + current_rows and rows + current_rows + n > goal:
                if current:
                    pieces.append(Piece(path, tuple(current), current_rows, fs))
                close()
                current, current_rows = [], 0
            current.append(i)
            current_rows += n
        if current:
            pieces.append(Piece(path, tuple(current), current_rows, fs))
            rows += current_rows
    if pieces or not units:
        close()
    return units


def _score_unit(
    unit: WorkUnit,
    scorer: BatchScorer,
    stored: StoredPredictions,
    dirs: tuple[Location, Location],
    counter: _Counter | None = None,
) -> None:
    """Stream one unit: predictions to ``part-<unit>``, unscorable rows to the quarantine dir."""
    plan = scorer.plan
    extra = [
        c for c in (counter.spec.extra_columns if counter else ()) if c not in plan.input_columns
    ]
    columns = [*plan.input_columns, *extra]
    with ExitStack() as files:
        # lineage as dictionary arrays without statistics; no Arrow schema in the file, so
        # readers see the plan's plain types (see scoring.storage)
        writer = files.enter_context(
            _AtomicWriter(
                dirs[0], unit.index, stored.schema, statistics=stored.statistics, arrow_schema=False
            )
        )
        bad: _AtomicWriter | None = None  # opened at the first unscorable row
        for piece in unit.pieces:
            source = pq.ParquetFile(piece.path, filesystem=piece.fs)
            for batch in source.iter_batches(BATCH_ROWS, list(piece.row_groups), columns):
                scored = scorer.score(batch.select(plan.input_columns) if extra else batch)
                writer.write(stored.encode(scored.predictions))
                if counter is not None:
                    counter.counts.add(counter.spec, batch, scored.predictions)
                if scored.quarantined is not None:
                    if bad is None:
                        bad = files.enter_context(
                            _AtomicWriter(dirs[1], unit.index, plan.quarantine_schema)
                        )
                    bad.write(scored.quarantined)


class _AtomicWriter:
    """``part-<index>.parquet`` streamed into the storage's atomic file (``AtomicFile``), so
    task retries and speculative copies replace each other instead of adding files."""

    def __init__(
        self,
        directory: AnyPath,
        index: int,
        schema: pa.Schema,
        *,
        statistics: list[str] | bool = True,
        arrow_schema: bool = True,
    ) -> None:
        self.file: AtomicFile = (as_location(directory) / f"part-{index:05d}.parquet").atomic_file()
        self.writer = pq.ParquetWriter(
            self.file.path,
            schema,
            compression="snappy",
            use_dictionary=dictionary_columns(schema),
            filesystem=self.file.fs,
            write_statistics=statistics,
            store_schema=arrow_schema,
        )

    def __enter__(self) -> _AtomicWriter:
        return self

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.writer.close()
        self.file.close(ok=exc_type is None)


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Leaf paths worth dictionary-encoding: strings (model names, run ids, labels, actions)
    and int32 (model versions). Scores and ids are all distinct, and trying a dictionary on
    them tripled the write time of a multi-model partition."""
    paths: list[str] = []

    def visit(prefix: str, dtype: pa.DataType) -> None:
        if pa.types.is_struct(dtype):
            for i in range(dtype.num_fields):
                visit(f"{prefix}.{dtype.field(i).name}", dtype.field(i).type)
        elif pa.types.is_map(dtype):
            visit(f"{prefix}.key_value.key", dtype.key_type)
            visit(f"{prefix}.key_value.value", dtype.item_type)
        elif (
            pa.types.is_string(dtype)
            or pa.types.is_large_string(dtype)
            or pa.types.is_int32(dtype)
            or pa.types.is_dictionary(dtype)
        ):
            paths.append(prefix)

    for field in schema:
        visit(field.name, field.type)
    return paths
