"""Snapshot stores: where ``publish`` puts a built snapshot and how it becomes current.

The write side of the API's read-side ``Backend`` (``api/backends.py``), one class per store:
``EmbeddedStore`` switches the serving root's ``CURRENT.json`` over the snapshot directories
and deletes those beyond ``keep``; ``RedisStore`` writes the snapshot's ids into Redis, moves
its pointer key and gives the versions beyond ``keep`` a grace TTL. Both publish from the
snapshot directory that ``publish`` built in a ``ServingLayout`` (the serving root, or its
local mirror for an object-store root). ``open_stores`` builds them once from the ``publish``
config, as one ``SnapshotStore`` that calls each configured store in turn (the file pointer
first); publish and rollback never ask which stores are configured.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from batch_serving.config import PublishConfig
from batch_serving.errors import PublishError
from batch_serving.serving.format import read_snapshot_manifest
from batch_serving.serving.pointer import ServingLayout, next_history, read_pointer, write_pointer

if TYPE_CHECKING:
    from batch_serving.serving.redis_store import RedisPublisher

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Switch:
    """What a store did: the snapshot current now, the one current before (for a publish that
    changed nothing, the same id), whether the pointer moved, and the current one's rows."""

    current: str
    previous: str | None
    changed: bool
    rows: int


class SnapshotStore(Protocol):
    """One place snapshots are served from, as ``publish`` and ``rollback`` see it."""

    # publishing loads the snapshot's rows (an object-store root then mirrors it whole)
    reads_snapshot_data: bool
    # its pointer is the serving root's CURRENT.json (uploaded to an object-store root)
    keeps_pointer_file: bool

    def publish(
        self,
        layout: ServingLayout,
        model: str,
        snapshot_id: str,
        progress: Progress | None = None,
    ) -> Switch:
        """Put the built snapshot ``layout.snapshot_dir(model, snapshot_id)`` in the store
        (once) and make it current; versions beyond ``keep`` are expired."""
        ...

    def rollback(self, layout: ServingLayout, model: str) -> Switch:
        """Make the snapshot current before the current one current again."""
        ...

    def kept(self, layout: ServingLayout, model: str) -> list[str]:
        """Snapshot ids the store still holds for ``model``, sorted."""
        ...

    def close(self) -> None: ...


class EmbeddedStore:
    """Snapshot directories under the serving root and its ``CURRENT.json`` pointers."""

    reads_snapshot_data = False
    keeps_pointer_file = True

    def __init__(self, cfg: PublishConfig) -> None:
        self._keep = cfg.keep

    def publish(
        self,
        layout: ServingLayout,
        model: str,
        snapshot_id: str,
        progress: Progress | None = None,
    ) -> Switch:
        rows = read_snapshot_manifest(layout.snapshot_dir(model, snapshot_id)).rows
        pointer = read_pointer(layout, model)
        current = pointer.current if pointer else None
        if current == snapshot_id:
            return Switch(snapshot_id, current, False, rows)
        history = pointer.history if pointer else []
        retained, _ = next_history(current, history, snapshot_id, self._keep)
        write_pointer(layout, model, snapshot_id, retained)
        self._prune(layout, model, {snapshot_id, *retained})
        log.info("current snapshot of %s: %s (was %s)", model, snapshot_id, current)
        return Switch(snapshot_id, current, True, rows)

    def rollback(self, layout: ServingLayout, model: str) -> Switch:
        pointer = read_pointer(layout, model)
        if pointer is None:
            raise PublishError(f"nothing published for model {model!r} under {layout.root}")
        history = [h for h in pointer.history if layout.snapshot_dir(model, h).is_dir()]
        if not history:
            raise PublishError(
                f"no previous snapshot of {model!r} to roll back to "
                f"(current {pointer.current}; kept snapshots: {self.kept(layout, model)})"
            )
        target, rest = history[0], history[1:]
        write_pointer(layout, model, target, rest)
        rows = read_snapshot_manifest(layout.snapshot_dir(model, target)).rows
        return Switch(target, pointer.current, True, rows)

    def kept(self, layout: ServingLayout, model: str) -> list[str]:
        parent = layout.model_dir(model) / "snapshots"
        return sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []

    def close(self) -> None:
        return None

    @staticmethod
    def _prune(layout: ServingLayout, model: str, retained: set[str]) -> None:
        """Delete snapshots outside the retained set (an API still mapping one keeps its
        pages)."""
        for directory in (layout.model_dir(model) / "snapshots").iterdir():
            if directory.name not in retained:
                shutil.rmtree(directory, ignore_errors=True)
                log.info("pruned old snapshot %s", directory.name)


class RedisStore:
    """The snapshot's ids in Redis (``serving/redis_store.py``), with the feature snapshot
    when ``publish.features`` is on. Connects on first use: a publish that decides to switch
    nothing never needs Redis."""

    reads_snapshot_data = True
    keeps_pointer_file = False

    def __init__(self, cfg: PublishConfig) -> None:
        self._cfg = cfg
        self._publisher: RedisPublisher | None = None

    def _redis(self) -> RedisPublisher:
        if self._publisher is None:
            from batch_serving.serving.redis_store import RedisPublisher

            self._publisher = RedisPublisher(self._cfg.redis_url)
        return self._publisher

    def publish(
        self,
        layout: ServingLayout,
        model: str,
        snapshot_id: str,
        progress: Progress | None = None,
    ) -> Switch:
        from batch_serving.serving.readers import Snapshot

        directory = layout.snapshot_dir(model, snapshot_id)
        snap = Snapshot(directory, verify_checksum=True)
        cfg, redis = self._cfg, self._redis()
        previous, changed = redis.publish(
            model, snap, keep=cfg.keep, expire_s=cfg.redis_expire_s, progress=progress
        )
        if cfg.features:
            redis.publish_features(model, directory, cfg.keep, cfg.redis_expire_s)
        return Switch(snapshot_id, previous, changed, snap.manifest.rows)

    def rollback(self, layout: ServingLayout, model: str) -> Switch:
        target, previous, rows = self._redis().rollback(model)
        return Switch(target, previous, True, rows)

    def kept(self, layout: ServingLayout, model: str) -> list[str]:
        return self._redis().snapshots(model)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None


class AllStores:
    """Every configured store, called in turn: a failing store stops the ones after it.
    The first store's answer is the publish's (its previous id if it had one, else the next
    store's), and the pointer moved if it moved in any store."""

    def __init__(self, stores: Sequence[SnapshotStore]) -> None:
        if not stores:
            raise PublishError("publish.backends names no snapshot store")
        self._stores = tuple(stores)
        self.reads_snapshot_data = any(s.reads_snapshot_data for s in stores)
        self.keeps_pointer_file = any(s.keeps_pointer_file for s in stores)

    def publish(
        self,
        layout: ServingLayout,
        model: str,
        snapshot_id: str,
        progress: Progress | None = None,
    ) -> Switch:
        done = [s.publish(layout, model, snapshot_id, progress) for s in self._stores]
        previous = next((d.previous for d in done if d.previous), None)
        return Switch(snapshot_id, previous, any(d.changed for d in done), done[0].rows)

    def rollback(self, layout: ServingLayout, model: str) -> Switch:
        first, *rest = self._stores
        switch = first.rollback(layout, model)
        for store in rest:  # every store goes back; the first one's answer is reported
            store.rollback(layout, model)
        return switch

    def kept(self, layout: ServingLayout, model: str) -> list[str]:
        return sorted({k for s in self._stores for k in s.kept(layout, model)})

    def close(self) -> None:
        for store in self._stores:
            store.close()


# publish.backends name -> store class, in the order a publish switches them
STORES: dict[str, Callable[[PublishConfig], SnapshotStore]] = {
    "embedded": EmbeddedStore,
    "redis": RedisStore,
}


@contextmanager
def open_stores(cfg: PublishConfig) -> Iterator[SnapshotStore]:
    """The stores ``cfg.backends`` names, built once and closed at the end."""
    stores = AllStores([make(cfg) for name, make in STORES.items() if name in cfg.backends])
    try:
        yield stores
    finally:
        stores.close()
