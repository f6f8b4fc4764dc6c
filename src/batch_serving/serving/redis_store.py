"""Redis serving store: the scale path for several API replicas or domains beyond one host's RAM.

Key space of one model (``{m}`` = model, ``{s}`` = snapshot id)::

    bs:models                    set of published model names
    bs:{m}:current               snapshot id readers use (the pointer)
    bs:{m}:history               JSON list of previously current ids, newest first
    bs:{m}:snapshots             set of snapshot ids not yet scheduled to expire
    bs:{m}:snap:{s}:meta         JSON manifest (+ bucket count); written last = snapshot complete
    bs:{m}:snap:{s}:b:{n}        hash entity_id -> JSON values, n = crc32(id) % buckets
    bs:{m}:snap:{s}:mb:{n}       hash entity_id -> JSON member structs (multi-model jobs only)

A snapshot is written under its own key prefix, so readers holding the previous pointer keep
reading a complete previous version; the pointer and history change in one MULTI/EXEC. Old
versions beyond ``keep`` get a TTL (``expire_s``) rather than being deleted, so a replica that
has not yet polled the new pointer still finds every key of the version it is serving. Buckets
of ~100 entries stay in Redis's compact listpack encoding (a fraction of one key per id).
Member columns live in their own hashes, so a default lookup reads no more than it did before
members existed, and one with members reads both hashes in the same pipeline.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.errors import PublishError, ServingStoreError
from batch_serving.serving.features import FEATURES_DIR, features_name
from batch_serving.serving.format import KEY
from batch_serving.serving.pointer import next_history
from batch_serving.serving.readers import Snapshot, parse_int_id
from batch_serving.serving.records import SnapshotManifest
from batch_serving.serving.redis_encode import (
    crc32_buckets,
    hset_commands,
    json_objects,
    key_strings,
)

log = logging.getLogger(__name__)

BUCKET_SIZE = 100
WRITE_BATCH = 100_000


def bucket_of(key: str, buckets: int) -> int:
    return zlib.crc32(key.encode()) % buckets


def _k(model: str, *parts: str) -> str:
    return ":".join(("bs", model, *parts))


class RedisPublisher:
    """Synchronous writer used by ``publish`` (one process, batch pipelines)."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5, decode_responses=True)
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise ServingStoreError(f"Redis at {url} is unreachable: {exc}") from None

    def __enter__(self) -> RedisPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._redis.close()

    def snapshots(self, model: str) -> list[str]:
        """Snapshot ids of ``model`` not scheduled to expire, sorted."""
        return sorted(str(s) for s in self._redis.smembers(_k(model, "snapshots")))

    def publish(
        self,
        model: str,
        snap: Snapshot,
        keep: int,
        expire_s: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[str | None, bool]:
        """``progress(ids_written, ids_total)`` is called after each batch of buckets."""
        sid = snap.snapshot_id
        meta_key = _k(model, "snap", sid, "meta")
        if not self._redis.exists(meta_key) or not self._keep_forever(model, sid):
            self._write(model, snap, progress)
        else:
            log.info("redis: snapshot %s already written; reusing it", sid)
        current_raw = self._redis.get(_k(model, "current"))
        current = str(current_raw) if current_raw else None
        if current == sid:
            return current, False
        retained, dropped = next_history(current, self._history(model), sid, keep)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(_k(model, "current"), sid)
        pipe.set(_k(model, "history"), json.dumps(retained))
        pipe.sadd("bs:models", model)
        pipe.sadd(_k(model, "snapshots"), sid)
        pipe.execute()
        live = {str(m) for m in self._redis.smembers(_k(model, "snapshots"))}
        for old in (live - {sid, *retained}) | set(dropped):
            self._expire(model, old, expire_s)
        log.info("redis: current snapshot of %s: %s (was %s)", model, sid, current)
        return current, True

    def publish_features(self, model: str, snapshot_dir: Path, keep: int, expire_s: int) -> None:
        """Write the feature snapshot beside ``snapshot_dir``'s predictions (once), under the
        model's features name; versions beyond ``keep`` get the same grace TTL as replaced
        prediction snapshots. Nothing to do if the snapshot has no features."""
        directory = snapshot_dir / FEATURES_DIR
        if not directory.is_dir():
            return
        snap = Snapshot(directory, verify_checksum=True)
        name = features_name(model)
        if not self._redis.exists(_k(name, "snap", snap.snapshot_id, "meta")):
            self._write(name, snap)
        history = self._history(name)
        if history and history[0] == snap.snapshot_id:
            return
        retained, dropped = next_history(None, history, snap.snapshot_id, keep)
        self._redis.set(_k(name, "history"), json.dumps([snap.snapshot_id, *retained]))
        for old in dropped:
            self._expire(name, old, expire_s)

    def rollback(self, model: str) -> tuple[str, str, int]:
        current_raw = self._redis.get(_k(model, "current"))
        if current_raw is None:
            raise PublishError(f"nothing published for model {model!r} in Redis")
        history = [
            h for h in self._history(model) if self._redis.exists(_k(model, "snap", h, "meta"))
        ]
        if not history:
            raise PublishError(f"no previous snapshot of {model!r} in Redis to roll back to")
        target = history[0]
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(_k(model, "current"), target)
        pipe.set(_k(model, "history"), json.dumps(history[1:]))
        pipe.execute()
        meta = self._meta(model, target)
        return target, str(current_raw), meta.rows if meta is not None else 0

    def _history(self, model: str) -> list[str]:
        raw = self._redis.get(_k(model, "history"))
        return list(json.loads(raw)) if raw else []

    def _write(
        self, model: str, snap: Snapshot, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Every bucket hash of the snapshot, then its meta key (written last = complete).

        Rows are sorted by bucket once; each batch of ``WRITE_BATCH`` rows becomes one buffer of
        ``HSET`` commands built by ``redis_encode`` (no per-row Python), sent on a raw
        connection by a writer thread while the next batch is built."""
        sid = snap.snapshot_id
        rows = snap.table.num_rows
        buckets = max(1, math.ceil(rows / BUCKET_SIZE))
        hashes = {"b": snap.manifest.served, "mb": snap.manifest.member_columns}
        keys = key_strings(snap.table.column(KEY).combine_chunks())
        of_row = crc32_buckets(keys, buckets)
        order = np.argsort(of_row, kind="stable")
        with _PipelineWriter(self._redis, progress, rows) as writer:
            for start in range(0, rows, WRITE_BATCH):
                take = pa.array(order[start : start + WRITE_BATCH])
                chunk = snap.table.take(take)
                chunk_keys, chunk_buckets = (
                    keys.take(take),
                    of_row[order[start : start + WRITE_BATCH]],
                )
                payloads = []
                for prefix, columns in hashes.items():
                    if columns:
                        values = json_objects(chunk.select(columns))
                        name = _k(model, "snap", sid, prefix, "")
                        payloads.append(hset_commands(name, chunk_keys, values, chunk_buckets))
                writer.put(payloads, start + chunk.num_rows)
        meta = snap.manifest.with_buckets(buckets)
        self._redis.set(_k(model, "snap", sid, "meta"), meta.to_json(indent=None))
        log.info("redis: wrote snapshot %s (%d ids in %d buckets)", sid, rows, buckets)

    def _keep_forever(self, model: str, sid: str) -> bool:
        """A written snapshot made current again (a republish within the grace TTL of a
        replaced version): drop the TTL ``_expire`` gave its keys, or it would vanish while
        current. False if some of its keys are gone already (then it is written again)."""
        meta_key = _k(model, "snap", sid, "meta")
        if self._redis.ttl(meta_key) < 0:
            return True  # never scheduled to expire
        keys = self._bucket_keys(model, sid)
        if keys and self._redis.exists(*keys) != len(keys):
            return False
        pipe = self._redis.pipeline(transaction=False)
        for key in [*keys, meta_key]:
            pipe.persist(key)
        pipe.execute()
        log.info("redis: snapshot %s of %s is current again: no longer expires", sid, model)
        return True

    def _bucket_keys(self, model: str, sid: str) -> list[str]:
        """The hash keys of a written snapshot (its meta says how many buckets, and whether
        member structs have their own); none if its meta is gone."""
        meta = self._meta(model, sid)
        if meta is None:
            return []
        prefixes = ["b", "mb"] if meta.member_columns else ["b"]
        return [
            _k(model, "snap", sid, prefix, str(n))
            for n in range(meta.buckets or 0)
            for prefix in prefixes
        ]

    def _meta(self, model: str, sid: str) -> SnapshotManifest | None:
        raw = self._redis.get(_k(model, "snap", sid, "meta"))
        return SnapshotManifest.from_json(raw, f"Redis meta of {model} {sid}") if raw else None

    def _expire(self, model: str, sid: str, expire_s: int) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key in self._bucket_keys(model, sid):
            pipe.expire(key, expire_s)
        pipe.expire(_k(model, "snap", sid, "meta"), expire_s)
        pipe.srem(_k(model, "snapshots"), sid)
        pipe.execute()
        log.info("redis: snapshot %s of %s expires in %ds", sid, model, expire_s)


class _PipelineWriter:
    """Sends prepared RESP buffers on one raw connection from a thread and reads every reply,
    so Redis works on one batch while the caller builds the next; an error reply (or a lost
    connection) is raised in the caller at its next ``put`` or at the end."""

    def __init__(
        self, client: Any, progress: Callable[[int, int], None] | None, total: int
    ) -> None:
        self._client, self._progress, self._total = client, progress, total
        self._queue: queue.Queue[tuple[list[tuple[memoryview, int]], int] | None] = queue.Queue(2)
        self._error: BaseException | None = None
        self._conn = client.connection_pool.get_connection()
        self._thread = threading.Thread(target=self._run, name="redis-publish", daemon=True)

    def __enter__(self) -> _PipelineWriter:
        self._thread.start()
        return self

    def put(self, payloads: list[tuple[memoryview, int]], written: int) -> None:
        self._raise()
        self._queue.put((payloads, written))

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is None and exc_type is None:
            self._client.connection_pool.release(self._conn)
        else:
            self._conn.disconnect()  # replies may be left unread: never reuse it
            self._client.connection_pool.release(self._conn)
        if exc_type is None:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise ServingStoreError(f"writing the snapshot to Redis failed: {self._error}")

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the caller raises at its next put
            payloads, written = item
            try:
                for payload, commands in payloads:
                    self._conn.send_packed_command([payload], check_health=False)
                    for _ in range(commands):
                        self._conn.read_response()  # raises on an error reply
                if self._progress is not None:
                    self._progress(written, self._total)
            except Exception as exc:  # handed to the caller's thread
                self._error = exc


class RedisSnapshot:
    """The API's handle on one Redis snapshot: every lookup reads that snapshot's keys only."""

    def __init__(self, client: Any, model: str, manifest: SnapshotManifest) -> None:
        if manifest.buckets is None:
            raise ServingStoreError(f"Redis meta of {model} {manifest.snapshot_id} has no buckets")
        self._client = client
        self.model = model
        self.manifest = manifest
        self.snapshot_id = manifest.snapshot_id
        self.int_keys = manifest.key_type == "int64"
        self.member_columns = tuple(manifest.member_columns)
        self._buckets = manifest.buckets

    def parse_key(self, entity_id: str) -> int | str:
        return parse_int_id(entity_id) if self.int_keys else entity_id

    async def lookup(
        self, keys: Sequence[int | str], members: bool = False
    ) -> list[dict[str, Any] | None]:
        """As ``Snapshot.lookup``: served values, plus the member structs when ``members``."""
        names = [str(k) for k in keys]
        prefixes = ["b", "mb"] if members and self.member_columns else ["b"]
        if len(names) == 1 and len(prefixes) == 1:
            raw = [await self._client.hget(self._bucket_key("b", names[0]), names[0])]
        else:
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                for prefix in prefixes:
                    pipe.hget(self._bucket_key(prefix, name), name)
            raw = await pipe.execute()
        if len(prefixes) == 1:
            return [json.loads(r) if r is not None else None for r in raw]
        return [
            {**json.loads(values), **json.loads(structs or "{}")} if values is not None else None
            for values, structs in zip(raw[::2], raw[1::2], strict=True)
        ]

    def _bucket_key(self, prefix: str, name: str) -> str:
        bucket = str(bucket_of(name, self._buckets))
        return _k(self.model, "snap", self.snapshot_id, prefix, bucket)


class RedisBackend:
    """Polls the pointer keys; hands out one immutable snapshot handle per model."""

    def __init__(self, url: str, models: Sequence[str]) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(url, socket_connect_timeout=5, decode_responses=True)
        self._wanted = set(models)
        self.url = url

    async def load(self, current: dict[str, Any]) -> dict[str, Any]:
        """New handles for models whose pointer moved; unchanged ones are returned as they were."""
        import redis

        try:
            names = sorted(str(m) for m in await self._client.smembers("bs:models"))
            out = dict(current)
            for model in names:
                if self._wanted and model not in self._wanted:
                    continue
                sid_raw = await self._client.get(_k(model, "current"))
                if sid_raw is None:
                    continue
                sid = str(sid_raw)
                if model in out and out[model].snapshot_id == sid:
                    continue
                meta_raw = await self._client.get(_k(model, "snap", sid, "meta"))
                if meta_raw is None:
                    log.error("redis: pointer of %s names %s, which has no meta", model, sid)
                    continue
                meta = SnapshotManifest.from_json(meta_raw, f"Redis meta of {model} {sid}")
                out[model] = RedisSnapshot(self._client, model, meta)
            return out
        except redis.RedisError as exc:
            raise ServingStoreError(f"Redis at {self.url}: {exc}") from None

    async def close(self) -> None:
        await self._client.aclose()
