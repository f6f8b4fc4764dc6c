"""Live fallback: score ids the batch did not cover, and rows callers bring (opt-in per model).

``GET /v1/models/{model}/predictions/{id}`` answers from the snapshot first (the fast path is
unchanged: the live code runs only where the answer would have been a 404). For a model listed
in ``live_models``, an id missing from the snapshot is looked up in the feature snapshot
published beside it (``serving/features.py``), scored through the scoring core
(``BatchScorer``: the same casts, rules and outputs as the batch) with the version that scored
the snapshot or the configured URI (e.g. the ONNX export), and the answer is cached (bounded,
TTL, keyed by snapshot, model version and id). ``source`` says where an answer came from:
``snapshot``, ``live`` or ``cache``. An id without features stays a 404.

A multi-model job (members, pipelines, shadows, an ensemble, rules) is scored live with all its
members at the versions its snapshot was scored with (``serving/live_scoring.py``); ``values``
holds the served columns and ``?members=true`` adds each member's struct, like a snapshot answer.
A cascade job's ``values`` are the answering stage's outputs and ``answered_by``; a cascade whose
feature snapshot does not record its stages is ``live_unsupported``, never the champion alone.

``POST /v1/models/{model}:score`` (``routes.py``) scores feature rows from the body through
``LiveFallback.score_rows``: every row must carry every feature of the model in its
signature's kind (number or string); a 422 names the field. Model loading and scoring run in
a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response

from batch_serving.api.backends import Handle
from batch_serving.api.errors import ApiError
from batch_serving.api.live_features import (
    LiveFeatures,
    LiveRow,
    OnlineWindows,
    SnapshotFeatures,
    WindowedFeatures,
)
from batch_serving.api.routes import _provenance
from batch_serving.api.ttl_cache import TtlCache
from batch_serving.config import ServeSettings
from batch_serving.config.cascade import ANSWERED_BY
from batch_serving.errors import BatchServingError, ConfigError
from batch_serving.serving.pointer import ServingLayout
from batch_serving.serving.records import FeatureManifest

if TYPE_CHECKING:
    from batch_serving.serving.live_scoring import LiveScorer

log = logging.getLogger(__name__)


class LiveFallback:
    """Per-app live state: feature snapshots of current snapshots, loaded models, the cache."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.layout = ServingLayout(settings.snapshot_root)
        self.cache = TtlCache(settings.live_cache_size, settings.live_cache_ttl_s)
        self._features: dict[str, tuple[str, LiveFeatures | None]] = {}
        self._windows = _online_windows(settings)
        self._window_clients: dict[str, Any] = {}
        self._scorers: dict[tuple[str, str], LiveScorer] = {}
        self._lock = threading.Lock()
        self._redis: Any = None

    def enabled(self, model: str) -> bool:
        return model in self.settings.live_models

    async def get(
        self, model: str, handle: Handle, key: int | str, entity_id: str, members: bool = False
    ) -> Response:
        """The live (or cached) answer for an id missing from ``handle``; 404 without features."""
        features = await self._feature_snapshot(model, handle)
        cache_key = (model, handle.snapshot_id, key)
        hit = self.cache.get(cache_key) if _cacheable(features) else None
        if hit is not None:
            return _json({**_asked(hit, members), "source": "cache"})
        row = (await features.rows([key]))[0] if features is not None else None
        if row is None:
            raise ApiError(
                404,
                "entity_not_found",
                f"entity {entity_id!r} is neither in snapshot {handle.snapshot_id} of model "
                f"{model!r} nor in its feature snapshot",
            )
        body = await asyncio.to_thread(self._score_id, model, handle, features, row, entity_id)
        if _cacheable(features):
            self.cache.put(cache_key, body)
        return _json({**_asked(body, members), "source": "live"})

    async def fill(
        self,
        model: str,
        handle: Handle,
        wanted: list[tuple[int | str, str]],
        members: bool = False,
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """batchGet's ids missing from ``handle``: answers from the cache, else scored live in
        one call; ids without features stay missing (their order is kept in both lists)."""
        features = await self._feature_snapshot(model, handle) if wanted else None
        cacheable = _cacheable(features)
        answers: dict[str, dict[str, Any]] = {}
        asked: list[tuple[int | str, str]] = []
        for key, entity_id in wanted:
            hit = self.cache.get((model, handle.snapshot_id, key)) if cacheable else None
            if hit is not None:
                answers[entity_id] = {"entity_id": entity_id, **_asked(hit, members, True)}
                answers[entity_id]["source"] = "cache"
            else:
                asked.append((key, entity_id))
        rows = await features.rows([k for k, _ in asked]) if features is not None and asked else []
        todo = [(k, i, r) for (k, i), r in zip(asked, rows, strict=True) if r is not None]
        if todo:
            scorer = await asyncio.to_thread(self._scorer, model, handle, features)
            scored = await asyncio.to_thread(scorer.score, [r.features for _, _, r in todo])
            for (key, entity_id, row), result in zip(todo, scored, strict=True):
                if isinstance(result, str):
                    continue  # not scorable: reported as missing, like an id without features
                body = {
                    "model": model,
                    "entity_id": entity_id,
                    **_provenance(handle),
                    "model_version": scorer.version,
                    "live_model": scorer.uri,
                    **_split(result, scorer),
                    **row.answer,
                }
                if cacheable:
                    self.cache.put((model, handle.snapshot_id, key), body)
                short = _asked(body, members, True)
                answers[entity_id] = {"entity_id": entity_id, **short, **row.answer}
                answers[entity_id]["source"] = "live"
        found = [answers[i] for _, i in wanted if i in answers]
        return found, [i for _, i in wanted if i not in answers]

    async def row_width(self, model: str, handle: Handle) -> int:
        """How many fields a row posted to ``:score`` carries: the live model's features
        (loads the model on first use, like scoring does)."""
        return len((await self._scorer_for(model, handle)).features)

    async def score_rows(
        self, model: str, handle: Handle, rows: list[dict[str, Any]]
    ) -> dict[str, Any]:
        from batch_serving.serving.live_scoring import RowError, validate_rows

        scorer = await self._scorer_for(model, handle)
        _no_unknown_fields(rows, scorer.features)
        try:
            validate_rows(rows, scorer)
        except RowError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        results = await asyncio.to_thread(scorer.score, rows)
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, str)]
        if failed:
            i, reason = failed[0]
            raise ApiError(422, "invalid_row", f"rows[{i}]: cannot be scored: {reason}")
        return {
            "model": model,
            "model_version": scorer.version,
            "live_model": scorer.uri,
            "source": "live",
            "results": [_split(r, scorer) for r in results if not isinstance(r, str)],
        }

    async def close(self) -> None:
        for client in (self._redis, *self._window_clients.values()):
            if client is not None:
                await client.aclose()

    async def _scorer_for(self, model: str, handle: Handle) -> LiveScorer:
        features = await self._feature_snapshot(model, handle)
        return await asyncio.to_thread(self._scorer, model, handle, features)

    def _score_id(
        self,
        model: str,
        handle: Handle,
        features: LiveFeatures | None,
        row: LiveRow,
        entity_id: str,
    ) -> dict[str, Any]:
        scorer = self._scorer(model, handle, features)
        (result,) = scorer.score([row.features])
        if isinstance(result, str):
            raise ApiError(422, "not_scorable", f"entity {entity_id!r}: {result}")
        return {
            "model": model,
            "entity_id": entity_id,
            **_provenance(handle),
            "model_version": scorer.version,
            "live_model": scorer.uri,
            **_split(result, scorer),
            **row.answer,
        }

    async def _feature_snapshot(self, model: str, handle: Handle) -> LiveFeatures | None:
        """The live features of ``handle``'s snapshot (None without a feature snapshot): the
        feature snapshot published with it (a file beside it, or its Redis keys with the Redis
        backend), with the online store's windowed features for a ``live_window_jobs`` model."""
        current = self._features.get(model)
        if current is not None and current[0] == handle.snapshot_id:
            return current[1]
        if self.settings.backend == "redis":
            snap = await self._redis_features(model, handle)
        else:
            snap = await asyncio.to_thread(self._file_features, model, handle)
        found = None if snap is None else self._live_features(model, SnapshotFeatures(snap))
        self._features[model] = (handle.snapshot_id, found)
        return found

    def _live_features(self, model: str, snapshot: SnapshotFeatures) -> LiveFeatures:
        store = self._windows.get(model)
        if store is None:
            return snapshot
        client = self._window_clients.get(store.url)
        if client is None:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(store.url, socket_connect_timeout=5)
            self._window_clients[store.url] = client
        return WindowedFeatures(snapshot, store, client)

    def _file_features(self, model: str, handle: Handle) -> Any:
        from batch_serving.serving.features import FEATURES_DIR
        from batch_serving.serving.readers import Snapshot

        directory = self.layout.snapshot_dir(model, handle.snapshot_id) / FEATURES_DIR
        return Snapshot(directory, self.settings.verify_checksum) if directory.is_dir() else None

    async def _redis_features(self, model: str, handle: Handle) -> Any:
        import redis.asyncio as aioredis

        from batch_serving.serving.features import features_meta_key, features_name
        from batch_serving.serving.records import SnapshotManifest
        from batch_serving.serving.redis_store import RedisSnapshot

        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self.settings.redis_url, socket_connect_timeout=5, decode_responses=True
            )
        raw = await self._redis.get(features_meta_key(model, handle.manifest.provenance().run_id))
        if raw is None:
            return None
        meta = SnapshotManifest.from_json(raw, f"Redis feature meta of {model}")
        return RedisSnapshot(self._redis, features_name(model), meta)

    def _scorer(self, model: str, handle: Handle, features: LiveFeatures | None) -> LiveScorer:
        info = FeatureManifest.of(features.manifest if features is not None else handle.manifest)
        if info.ensemble and not info.members:
            raise ApiError(
                404,
                "live_unsupported",
                f"model {model!r} serves an ensemble, but its feature snapshot predates "
                "multi-model live scoring (no pinned members); republish it",
            )
        if ANSWERED_BY in handle.manifest.served and info.cascade is None:
            raise ApiError(  # without its stages the champion alone would answer every row
                404,
                "live_unsupported",
                f"model {model!r} serves a cascade, but its feature snapshot predates live "
                "cascades (no cascade in its manifest); republish it",
            )
        wanted = self.settings.live_models[model]
        uri = info.model_uri if wanted in ("", "scored") else wanted
        if not uri:
            raise ApiError(503, "live_unavailable", f"snapshot of {model!r} names no model URI")
        with self._lock:
            scorer = self._scorers.get((model, uri))
            if scorer is None:
                tracking = self.settings.live_tracking_uri or info.tracking_uri
                if not tracking:
                    raise ApiError(
                        503, "live_unavailable", f"no registry known for live model {uri}"
                    )
                from batch_serving.serving.live_scoring import load_scorer

                try:
                    scorer = load_scorer(uri, info, tracking)
                except BatchServingError as exc:
                    raise ApiError(503, "live_unavailable", str(exc)) from None
                self._scorers[(model, uri)] = scorer
            return scorer


def _no_unknown_fields(rows: list[dict[str, Any]], features: tuple[str, ...]) -> None:
    """422 naming the first field no feature of the model has: a misspelt feature would
    otherwise be dropped silently (and scoring requests refuse unknown fields too)."""
    known = set(features)
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - known)
        if unknown:
            expected = f"the model's features are {list(features)}"
            raise ApiError(
                422, "invalid_request", f"rows[{i}].{unknown[0]}: unknown field; {expected}"
            )


def _split(result: dict[str, Any], scorer: LiveScorer) -> dict[str, Any]:
    """A scored row as ``values`` (served columns) and, for a multi-model plan, ``members``."""
    names = scorer.member_columns
    if not names:
        return {"values": result}
    return {
        "values": {k: v for k, v in result.items() if k not in names},
        "members": {k: result[k] for k in names},
    }


def _asked(body: dict[str, Any], members: bool, short: bool = False) -> dict[str, Any]:
    """``body`` with ``members`` only when asked for (``{}`` for a single-model job, like a
    snapshot answer); ``short``: just values and members (a batchGet result)."""
    out = {"values": body["values"]} if short else {k: v for k, v in body.items() if k != "members"}
    if members:
        out["members"] = body.get("members", {})
    return out


def _cacheable(features: LiveFeatures | None) -> bool:
    """Answers from a feature snapshot are cached; those with fresh windowed features never."""
    return features is None or features.cacheable


def _online_windows(settings: ServeSettings) -> dict[str, OnlineWindows]:
    """model -> its online store of windowed features, from ``live_window_jobs`` (a job
    file without ``windows.redis_url`` is a ConfigError naming the job)."""
    from batch_serving.config import load_config

    out = {}
    for path in settings.live_window_jobs:
        try:
            store = OnlineWindows.of(load_config(path))
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if store.model not in settings.live_models:
            raise ConfigError(
                f"{path}: live_window_jobs names model {store.model!r}, which live_models "
                f"does not list ({sorted(settings.live_models)}): it would never be scored live"
            )
        out[store.model] = store
    return out


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body).encode(), media_type="application/json")
