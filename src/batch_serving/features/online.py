"""The online store of windowed features: each entity's recent events in Redis, and
``features_as_of`` computing its features from them with ``compute.window_features``.

The stream writes, every micro-batch, the events it released (``OnlineFeatureWriter.write``):
per entity one key ``bs:{job}:win:{entity}`` holding a JSON history (times in microseconds,
the aggregated columns, the batch that last wrote it), pruned to the longest window behind
its newest event and expiring ``windows.ttl`` after its last write. A replayed batch (after a
restart) finds its batch id already written and changes nothing. The reader computes, for any
time at or after the newest stored event, exactly what the stream and ``offline.training_set``
compute for an event at that time. The lookup API reads the same keys with its own (async)
client and computes them with ``StoredHistory`` (``api/live_features.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from batch_serving.config import JobConfig
from batch_serving.errors import ServingStoreError
from batch_serving.features.compute import window_features
from batch_serving.features.spec import WindowSpec

TIME = "t"


def online_prefix(cfg: JobConfig) -> str:
    """The key prefix of a job's online features: ``bs:<job>:win`` (the stream writes under
    it, the lookup API reads)."""
    return f"bs:{cfg.job}:win"


def entity_key(prefix: str, entity: Any) -> str:
    return f"{prefix}:{entity}"


def connect(url: str) -> Any:
    """A Redis client (decoded strings); unreachable is a ServingStoreError naming the URL."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServingStoreError(f"Redis at {url} is unreachable: {exc}") from None
    return client


class OnlineFeatureWriter:
    """Merges each micro-batch's released events into the entities' stored histories."""

    def __init__(self, client: Any, prefix: str, spec: WindowSpec) -> None:
        self.client, self.prefix, self.spec = client, prefix, spec

    def write(self, batch_id: int, events: pd.DataFrame) -> int:
        """``events``: the entity, ``t`` (int64 microseconds) and the aggregated columns of the
        events a batch released. Returns how many entities' keys it wrote."""
        groups = list(events.groupby(self.spec.entity, sort=False))
        keys = [entity_key(self.prefix, entity) for entity, _ in groups]
        stored = self.client.mget(keys) if keys else []
        pipe = self.client.pipeline(transaction=False)
        written = 0
        for (_, own), key, old in zip(groups, keys, stored, strict=True):
            history = json.loads(old) if old else None
            if history is not None and history["batch"] >= batch_id:
                continue  # this batch (replayed after a restart) is already in
            merged = self._merged(history, own, batch_id)
            pipe.set(key, json.dumps(merged), px=max(1, self.spec.ttl_us // 1000))
            written += 1
        pipe.execute()
        return written

    def _merged(
        self, history: dict[str, Any] | None, events: pd.DataFrame, batch_id: int
    ) -> dict[str, Any]:
        columns = [TIME, *self.spec.columns]
        new = {c: [_json_value(v) for v in events[c].tolist()] for c in columns}
        old = history["events"] if history else {c: [] for c in columns}
        both = pd.DataFrame({c: old[c] + new[c] for c in columns})
        both = both.sort_values(TIME, kind="stable")
        both = both[both[TIME] > both[TIME].max() - self.spec.longest_us]
        return {
            "batch": batch_id,
            "newest": int(both[TIME].max()),
            "events": {c: [_json_value(v) for v in both[c].tolist()] for c in columns},
        }


def features_as_of(
    client: Any, prefix: str, spec: WindowSpec, entity: Any, as_of_us: int
) -> dict[str, float | int | None]:
    """The entity's features for an event at ``as_of_us`` (its events strictly before it, in
    each window); an entity without stored events has empty windows. Raises
    ServingStoreError for a time before the stored history's newest event (older windows
    may have been pruned)."""
    stored = StoredHistory.parse(client.get(entity_key(prefix, entity)))
    return stored.features(spec, entity, as_of_us)


@dataclass(frozen=True)
class StoredHistory:
    """One entity's history as the online store holds it (``newest``: its newest event's time,
    None without events); parsed apart from the read so an async client (the lookup API's)
    computes exactly what ``features_as_of`` does."""

    newest: int | None
    events: Mapping[str, list[Any]]

    @classmethod
    def parse(cls, raw: str | bytes | None) -> StoredHistory:
        if not raw:
            return cls(None, {})
        history = json.loads(raw)
        return cls(history["newest"], history["events"])

    def features(
        self, spec: WindowSpec, entity: Any, as_of_us: int
    ) -> dict[str, float | int | None]:
        """``features_as_of`` over this history (same rule, same error)."""
        if self.newest is not None and as_of_us < self.newest:
            raise ServingStoreError(
                f"online features of {spec.entity}={entity}: as of {as_of_us} is before its "
                f"newest stored event ({self.newest}); ask for a time at or after it"
            )
        events = self.events
        times = np.asarray(events.get(TIME, []), dtype=np.int64)
        values = {c: _column(events.get(c, [])) for c in spec.columns}
        computed = window_features(times, values, np.array([as_of_us]), spec.features)
        return {name: _python(array[0]) for name, array in computed.items()}


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _column(values: list[Any]) -> np.ndarray:
    """A stored (JSON) column as ``window_features`` takes it, by ``compute.column_values``'s
    rule (strings as objects with None for null, anything else float64 with NaN for null),
    without a pandas Series: the lookup API does this once per live answer."""
    if any(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _python(value: Any) -> float | int | None:
    if isinstance(value, np.integer):
        return int(value)
    return None if math.isnan(float(value)) else float(value)
