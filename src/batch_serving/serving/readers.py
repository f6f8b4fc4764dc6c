"""Snapshot readers: answer lookups from a published snapshot file without copying it.

``MappedSnapshot`` maps integer ids and fixed-width values straight out of the IPC file with
``numpy.memmap`` at buffer offsets recorded at publish time (no pyarrow in the API process);
``Snapshot`` reads any snapshot (string keys, maps, member structs) through pyarrow. Both give
the same answers (tested); ``open_snapshot`` picks one.

A lookup answers one dict per id: the served columns, plus one entry per member column (a
JSON object, or None where that member failed on the row) when ``members`` is asked for.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from batch_serving.errors import ServingStoreError
from batch_serving.serving.format import KEY, SNAPSHOT_FILE, file_sha256, read_snapshot_manifest
from batch_serving.serving.records import SnapshotManifest

if TYPE_CHECKING:
    import pyarrow as pa

SCALAR_LOOKUP_MAX = 8
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT_ID = re.compile(r"-?[0-9]{1,19}")


def _verified(directory: Path, verify_checksum: bool) -> tuple[SnapshotManifest, Path]:
    """The snapshot's manifest and data file, the file checked against the manifest's sha256."""
    manifest = read_snapshot_manifest(directory)
    path = directory / SNAPSHOT_FILE
    if verify_checksum and file_sha256(path) != manifest.sha256:
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
        if self.table.num_rows != self.manifest.rows:
            raise ServingStoreError(
                f"snapshot {path} has {self.table.num_rows} rows, "
                f"manifest says {self.manifest.rows}"
            )
        keys = self.table.column(KEY)
        self.int_keys = pa.types.is_integer(keys.type)
        chunk = keys.chunk(0) if keys.num_chunks else pa.array([], keys.type)
        self._int_keys: np.ndarray[Any, Any] | None = (
            chunk.to_numpy(zero_copy_only=True) if self.int_keys else None
        )
        self._str_keys = chunk if not self.int_keys else None
        self.member_columns = tuple(self.manifest.member_columns)
        self.values = self.table.drop_columns([KEY]).combine_chunks()
        self.served = self.values.select(self.manifest.served)
        self._columns: dict[bool, list[tuple[str, Any]]] = {
            members: [
                (name, table.column(name).chunk(0) if table.num_rows else None)
                for name in table.column_names
            ]
            for members, table in ((False, self.served), (True, self.values))
        }

    @property
    def snapshot_id(self) -> str:
        return self.manifest.snapshot_id

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

    def lookup(
        self, keys: Sequence[int | str], members: bool = False
    ) -> list[dict[str, Any] | None]:
        """Values for each key (``None`` where the id is not in the snapshot), JSON-ready:
        the served columns, and the member columns too when ``members``."""
        found = self.positions(keys)
        hits = [p for p in found if p is not None]
        if len(hits) <= SCALAR_LOOKUP_MAX:  # a few ids: scalar access beats take()+to_pylist()
            columns = self._columns[members]
            return [
                {name: _json_value(col[p].as_py()) for name, col in columns}
                if p is not None
                else None
                for p in found
            ]
        import pyarrow as pa

        table = self.values if members else self.served
        rows = iter(to_json_rows(table.take(pa.array(hits, pa.int64()))))
        return [next(rows) if p is not None else None for p in found]


class MappedSnapshot:
    """A fixed-width snapshot read through ``numpy.memmap`` at the offsets the manifest
    recorded: the same file and answers as ``Snapshot``, without pyarrow in the process."""

    def __init__(self, directory: Path, verify_checksum: bool = True) -> None:
        self.directory = directory
        self.manifest, path = _verified(directory, verify_checksum)
        layout = self.manifest.numpy_columns
        if not layout:
            raise ServingStoreError(f"snapshot {directory} has no fixed-width column layout")
        rows = self.manifest.rows
        size = path.stat().st_size
        self._columns: dict[str, np.ndarray[Any, Any]] = {}
        for name, spec in layout.items():
            dtype = np.dtype(spec.dtype)
            if spec.offset + rows * dtype.itemsize > size:
                raise ServingStoreError(f"snapshot {path} is shorter than its column layout")
            self._columns[name] = (
                np.memmap(path, dtype=dtype, mode="r", offset=spec.offset, shape=(rows,))
                if rows
                else np.empty(0, dtype)
            )
        self._keys = self._columns.pop(KEY)
        self.int_keys = True
        self.member_columns: tuple[str, ...] = ()  # member structs are never fixed-width
        self._values = list(self._columns.items())

    @property
    def snapshot_id(self) -> str:
        return self.manifest.snapshot_id

    def parse_key(self, entity_id: str) -> int | str:
        return parse_int_id(entity_id)

    def lookup(
        self, keys: Sequence[int | str], members: bool = False
    ) -> list[dict[str, Any] | None]:
        """As ``Snapshot.lookup``; there are no member columns to add."""
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
    """numpy-mapped when the layout allows (integer ids, fixed-width values, no members),
    else Arrow."""
    manifest = read_snapshot_manifest(directory)
    mappable = manifest.numpy_columns and not manifest.member_columns
    if mappable and manifest.key_type == "int64":
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
    """Arrow rows as JSON-safe dicts: maps and structs become objects, NaN/inf become null."""
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
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):  # a struct: a member's outputs and lineage
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], tuple):  # a map
        return {str(k): _json_value(v) for k, v in value}
    return value
