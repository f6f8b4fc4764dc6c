"""Where the live fallback gets an id's features: the seam between ``live_fallback.py`` and
the stores. One class per source, each answering ``rows(keys)`` with a ``LiveRow`` per id:

- ``SnapshotFeatures``: the row of the feature snapshot published with the predictions (a
  file beside them, or its Redis keys); its answers are cached like any live answer.
- ``WindowedFeatures``: that row with the entity's windowed features (the job's ``windows:``)
  recomputed from the online store as of the request, so a live answer scores the entity as
  it is now; its answers carry those ``aggregates`` and say how fresh they are
  (``features_as_of``); they are never cached.

As of the request, not as of the newest stored event: a card whose burst ended two hours ago
must not be scored as if it were still bursting; the window holds what an event arriving now
would see (the same rule as the stream and ``offline.training_set``). The clock is clamped to
just after the newest stored event, so an event time ahead of the API's clock is still in.
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from batch_serving.api.errors import ApiError
from batch_serving.config import JobConfig
from batch_serving.features.online import StoredHistory, entity_key, online_prefix
from batch_serving.features.spec import WindowSpec
from batch_serving.serving.records import FeatureManifest

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class LiveRow:
    """An id's features for the scoring core, and what its answer adds (``features_as_of``)."""

    features: dict[str, Any]
    answer: dict[str, Any] = field(default_factory=dict)


class LiveFeatures(Protocol):
    """An id's live features; ``manifest`` is the feature snapshot's (what to load and plan)."""

    manifest: Any
    cacheable: bool

    async def rows(self, keys: Sequence[int | str]) -> list[LiveRow | None]: ...


class SnapshotFeatures:
    """The feature snapshot's rows (a file snapshot looks up in place, Redis awaits)."""

    cacheable = True

    def __init__(self, snapshot: Any) -> None:
        self.snapshot = snapshot
        self.manifest = snapshot.manifest

    async def rows(self, keys: Sequence[int | str]) -> list[LiveRow | None]:
        found = self.snapshot.lookup(list(keys))
        if inspect.isawaitable(found):
            found = await found
        return [None if row is None else LiveRow(row) for row in found]


@dataclass(frozen=True)
class OnlineWindows:
    """One job's online store of windowed features: its URL, key prefix and spec."""

    model: str
    url: str
    prefix: str
    spec: WindowSpec

    @classmethod
    def of(cls, cfg: JobConfig) -> OnlineWindows:
        """From a job file with ``windows.redis_url`` (a ValueError naming the file's job
        otherwise: the setting would silently do nothing)."""
        windows = cfg.windows
        if windows is None or windows.redis_url is None:
            raise ValueError(
                f"live_window_jobs: job {cfg.job!r} has no windows.redis_url (an online store "
                "of windowed features is what live answers would read)"
            )
        spec = WindowSpec.from_config(windows)
        return cls(cfg.model.name, windows.redis_url, online_prefix(cfg), spec)

    def where(self) -> str:
        """The store as an error names it: host, port and database, never a password."""
        parts = urlsplit(self.url)
        where = f"{parts.hostname}:{parts.port or 6379}{parts.path}"
        return f"online feature store (Redis at {where}, keys {self.prefix}:*)"


class WindowedFeatures:
    """``base``'s row of an id with its windowed features from ``store`` as of now."""

    cacheable = False

    def __init__(
        self,
        base: SnapshotFeatures,
        store: OnlineWindows,
        client: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base, self.store, self.client, self.clock = base, store, client, clock
        self.manifest = base.manifest
        entity_columns = FeatureManifest.of(base.manifest).entity_columns
        self._by_key = list(entity_columns or ()) == [store.spec.entity]

    async def rows(self, keys: Sequence[int | str]) -> list[LiveRow | None]:
        found = await self.base.rows(keys)
        present = [(k, r) for k, r in zip(keys, found, strict=True) if r is not None]
        entities = [self._entity(k, r.features) for k, r in present]
        stored = iter(await self._histories(entities))
        now_us = int(self.clock() * 1_000_000)
        fresh = iter(
            [
                self._merged(r, e, next(stored), now_us)
                for (_, r), e in zip(present, entities, strict=True)
            ]
        )
        return [None if row is None else next(fresh) for row in found]

    def _entity(self, key: int | str, row: dict[str, Any]) -> Any:
        """The windows' entity of an id: the id itself when the snapshot is keyed by it, else
        the row's column of that name."""
        entity = self.store.spec.entity
        if self._by_key:
            return key
        if entity not in row:
            raise ApiError(
                503,
                "live_unavailable",
                f"model {self.store.model!r}: its feature snapshot is keyed by "
                f"{FeatureManifest.of(self.manifest).entity_columns} and has no column "
                f"{entity!r} (windows.entity), so no windowed features can be found for an id",
            )
        return row[entity]

    async def _histories(self, entities: list[Any]) -> list[StoredHistory]:
        import redis

        if not entities:
            return []
        keys = [entity_key(self.store.prefix, e) for e in entities]
        try:
            if len(keys) == 1:  # a GET: what one live answer asks
                raw = [await self.client.get(keys[0])]
            else:
                raw = await self.client.mget(keys)
        except redis.RedisError as exc:
            raise ApiError(
                503, "feature_store_unavailable", f"{self.store.where()} is unreachable: {exc}"
            ) from None
        return [StoredHistory.parse(r) for r in raw]

    def _merged(self, row: LiveRow, entity: Any, stored: StoredHistory, now_us: int) -> LiveRow:
        as_of = now_us if stored.newest is None else max(now_us, stored.newest + 1)
        windowed = stored.features(self.store.spec, entity, as_of)
        newest = None if stored.newest is None else iso(stored.newest)
        answer = {**row.answer, "aggregates": windowed, "features_as_of": newest}
        return LiveRow({**row.features, **windowed}, answer)


def iso(micros: int) -> str:
    """Microseconds since the epoch as an exact ISO 8601 UTC time."""
    return (EPOCH + dt.timedelta(microseconds=micros)).isoformat()
