"""Reading what is on disk without reading data: which files a partition holds, their footers.

One rule for data files everywhere (both engines, reconcile, publish): Spark's convention,
names starting with ``_`` or ``.`` at any depth are not data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from batch_serving.errors import InputNotFoundError, StorageError
from batch_serving.storage.location import AnyPath, Location, as_location


@dataclass(frozen=True)
class ParquetInput:
    """A partition's files, their common Arrow schema, total rows and rows per row group."""

    files: tuple[Location, ...]
    schema: pa.Schema
    rows: int
    row_groups: tuple[tuple[int, ...], ...]  # rows per row group, per file


def local_path(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def data_files(directory: AnyPath) -> list[Location]:
    """Data files below ``directory``, sorted; ``_``/``.``-prefixed names are skipped. One
    listing call (object stores list a prefix recursively in pages)."""
    directory = as_location(directory)
    base = directory.path.rstrip("/") + "/"
    return [
        directory.with_path(info.path)
        for info in sorted(directory.infos(), key=lambda i: i.path.split("/"))
        if not any(part.startswith(("_", ".")) for part in info.path[len(base) :].split("/"))
    ]


def parquet_file(path: AnyPath) -> pq.ParquetFile:
    """Footer access on any filesystem."""
    path = as_location(path)
    return pq.ParquetFile(path.path, filesystem=path.fs)


def count_rows(directory: AnyPath) -> int:
    """Row count from Parquet footers only (no data read)."""
    try:
        return sum(parquet_file(f).metadata.num_rows for f in data_files(directory))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read Parquet footers in {directory}: {exc}") from None


def read_footer(path: AnyPath) -> pq.FileMetaData:
    """One data file's footer; a file that is not Parquet (``README.txt``) or is corrupt is a
    StorageError naming it, worded the same for every engine."""
    try:
        return parquet_file(path).metadata
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read Parquet file {path}: {exc}") from None


def checked_data_files(partition: AnyPath) -> tuple[list[Location], int]:
    """``data_files`` after checking each one is Parquet (footers only), and their rows from
    the same footers: what an engine that lets Spark read the partition hands it, so both
    engines see the same files and fail alike."""
    files = data_files(partition)
    rows = sum(read_footer(f).num_rows for f in files)
    if not files:
        raise InputNotFoundError(f"input partition {partition} contains no data files")
    return files, rows


def inspect_input(partition: AnyPath) -> ParquetInput:
    """Read every footer once; a corrupt file or a schema that differs is named."""
    files = data_files(partition)
    schema: pa.Schema | None = None
    sizes: list[tuple[int, ...]] = []
    for f in files:
        meta = read_footer(f)
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
        raise InputNotFoundError(f"input partition {partition} contains no data files")
    rows = sum(sum(s) for s in sizes)
    return ParquetInput(tuple(files), schema, rows, tuple(sizes))


def read_table(path: AnyPath, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file on any filesystem."""
    path = as_location(path)
    return pq.read_table(path.path, columns=columns, filesystem=path.fs)


def read_tables(files: Sequence[AnyPath], columns: list[str] | None = None) -> pa.Table:
    """Several files of one schema as one table (pyarrow reads local lists in parallel)."""
    found = [as_location(f) for f in files]
    if found and all(f.is_local for f in found):
        return pq.read_table([f.path for f in found], columns=columns)
    return pa.concat_tables([read_table(f, columns) for f in found])
