"""The ``arrow_direct`` engine: Spark schedules tasks, each task streams Parquet with pyarrow.

The DataFrame engine moves every row JVM -> Python -> JVM through Arrow IPC. This engine skips
the JVM data path: the driver plans *work units* (a file, or a range of its row groups),
balanced by row count from the Parquet footers. Each Spark task then reads its unit with
pyarrow, scores it with the worker-cached model, and writes ``part-<unit>.parquet`` into the
run's staging directory. It writes a temporary name and renames it, so a retried or
speculative task overwrites instead of duplicating. The driver commits exactly as the
DataFrame engine does.
Applicable when the input is plain Parquet on a filesystem the executors can read.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_type

from batch_serving.errors import InputNotFoundError, StorageError
from batch_serving.models.adapters import ScoringSpec
from batch_serving.models.registry import ModelRef
from batch_serving.quality.checks import cast_error_prefix
from batch_serving.scoring.isolation import CAST_ERROR_COLUMN, ERROR_FIELDS, score_and_split
from batch_serving.spark.delivery import ModelHandle

BATCH_ROWS = 65_536


@dataclass(frozen=True)
class WorkUnit:
    index: int
    path: str
    row_groups: tuple[int, ...]
    rows: int


@dataclass(frozen=True)
class ArrowInput:
    """The partition's files, their common schema and total row count (footers only)."""

    files: tuple[Path, ...]
    schema: pa.Schema
    rows: int
    row_groups: tuple[tuple[int, ...], ...]  # rows per row group, per file


def is_local_path(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def data_files(partition_dir: str) -> tuple[Path, ...]:
    """The partition's data files: everything but ``_``/``.``-prefixed names, as Spark reads."""
    root = Path(partition_dir.removeprefix("file://"))
    return tuple(
        sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))
    )


def inspect_input(partition_dir: str) -> ArrowInput:
    """Read every footer once; a corrupt file or a schema that differs is named."""
    files = data_files(partition_dir)
    schema: pa.Schema | None = None
    sizes: list[tuple[int, ...]] = []
    for f in files:
        try:
            meta = pq.ParquetFile(f).metadata
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot read Parquet file {f}: {exc}") from None
        file_schema = meta.schema.to_arrow_schema()
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema):
            raise StorageError(
                f"Parquet file {f} has schema {file_schema.names} / types differing from "
                f"{files[0].name}; the arrow_direct engine needs one schema per partition"
            )
        sizes.append(tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups)))
    if schema is None:
        raise InputNotFoundError(f"input partition {partition_dir} contains no data files")
    rows = sum(sum(s) for s in sizes)
    return ArrowInput(tuple(files), schema, rows, tuple(sizes))


def spark_schema(arrow_input: ArrowInput) -> T.StructType:
    return from_arrow_schema(arrow_input.schema)


def plan_units(arrow_input: ArrowInput, target_units: int) -> list[WorkUnit]:
    """Split files into units of about ``rows / target_units`` rows, along row groups."""
    goal = max(1, -(-arrow_input.rows // max(1, target_units)))
    units: list[WorkUnit] = []
    for path, groups in zip(arrow_input.files, arrow_input.row_groups, strict=True):
        current: list[int] = []
        current_rows = 0
        for i, n in enumerate(groups):
            if current and current_rows + n > goal:
                units.append(WorkUnit(len(units), str(path), tuple(current), current_rows))
                current, current_rows = [], 0
            current.append(i)
            current_rows += n
        if current or not groups:
            units.append(WorkUnit(len(units), str(path), tuple(current), current_rows))
    return units


def run(
    spark: SparkSession,
    arrow_input: ArrowInput,
    entity_columns: Sequence[str],
    casts: dict[str, T.DataType | None],
    spec: ScoringSpec,
    handle: ModelHandle,
    ref: ModelRef,
    scored_at: dt.datetime,
    staged: Path,
    staged_quarantine: Path,
    run_id: str,
) -> tuple[int, int]:
    """Score every unit as a Spark task; returns (rows scored, rows quarantined)."""
    target = max(spark.sparkContext.defaultParallelism * 2, 1)
    units = plan_units(arrow_input, target)
    staged.mkdir(parents=True, exist_ok=True)
    staged_quarantine.mkdir(parents=True, exist_ok=True)
    entities = list(entity_columns)
    arrow_casts = {
        n: (to_arrow_type(t), t.simpleString()) for n, t in casts.items() if t is not None
    }
    columns = list(dict.fromkeys([*entities, *spec.features]))
    schemas = (
        output_schema(arrow_input.schema, entities, spec),
        quarantine_schema(arrow_input.schema, entities),
    )
    lineage = (ref.name, ref.version, ref.run_id, scored_at, run_id)
    dirs = (str(staged), str(staged_quarantine))

    def score_units(it: Iterable[WorkUnit]) -> Iterable[tuple[int, int]]:
        model = handle.get()
        for unit in it:
            yield _score_unit(
                unit, model, spec, columns, entities, arrow_casts, schemas, lineage, dirs
            )

    rdd = spark.sparkContext.parallelize(units, len(units))
    counts: list[tuple[int, int]] = rdd.mapPartitions(score_units).collect()
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def output_schema(input_schema: pa.Schema, entities: Sequence[str], spec: ScoringSpec) -> pa.Schema:
    """Same columns and types as the DataFrame engine writes."""
    fields = [input_schema.field(c) for c in entities]
    fields += spec.output_fields()
    fields += [
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.int32(), nullable=False),
        pa.field("model_run_id", pa.string()),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
    return pa.schema(fields)


def quarantine_schema(input_schema: pa.Schema, entities: Sequence[str]) -> pa.Schema:
    """Same columns and types as the DataFrame engine's quarantine table."""
    fields = [input_schema.field(c) for c in entities]
    fields += ERROR_FIELDS
    fields += [
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.int32(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
    return pa.schema(fields)


def _score_unit(
    unit: WorkUnit,
    model: object,
    spec: ScoringSpec,
    columns: list[str],
    entities: list[str],
    casts: dict[str, tuple[pa.DataType, str]],
    schemas: tuple[pa.Schema, pa.Schema],
    lineage: tuple[str, int, str | None, dt.datetime, str],
    dirs: tuple[str, str],
) -> tuple[int, int]:
    """Stream one unit: predictions to ``part-<unit>``, unscorable rows to the quarantine dir."""
    name, version, model_run_id, scored_at, run_id = lineage
    constants = _lineage_arrays((name, version, model_run_id, scored_at), BATCH_ROWS)
    q_constants = _lineage_arrays((name, version, run_id, scored_at), BATCH_ROWS)
    scored = bad = 0
    quarantined: list[pa.RecordBatch] = []
    source = pq.ParquetFile(unit.path)
    with _AtomicWriter(dirs[0], unit.index, schemas[0]) as writer:
        batches = (
            source.iter_batches(BATCH_ROWS, row_groups=list(unit.row_groups), columns=columns)
            if unit.row_groups
            else iter(())
        )
        for batch in batches:
            split = score_and_split(spec, model, _cast(batch, casts), entities)
            n = len(split.scored[0])
            arrays = split.scored + [c.slice(0, n) for c in constants]
            writer.write(pa.RecordBatch.from_arrays(arrays, schema=schemas[0]))
            scored += n
            m = len(split.quarantined[0])
            if m:
                arrays = split.quarantined + [c.slice(0, m) for c in q_constants]
                quarantined.append(pa.RecordBatch.from_arrays(arrays, schema=schemas[1]))
                bad += m
    if quarantined:
        with _AtomicWriter(dirs[1], unit.index, schemas[1]) as writer:
            for qbatch in quarantined:
                writer.write(qbatch)
    return scored, bad


class _AtomicWriter:
    """``part-<index>.parquet`` written under a temporary name and renamed on success, so task
    retries and speculative copies replace each other instead of adding files."""

    def __init__(self, directory: str, index: int, schema: pa.Schema) -> None:
        self.final = os.path.join(directory, f"part-{index:05d}.parquet")
        self.tmp = os.path.join(directory, f".part-{index:05d}.{uuid.uuid4().hex}.tmp")
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="snappy")

    def __enter__(self) -> _AtomicWriter:
        return self

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.writer.close()
        if exc_type is None:
            os.replace(self.tmp, self.final)
        else:
            os.unlink(self.tmp)


def _lineage_arrays(lineage: tuple[str, int, str | None, dt.datetime], size: int) -> list[pa.Array]:
    """The run-constant columns, built once per task at full batch size and sliced per batch
    (building them per batch from Python lists cost more than scoring a LogisticRegression)."""
    name, version, run_id, scored_at = lineage
    zeros = pa.array(np.zeros(size, dtype=np.int32))
    micros = int(scored_at.timestamp() * 1_000_000)
    return [
        pa.DictionaryArray.from_arrays(zeros, pa.array([name])).cast(pa.string()),
        pa.array(np.full(size, version, dtype=np.int32)),
        pa.DictionaryArray.from_arrays(zeros, pa.array([run_id], pa.string())).cast(pa.string()),
        pa.array(np.full(size, micros, dtype=np.int64)).view(pa.timestamp("us", tz="UTC")),
    ]


def _cast(batch: pa.RecordBatch, casts: dict[str, tuple[pa.DataType, str]]) -> pa.RecordBatch:
    """Cast features like the DataFrame engine does; strings that do not parse flag their row
    in ``_cast_error`` (same message as the DataFrame engine) instead of failing the batch."""
    if not casts:
        return batch
    arrays, names, errors = [], [], None
    for i, field in enumerate(batch.schema):
        column = batch.column(i)
        if field.name in casts:
            target, label = casts[field.name]
            column, flagged = _cast_column(field.name, column, target, label)
            if flagged is not None:
                errors = flagged if errors is None else pc.coalesce(errors, flagged)
        arrays.append(column)
        names.append(field.name)
    if errors is not None:
        arrays.append(errors)
        names.append(CAST_ERROR_COLUMN)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _cast_column(
    name: str, column: pa.Array, target: pa.DataType, label: str
) -> tuple[pa.Array, pa.Array | None]:
    try:
        return pc.cast(column, target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            raise
    parse = int if pa.types.is_integer(target) else float
    values: list[object] = []
    messages: list[str | None] = []
    for raw in column.to_pylist():
        try:
            values.append(None if raw is None else parse(raw.strip()))
            messages.append(None)
        except ValueError:
            values.append(None)
            messages.append(f"{cast_error_prefix(name)}{raw}' to {label}")
    return pa.array(values, target), pa.array(messages, pa.string())
