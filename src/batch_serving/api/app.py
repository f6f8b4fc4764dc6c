"""Lookup API: precomputed predictions by entity id, from the current published snapshot.

Consistency: every request takes the snapshot handles dict once and answers from that one
snapshot; a swap builds a complete new handle first and then replaces the dict reference
(one assignment), so in-flight requests finish on the old snapshot and new ones see the new one.
The old handle (and its memory map) is released when the last request holding it returns.

Request paths never reach the filesystem: a model name is a key of the loaded dict, an id is
a search key inside an already-open snapshot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import logging
import re
import time
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    MutableMapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from batch_serving import __version__
from batch_serving.config import MODEL_NAME, ServeSettings
from batch_serving.errors import BatchServingError
from batch_serving.serving.pointer import ServingLayout, read_pointer
from batch_serving.serving.readers import MappedSnapshot, Snapshot, open_snapshot

log = logging.getLogger(__name__)

ID_PATTERN = r"^[A-Za-z0-9_.:@|\-]{1,128}$"
_ID = re.compile(ID_PATTERN)
GET_ROUTE = "/v1/models/{model}/predictions/{entity_id}"
_GET_PATH = re.compile(r"/v1/models/([^/]+)/predictions/([^/]+)")
EntityId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Value = float | int | str | bool | dict[str, float | None] | None
ModelParam = Annotated[str, Path(pattern=MODEL_NAME.pattern, description="registered model name")]
IdParam = Annotated[str, Path(pattern=ID_PATTERN, description="entity id")]


# ---- response and request models (the OpenAPI schema generated clients use) -------------------


class ErrorBody(BaseModel):
    code: str = Field(examples=["entity_not_found"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class PredictionResponse(BaseModel):
    model: str = Field(examples=["churn"])
    entity_id: str = Field(examples=["42"])
    model_version: int = Field(examples=[3])
    as_of: dt.date = Field(description="run date of the scoring run that produced the values")
    run_id: str
    snapshot: str
    values: dict[str, Value] = Field(examples=[{"score": 0.137}])


class BatchGetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[EntityId | int] = Field(min_length=1, examples=[["42", "43", "999999"]])


class Prediction(BaseModel):
    entity_id: str
    values: dict[str, Value]


class BatchGetResponse(BaseModel):
    model: str
    model_version: int
    as_of: dt.date
    run_id: str
    snapshot: str
    results: list[Prediction]
    missing: list[str] = Field(description="requested ids that are not in the snapshot")


class ModelInfo(BaseModel):
    model: str
    model_version: int
    as_of: dt.date
    run_id: str
    snapshot: str
    rows: int
    published_at: str
    backend: str


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


# ---- backends -----------------------------------------------------------------------------------


class Handle(Protocol):
    """One loaded snapshot of one model."""

    snapshot_id: str
    manifest: dict[str, Any]

    def parse_key(self, entity_id: str) -> int | str: ...

    async def lookup(self, keys: Sequence[int | str]) -> list[dict[str, Any] | None]: ...


class Backend(Protocol):
    async def load(self, current: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class EmbeddedHandle:
    """A memory-mapped snapshot file (see ``snapshot.py``)."""

    def __init__(self, snap: Snapshot | MappedSnapshot) -> None:
        self._snap = snap
        self.snapshot_id = snap.snapshot_id
        self.manifest = snap.manifest

    def parse_key(self, entity_id: str) -> int | str:
        return self._snap.parse_key(entity_id)

    async def lookup(self, keys: Sequence[int | str]) -> list[dict[str, Any] | None]:
        return self._snap.lookup(keys)


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
        for model in self._layout.models():
            if self._wanted and model not in self._wanted:
                continue
            pointer = read_pointer(self._layout, model)
            if pointer is None or (model in out and out[model].snapshot_id == pointer["current"]):
                continue
            directory = self._layout.snapshot_dir(model, pointer["current"])
            out[model] = EmbeddedHandle(open_snapshot(directory, verify_checksum=self._verify))
        return out

    async def close(self) -> None:
        return None


# ---- app ----------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class _State:
    settings: ServeSettings
    backend: Backend
    tokens: list[bytes]
    snapshots: dict[str, Any] = field(default_factory=dict)
    live: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "batch_serving_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "batch_serving_request_duration_seconds",
            "Request latency (server side) by route template",
            ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.swaps = Counter(
            "batch_serving_snapshot_swaps",
            "Snapshots made current",
            ["model"],
            registry=self.registry,
        )
        self.refresh_errors = Counter(
            "batch_serving_refresh_errors",
            "Failed polls of the snapshot store",
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(self))

    async def refresh(self) -> list[str]:
        """Load snapshots whose pointer moved; swap them in with one assignment."""
        before = self.snapshots
        after = await self.backend.load(before)
        swapped = [m for m, h in after.items() if before.get(m) is not h]
        if swapped:
            self.snapshots = after
            for model in swapped:
                handle = after[model]
                self.live.add(handle)
                self.swaps.labels(model).inc()
                old = before.get(model)
                log.info(
                    "serving %s snapshot %s (was %s)",
                    model,
                    handle.snapshot_id,
                    old.snapshot_id if old is not None else "none",
                )
                if old is not None:
                    weakref.finalize(
                        old, log.info, "released %s snapshot %s", model, old.snapshot_id
                    )
        return swapped


class _SnapshotCollector:
    """Gauges computed at scrape time from whatever is current."""

    def __init__(self, state: _State) -> None:
        self._state = state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "batch_serving_snapshot_age_seconds",
            "Seconds since the served snapshot was published",
            labels=["model"],
        )
        rows = GaugeMetricFamily(
            "batch_serving_snapshot_rows", "Entities in the served snapshot", labels=["model"]
        )
        version = GaugeMetricFamily(
            "batch_serving_snapshot_model_version",
            "Model version of the served snapshot",
            labels=["model"],
        )
        now = dt.datetime.now(dt.UTC)
        for model, handle in self._state.snapshots.items():
            published = dt.datetime.fromisoformat(handle.manifest["published_at"])
            age.add_metric([model], (now - published).total_seconds())
            rows.add_metric([model], float(handle.manifest["rows"]))
            version.add_metric([model], float(handle.manifest["model_version"]))
        loaded = GaugeMetricFamily(
            "batch_serving_snapshots_mapped", "Snapshot handles still alive (current + draining)"
        )
        loaded.add_metric([], float(len(self._state.live)))
        return [age, rows, version, loaded]


def make_backend(settings: ServeSettings) -> Backend:
    if settings.backend == "redis":
        from batch_serving.serving.redis_store import RedisBackend

        return RedisBackend(settings.redis_url, settings.models)
    return EmbeddedBackend(settings)


def create_app(settings: ServeSettings, backend: Backend | None = None) -> FastAPI:
    """The app; snapshots are loaded at startup and re-polled every ``poll_interval_s``."""
    state = _State(
        settings=settings,
        backend=backend or make_backend(settings),
        tokens=[t.encode() for t in settings.tokens()],
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _refresh_logged(state)
        task = asyncio.create_task(_poll(state))
        try:
            yield
        finally:
            task.cancel()
            await state.backend.close()

    app = FastAPI(
        title="batch-serving lookup API",
        version=__version__,
        description="Precomputed batch predictions by entity id. Ids outside the scored "
        "domain return 404; every answer names the model version and run date it comes from.",
        lifespan=lifespan,
        responses={401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    )
    app.state.serving = state
    _install_handlers(app)
    app.add_middleware(_Observe, state=state)

    @app.get(
        GET_ROUTE,
        response_model=PredictionResponse,
        responses={404: {"model": ErrorResponse}},
        summary="Prediction for one entity",
    )
    async def get_prediction(model: ModelParam, entity_id: IdParam) -> Response:
        # Normally answered by the _Observe fast path (same function); kept for the schema.
        body = await get_one(state, model, entity_id)
        return Response(body, media_type="application/json")

    @app.post(
        "/v1/models/{model}/predictions:batchGet",
        response_model=BatchGetResponse,
        responses={404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
        summary="Predictions for up to max_batch ids "
        f"(default {ServeSettings.model_fields['max_batch'].default})",
    )
    async def batch_get(model: ModelParam, request: BatchGetRequest) -> Response:
        if len(request.ids) > settings.max_batch:
            raise ApiError(
                413,
                "too_many_ids",
                f"{len(request.ids)} ids requested; the limit is {settings.max_batch}",
            )
        handle = _handle(state, model)
        ids = [str(i) for i in request.ids]
        keys = [_parse(handle, model, i) for i in ids]
        found = await handle.lookup(keys)
        results = [
            {"entity_id": i, "values": v} for i, v in zip(ids, found, strict=True) if v is not None
        ]
        missing = [i for i, v in zip(ids, found, strict=True) if v is None]
        body = {"model": model, **_provenance(handle), "results": results, "missing": missing}
        return Response(json.dumps(body).encode(), media_type="application/json")

    @app.get(
        "/v1/models", response_model=ModelsResponse, summary="Models served, with version and date"
    )
    async def list_models() -> ModelsResponse:
        return ModelsResponse(
            models=[
                ModelInfo(
                    model=model,
                    **_provenance(h),
                    rows=h.manifest["rows"],
                    published_at=h.manifest["published_at"],
                    backend=settings.backend,
                )
                for model, h in sorted(state.snapshots.items())
            ]
        )

    @app.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": ErrorResponse}},
        summary="200 once a snapshot is loaded, 503 before",
    )
    async def health() -> HealthResponse:
        if not state.snapshots:
            raise ApiError(503, "no_snapshot", "no snapshot loaded yet")
        return HealthResponse(status="ok")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def get_one(state: _State, model: str, entity_id: str) -> bytes:
    """JSON body for one id from the current snapshot, or ApiError (404/422)."""
    handle = _handle(state, model)
    key = _parse(handle, model, entity_id)
    (values,) = await handle.lookup([key])
    if values is None:
        raise ApiError(
            404,
            "entity_not_found",
            f"entity {entity_id!r} is not in snapshot {handle.snapshot_id} of model {model!r}",
        )
    body = {"model": model, "entity_id": entity_id, **_provenance(handle), "values": values}
    return json.dumps(body).encode()


def _provenance(handle: Any) -> dict[str, Any]:
    """What every answer says about where its values come from."""
    m = handle.manifest
    return {
        "model_version": m["model_version"],
        "as_of": m["run_date"],
        "run_id": m["run_id"],
        "snapshot": handle.snapshot_id,
    }


def _handle(state: _State, model: str) -> Any:
    handle = state.snapshots.get(model)
    if handle is None:
        raise ApiError(404, "model_not_found", f"model {model!r} is not served here")
    return handle


def _parse(handle: Any, model: str, entity_id: str) -> int | str:
    try:
        key: int | str = handle.parse_key(entity_id)
    except ValueError:
        raise ApiError(
            422,
            "invalid_entity_id",
            f"entity ids of model {model!r} are integers; got {entity_id!r}",
        ) from None
    return key


async def _refresh_logged(state: _State) -> None:
    try:
        await state.refresh()
    except BatchServingError as exc:
        state.refresh_errors.inc()
        log.error("snapshot refresh failed (still serving the previous one): %s", exc)


async def _poll(state: _State) -> None:
    while True:
        await asyncio.sleep(state.settings.poll_interval_s)
        await _refresh_logged(state)


def _error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(_error_body(code, message), status_code=status, headers=headers)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        return _error(422, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Observe:
    """Pure ASGI middleware: bearer auth first (nothing runs for a bad token), then metrics."""

    PROTECTED = ("/v1/", "/metrics")

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], state: _State
    ) -> None:
        self.app = app
        self.state = state
        self.max_body = state.settings.max_batch * 160 + 4096

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        template = None
        try:
            rejection = self._reject(scope)
            if rejection is not None:
                await rejection(scope, receive, send_status)
            elif (fast := self._fast_get(scope)) is not None:
                template = GET_ROUTE
                await self._answer_get(fast[0], fast[1], send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            if template is None:
                template = getattr(scope.get("route"), "path", "<unmatched>")
            self.state.requests.labels(scope["method"], template, str(status[0])).inc()
            self.state.latency.labels(template).observe(time.perf_counter() - start)

    @staticmethod
    def _fast_get(scope: Scope) -> tuple[str, str] | None:
        """The hot route, matched without the router (FastAPI's per-request dependency and
        validation machinery halves throughput); anything unusual falls through to FastAPI."""
        if scope["method"] != "GET":
            return None
        match = _GET_PATH.fullmatch(scope["path"])
        if match is None or not MODEL_NAME.fullmatch(match[1]) or not _ID.fullmatch(match[2]):
            return None
        return match[1], match[2]

    async def _answer_get(self, model: str, entity_id: str, send: Send) -> None:
        try:
            status, body = 200, await get_one(self.state, model, entity_id)
        except ApiError as exc:
            status = exc.status
            body = json.dumps(_error_body(exc.code, exc.message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _reject(self, scope: Scope) -> JSONResponse | None:
        headers = dict(scope["headers"])
        if self.state.tokens and scope["path"].startswith(self.PROTECTED):
            auth = headers.get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not any(
                hmac.compare_digest(token.strip(), t) for t in self.state.tokens
            ):
                return _error(
                    401,
                    "unauthorized",
                    "missing or invalid bearer token",
                    {"WWW-Authenticate": "Bearer"},
                )
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return _error(413, "body_too_large", f"request body over {self.max_body} bytes")
        return None


@contextmanager
def running_server(app: FastAPI, port: int, host: str = "127.0.0.1") -> Iterator[str]:
    """uvicorn serving ``app`` in a background thread (startup done on entry); yields its URL.

    For the demo and tests: real HTTP on loopback without a second process.
    """
    import threading

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"API did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
