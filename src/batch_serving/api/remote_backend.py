"""The embedded backend over a remote snapshot root (``snapshot_uri``, e.g. ``s3://``).

Each poll reads the remote ``CURRENT.json`` pointers; a snapshot that changed is downloaded
whole into ``snapshot_cache`` (``serving.remote``), checked against its sha256 and memory-mapped.
The publisher writes the pointer last, so the pointer never names a half-uploaded snapshot.
"""

from __future__ import annotations

import asyncio
from typing import Any

from batch_serving.api.backends import EmbeddedHandle
from batch_serving.config import ServeSettings
from batch_serving.serving.readers import open_snapshot
from batch_serving.serving.remote import RemoteSnapshotCache
from batch_serving.tables.storage import location


class RemoteEmbeddedBackend:
    def __init__(self, settings: ServeSettings) -> None:
        assert settings.snapshot_uri is not None
        root = location(settings.snapshot_uri, settings.storage())
        self._remote = RemoteSnapshotCache(root, settings.snapshot_cache)
        self._wanted = set(settings.models)
        self._verify = settings.verify_checksum

    async def load(self, current: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._load, current)

    def _load(self, current: dict[str, Any]) -> dict[str, Any]:
        out = dict(current)
        for model in self._remote.models():
            if self._wanted and model not in self._wanted:
                continue
            pointer = self._remote.read_pointer(model)
            if pointer is None or (model in out and out[model].snapshot_id == pointer["current"]):
                continue
            directory = self._remote.local_snapshot(model, pointer["current"])
            out[model] = EmbeddedHandle(open_snapshot(directory, verify_checksum=self._verify))
        return out

    async def close(self) -> None:
        return None
