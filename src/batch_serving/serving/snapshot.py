"""Serving snapshots: one committed prediction partition as a sorted, uncompressed Arrow IPC file.

Why this format: the API memory-maps the file, so loading costs no parsing and no copy (only a
checksum pass, done with plain reads that do not inflate the API's resident memory), and an id
is found by binary search on the sorted key column. Pages of the file come in on demand and are
shared with the OS page cache.

Layout under the serving root::

    <model>/snapshots/<snapshot_id>/predictions.arrow + _snapshot.json
    <model>/CURRENT.json     {"current": <snapshot_id>, "history": [older ids, newest first]}

``CURRENT.json`` is replaced with one atomic rename, so a reader sees the old pointer or the new
one, never a mix; snapshots themselves are immutable once renamed into place.

Readers: ``MappedSnapshot`` maps integer ids and fixed-width values straight out of the IPC
file with ``numpy.memmap`` at buffer offsets recorded at publish time (no pyarrow in the API
process); ``Snapshot`` reads any snapshot (string keys, maps) through pyarrow. Both give the
same answers (tested); ``open_snapshot`` picks one.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from batch_serving.config import MODEL_NAME
from batch_serving.errors import PublishError, ServingStoreError

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported inside the functions that need it: the API process serving a
# fixed-width snapshot reads it with numpy alone (see MappedSnapshot), which keeps ~35 MiB of
# Arrow libraries out of every replica.

SNAPSHOT_FILE = "predictions.arrow"
SNAPSHOT_MANIFEST = "_snapshot.json"
POINTER = "CURRENT.json"
FORMAT = "batch-serving/arrow-ipc-sorted/1"
KEY = "entity_id"
KEY_SEPARATOR = "|"
SCALAR_LOOKUP_MAX = 8
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT_ID = re.compile(r"-?[0-9]{1,19}")


@dataclass(frozen=True)
class ServingLayout:
    """Paths of the snapshot store; model names are validated before any path is built."""

    root: Path

    def model_dir(self, model: str) -> Path:
        if not MODEL_NAME.fullmatch(model):
            raise ServingStoreError(f"invalid model name {model!r}")
        return self.root / model

    def snapshot_dir(self, model: str, snapshot_id: str) -> Path:
        if not MODEL_NAME.fullmatch(snapshot_id):
            raise ServingStoreError(f"invalid snapshot id {snapshot_id!r}")
        return self.model_dir(model) / "snapshots" / snapshot_id

    def pointer_path(self, model: str) -> Path:
        return self.model_dir(model) / POINTER

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if MODEL_NAME.fullmatch(p.name) and (p / POINTER).is_file()
        )


def read_pointer(layout: ServingLayout, model: str) -> dict[str, Any] | None:
    path = layout.pointer_path(model)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ServingStoreError(f"unreadable snapshot pointer {path}: {exc}") from None
    return data


def write_pointer(layout: ServingLayout, model: str, current: str, history: list[str]) -> None:
    """Atomic switch: write a temp file, fsync, rename over ``CURRENT.json``."""
    path = layout.pointer_path(model)
    tmp = path.with_name(f".{POINTER}.{os.getpid()}.tmp")
    payload = json.dumps({"current": current, "history": history}, indent=2) + "\n"
    with open(tmp, "w") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def next_history(
    current: str | None, history: list[str], new: str, keep: int
) -> tuple[list[str], list[str]]:
    """History after ``new`` becomes current: (retained newest-first, dropped beyond ``keep``).

    One rule for every store: the previous current goes first, ``new`` never appears in it.
    """
    older = ([current] if current else []) + [h for h in history if h != new]
    return older[: keep - 1], older[keep - 1 :]


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


def write_snapshot(table: pa.Table, directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the IPC file (one record batch, no compression) and its manifest with a checksum.

    For fixed-width, null-free columns the manifest also records each data buffer's byte
    offset in the file, so a reader can map them with numpy without parsing Arrow.
    """
    import pyarrow as pa
    import pyarrow.ipc as ipc

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SNAPSHOT_FILE
    options = ipc.IpcWriteOptions(compression=None)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema, options=options) as w:
        w.write_table(table, max_chunksize=max(len(table), 1))
    full = {
        **manifest,
        "format": FORMAT,
        "rows": len(table),
        "key_type": "int64" if pa.types.is_integer(table.schema.field(KEY).type) else "string",
        "value_columns": table.schema.names[1:],
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "numpy_columns": _buffer_offsets(path),
    }
    (directory / SNAPSHOT_MANIFEST).write_text(json.dumps(full, indent=2, default=str) + "\n")
    return full


NUMPY_TYPES = {"int64": "<i8", "int32": "<i4", "double": "<f8", "float": "<f4"}


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


def read_snapshot_manifest(directory: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((directory / SNAPSHOT_MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ServingStoreError(f"snapshot {directory} has no readable manifest: {exc}") from None
    if data.get("format") != FORMAT:
        raise ServingStoreError(f"snapshot {directory} has format {data.get('format')!r}")
    return data


def _verified(directory: Path, verify_checksum: bool) -> tuple[dict[str, Any], Path]:
    """The snapshot's manifest and data file, the file checked against the manifest's sha256."""
    manifest = read_snapshot_manifest(directory)
    path = directory / SNAPSHOT_FILE
    if verify_checksum and file_sha256(path) != manifest["sha256"]:
        raise ServingStoreError(f"snapshot {path} does not match its sha256 checksum")
    return manifest, path


class Snapshot:
    """A memory-mapped snapshot: immutable, shared by every request that picked it up."""

    def __init__(self, directory: Path, verify_checksum: bool = True) -> None:
        import pyarrow as pa
        import pyarrow.ipc as ipc

        self.directory = directory
        self.manifest, path = _verified(directory, verify_checksum)
        try:
            self._source = pa.memory_map(str(path), "r")
            self.table = ipc.open_file(self._source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise ServingStoreError(f"cannot map snapshot {path}: {exc}") from None
        if self.table.num_rows != self.manifest["rows"]:
            raise ServingStoreError(
                f"snapshot {path} has {self.table.num_rows} rows, "
                f"manifest says {self.manifest['rows']}"
            )
        keys = self.table.column(KEY)
        self.int_keys = pa.types.is_integer(keys.type)
        chunk = keys.chunk(0) if keys.num_chunks else pa.array([], keys.type)
        self._int_keys: np.ndarray[Any, Any] | None = (
            chunk.to_numpy(zero_copy_only=True) if self.int_keys else None
        )
        self._str_keys = chunk if not self.int_keys else None
        self.values = self.table.drop_columns([KEY]).combine_chunks()
        self._columns: list[tuple[str, Any]] = [
            (name, self.values.column(name).chunk(0) if self.values.num_rows else None)
            for name in self.values.column_names
        ]

    @property
    def snapshot_id(self) -> str:
        return str(self.manifest["snapshot_id"])

    def parse_key(self, entity_id: str) -> int | str:
        """Request ids are strings; an integer-keyed snapshot needs an integer (ValueError)."""
        return parse_int_id(entity_id) if self.int_keys else entity_id

    def positions(self, keys: Sequence[int | str]) -> list[int | None]:
        if self._int_keys is not None:
            n = len(self._int_keys)
            if n == 0:
                return [None] * len(keys)
            wanted = np.asarray(keys, dtype=np.int64)
            pos = np.searchsorted(self._int_keys, wanted)
            hit = self._int_keys[np.minimum(pos, n - 1)] == wanted
            return [int(p) if h else None for p, h in zip(pos.tolist(), hit.tolist(), strict=True)]
        assert self._str_keys is not None
        array = self._str_keys
        out: list[int | None] = []
        for key in keys:
            i = bisect.bisect_left(_StrView(array), key)
            out.append(i if i < len(array) and array[i].as_py() == key else None)
        return out

    def lookup(self, keys: Sequence[int | str]) -> list[dict[str, Any] | None]:
        """Values for each key (``None`` where the id is not in the snapshot), JSON-ready."""
        found = self.positions(keys)
        hits = [p for p in found if p is not None]
        if len(hits) <= SCALAR_LOOKUP_MAX:  # a few ids: scalar access beats take()+to_pylist()
            return [
                {name: _json_value(col[p].as_py()) for name, col in self._columns}
                if p is not None
                else None
                for p in found
            ]
        import pyarrow as pa

        rows = iter(to_json_rows(self.values.take(pa.array(hits, pa.int64()))))
        return [next(rows) if p is not None else None for p in found]


class MappedSnapshot:
    """A fixed-width snapshot read through ``numpy.memmap`` at the offsets the manifest
    recorded: the same file and answers as ``Snapshot``, without pyarrow in the process."""

    def __init__(self, directory: Path, verify_checksum: bool = True) -> None:
        self.directory = directory
        self.manifest, path = _verified(directory, verify_checksum)
        layout = self.manifest.get("numpy_columns")
        if not layout:
            raise ServingStoreError(f"snapshot {directory} has no fixed-width column layout")
        rows = int(self.manifest["rows"])
        size = path.stat().st_size
        self._columns: dict[str, np.ndarray[Any, Any]] = {}
        for name, spec in layout.items():
            dtype = np.dtype(spec["dtype"])
            if spec["offset"] + rows * dtype.itemsize > size:
                raise ServingStoreError(f"snapshot {path} is shorter than its column layout")
            self._columns[name] = (
                np.memmap(path, dtype=dtype, mode="r", offset=spec["offset"], shape=(rows,))
                if rows
                else np.empty(0, dtype)
            )
        self._keys = self._columns.pop(KEY)
        self.int_keys = True
        self._values = list(self._columns.items())

    @property
    def snapshot_id(self) -> str:
        return str(self.manifest["snapshot_id"])

    def parse_key(self, entity_id: str) -> int | str:
        return parse_int_id(entity_id)

    def lookup(self, keys: Sequence[int | str]) -> list[dict[str, Any] | None]:
        n = len(self._keys)
        if n == 0:
            return [None] * len(keys)
        if len(keys) <= SCALAR_LOOKUP_MAX:  # numpy's per-call overhead dominates a few ids
            out: list[dict[str, Any] | None] = []
            for key in keys:
                i = int(self._keys.searchsorted(key))
                found = i < n and int(self._keys[i]) == key
                out.append(
                    {name: _json_value(col[i].item()) for name, col in self._values}
                    if found
                    else None
                )
            return out
        wanted = np.asarray(keys, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, wanted), n - 1)
        hit = (self._keys[pos] == wanted).tolist()
        columns = [(name, col[pos].tolist()) for name, col in self._values]
        return [
            {name: _json_value(values[i]) for name, values in columns} if hit[i] else None
            for i in range(len(keys))
        ]


def open_snapshot(directory: Path, verify_checksum: bool = True) -> Snapshot | MappedSnapshot:
    """numpy-mapped when the layout allows (integer ids, fixed-width values), else Arrow."""
    manifest = read_snapshot_manifest(directory)
    if manifest.get("numpy_columns") and manifest.get("key_type") == "int64":
        return MappedSnapshot(directory, verify_checksum)
    return Snapshot(directory, verify_checksum)


class _StrView:
    """Sequence view for ``bisect`` over an Arrow string array without converting it all."""

    def __init__(self, array: pa.Array) -> None:
        self._array = array

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, i: int) -> str:
        return str(self._array[i].as_py())


def to_json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Arrow rows as JSON-safe dicts: maps become objects, NaN/inf become null."""
    rows = table.to_pylist()
    return [{k: _json_value(v) for k, v in row.items()} for row in rows]


def parse_int_id(entity_id: str) -> int:
    """Request ids are strings; integer-keyed snapshots need an int64 (ValueError otherwise)."""
    if not INT_ID.fullmatch(entity_id):
        raise ValueError("not an integer")
    value = int(entity_id)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("out of int64 range")
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return {str(k): _json_value(v) for k, v in value}
    return value
