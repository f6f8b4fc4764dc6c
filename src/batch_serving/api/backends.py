"""Where snapshots come from: the embedded file store (memory-mapped) or Redis.

A backend turns "what is current now" into one immutable ``Handle`` per model; the API only
ever asks a handle to parse and look up ids, so both stores answer through the same routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from batch_serving.config import ServeSettings
from batch_serving.serving.pointer import ServingLayout, read_pointer
from batch_serving.serving.readers import MappedSnapshot, Snapshot, open_snapshot
from batch_serving.serving.records import Pointer, SnapshotManifest


class Handle(Protocol):
    """One loaded snapshot of one model."""

    snapshot_id: str
    manifest: SnapshotManifest
    member_columns: tuple[str, ...]

    def parse_key(self, entity_id: str) -> int | str: ...

    async def lookup(
        self, keys: Sequence[int | str], members: bool = False
    ) -> list[dict[str, Any] | None]: ...


class Backend(Protocol):
    async def load(self, current: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class EmbeddedHandle:
    """A memory-mapped snapshot file (see ``serving/readers.py``)."""

    def __init__(self, snap: Snapshot | MappedSnapshot) -> None:
        self._snap = snap
        self.snapshot_id = snap.snapshot_id
        self.manifest = snap.manifest
        self.member_columns = snap.member_columns

    def parse_key(self, entity_id: str) -> int | str:
        return self._snap.parse_key(entity_id)

    async def lookup(
        self, keys: Sequence[int | str], members: bool = False
    ) -> list[dict[str, Any] | None]:
        return self._snap.lookup(keys, members)


class EmbeddedBackend:
    """Reads ``CURRENT.json`` pointers under the snapshot root; maps snapshots that changed."""

    def __init__(self, settings: ServeSettings) -> None:
        self._layout = ServingLayout(settings.snapshot_root)
        self._wanted = set(settings.models)
        self._verify = settings.verify_checksum

    async def load(self, current: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._load, current)

    def _load(self, current: dict[str, Any]) -> dict[str, Any]:
        out = dict(current)
        for model in self._models():
            if self._wanted and model not in self._wanted:
                continue
            pointer = self._pointer(model)
            if pointer is None or (model in out and out[model].snapshot_id == pointer.current):
                continue
            directory = self._snapshot_dir(model, pointer.current)
            out[model] = EmbeddedHandle(open_snapshot(directory, verify_checksum=self._verify))
        return out

    # Where the pointers and snapshots live: a local root here, a remote one in a subclass.
    def _models(self) -> list[str]:
        return self._layout.models()

    def _pointer(self, model: str) -> Pointer | None:
        return read_pointer(self._layout, model)

    def _snapshot_dir(self, model: str, snapshot_id: str) -> Path:
        return self._layout.snapshot_dir(model, snapshot_id)

    async def close(self) -> None:
        return None


def make_backend(settings: ServeSettings) -> Backend:
    if settings.backend == "embedded" and settings.snapshot_uri:
        from batch_serving.api.remote_backend import RemoteEmbeddedBackend

        return RemoteEmbeddedBackend(settings)
    if settings.backend == "redis":
        from batch_serving.serving.redis_store import RedisBackend

        return RedisBackend(settings.redis_url, settings.models)
    return EmbeddedBackend(settings)
