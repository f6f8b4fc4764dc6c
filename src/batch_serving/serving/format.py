"""Snapshot file format: one committed prediction partition as a sorted, uncompressed Arrow IPC
file plus a ``_snapshot.json`` manifest (row count, sha256, numpy buffer offsets).

A multi-model job's snapshot also holds one struct column per member after the served columns;
its manifest then names both sets (``served_columns``: answered by default, ``member_columns``:
answered on request). A single-model snapshot's manifest has neither key: every value column is
served, and its file and manifest are the same as before members existed.

Why this format: the API memory-maps the file, so loading costs no parsing and no copy (only a
checksum pass, done with plain reads that do not inflate the API's resident memory), and an id
is found by binary search on the sorted key column. Pages of the file come in on demand and are
shared with the OS page cache. Writing happens here; reading is in ``readers.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from batch_serving.errors import PublishError, ServingStoreError
from batch_serving.serving.records import SnapshotHeader, SnapshotManifest

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported inside the functions that need it: the API process serving a
# fixed-width snapshot reads it with numpy alone (see readers.MappedSnapshot), which keeps
# ~35 MiB of Arrow libraries out of every replica.

SNAPSHOT_FILE = "predictions.arrow"
SNAPSHOT_MANIFEST = "_snapshot.json"
FORMAT = "batch-serving/arrow-ipc-sorted/1"
KEY = "entity_id"
KEY_SEPARATOR = "|"
NUMPY_TYPES = {"int64": "<i8", "int32": "<i4", "double": "<f8", "float": "<f4"}


def build_table(
    source: pa.Table, entity_columns: Sequence[str], value_columns: Sequence[str]
) -> pa.Table:
    """Key column first (int64 for one integer id, else a string), values after, sorted by key."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(entity_columns) == 1 and pa.types.is_integer(
        source.schema.field(entity_columns[0]).type
    ):
        key = pc.cast(source.column(entity_columns[0]), pa.int64())
    else:
        parts = [pc.cast(source.column(c), pa.string()) for c in entity_columns]
        key = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, KEY_SEPARATOR)
    if key.null_count:
        raise PublishError(f"{key.null_count} rows have a null entity id {list(entity_columns)}")
    table = pa.table([key, *(source.column(c) for c in value_columns)], names=[KEY, *value_columns])
    table = table.take(pc.sort_indices(table, sort_keys=[(KEY, "ascending")])).combine_chunks()
    keys = table.column(KEY)
    if len(keys) > 1:
        same = pc.equal(keys.slice(1), keys.slice(0, len(keys) - 1))
        duplicates = pc.sum(same).as_py() or 0
        if duplicates:
            example = keys[int(pc.index(same, True).as_py())].as_py()
            raise PublishError(
                f"{duplicates} duplicate entity ids (e.g. {example!r}): a lookup needs one row per "
                "id; set validation.duplicate_ids to fail or keep_last for published jobs"
            )
    return table


def write_snapshot(
    table: pa.Table,
    directory: Path,
    header: SnapshotHeader | Mapping[str, Any],
    member_columns: Sequence[str] = (),
) -> SnapshotManifest:
    """Write the IPC file (one record batch, no compression) and its manifest with a checksum:
    ``header`` (which run of which model; a ``FeatureHeader`` for a feature snapshot) plus the
    file's layout.

    For fixed-width, null-free columns the manifest also records each data buffer's byte
    offset in the file, so a reader can map them with numpy without parsing Arrow.
    ``member_columns`` are the value columns answered only on request (multi-model jobs).
    """
    import pyarrow as pa
    import pyarrow.ipc as ipc

    value_columns = table.schema.names[1:]
    roles = _column_roles(value_columns, member_columns)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SNAPSHOT_FILE
    options = ipc.IpcWriteOptions(compression=None)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema, options=options) as w:
        w.write_table(table, max_chunksize=max(len(table), 1))
    given = header.to_dict() if isinstance(header, SnapshotHeader) else dict(header)
    full = {
        **given,
        "format": FORMAT,
        "rows": len(table),
        "key_type": "int64" if pa.types.is_integer(table.schema.field(KEY).type) else "string",
        "value_columns": value_columns,
        **roles,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "numpy_columns": _buffer_offsets(path),
    }
    manifest = SnapshotManifest.from_dict(full, f"snapshot manifest {directory}")
    (directory / SNAPSHOT_MANIFEST).write_text(manifest.to_json() + "\n")
    return manifest


def _column_roles(value_columns: list[str], member_columns: Sequence[str]) -> dict[str, list[str]]:
    """``served_columns`` and ``member_columns`` for a snapshot with members, else nothing."""
    if not member_columns:
        return {}
    missing = [c for c in member_columns if c not in value_columns]
    if missing:
        raise PublishError(f"missing member columns {missing}; present: {value_columns}")
    return {
        "served_columns": [c for c in value_columns if c not in member_columns],
        "member_columns": list(member_columns),
    }


def _buffer_offsets(path: Path) -> dict[str, dict[str, Any]] | None:
    """``{column: {offset, dtype}}`` if every column is a null-free fixed-width array."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.memory_map(str(path), "r") as source:
        base = source.read_buffer(1).address
        table = ipc.open_file(source).read_all()
        out: dict[str, dict[str, Any]] = {}
        for name in table.column_names:
            column = table.column(name)
            dtype = NUMPY_TYPES.get(str(column.type))
            if dtype is None or column.num_chunks != 1 or column.null_count:
                return None
            array = column.chunk(0)
            data = array.buffers()[1]
            offset = data.address - base + array.offset * np.dtype(dtype).itemsize
            out[name] = {"offset": int(offset), "dtype": dtype}
        return out


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_snapshot_manifest(directory: Path) -> SnapshotManifest:
    try:
        text = (directory / SNAPSHOT_MANIFEST).read_text()
    except OSError as exc:
        raise ServingStoreError(f"snapshot {directory} has no readable manifest: {exc}") from None
    manifest = SnapshotManifest.from_json(text, f"snapshot manifest {directory}")
    if manifest.format != FORMAT:
        raise ServingStoreError(f"snapshot {directory} has format {manifest.format!r}")
    return manifest
