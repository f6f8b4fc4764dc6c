"""The embedded backend over a remote snapshot root (``snapshot_uri``, e.g. ``s3://``).

Each poll reads the remote ``CURRENT.json`` pointers; a snapshot that changed is downloaded
whole into ``snapshot_cache`` (``serving.remote``), checked against its sha256 and memory-mapped.
The publisher writes the pointer last, so the pointer never names a half-uploaded snapshot.
"""

from __future__ import annotations

from pathlib import Path

from batch_serving.api.backends import EmbeddedBackend
from batch_serving.config import ServeSettings
from batch_serving.serving.records import Pointer
from batch_serving.serving.remote import RemoteSnapshotCache
from batch_serving.storage import location


class RemoteEmbeddedBackend(EmbeddedBackend):
    """``EmbeddedBackend`` whose pointers are remote and whose snapshots are downloaded first."""

    def __init__(self, settings: ServeSettings) -> None:
        assert settings.snapshot_uri is not None
        root = location(settings.snapshot_uri, settings.storage())
        self._remote = RemoteSnapshotCache(root, settings.snapshot_cache)
        self._wanted = set(settings.models)
        self._verify = settings.verify_checksum

    def _models(self) -> list[str]:
        return self._remote.models()

    def _pointer(self, model: str) -> Pointer | None:
        return self._remote.read_pointer(model)

    def _snapshot_dir(self, model: str, snapshot_id: str) -> Path:
        return self._remote.local_snapshot(model, snapshot_id)
