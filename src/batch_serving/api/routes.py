"""Route functions. Request paths never reach the filesystem: a model name is a key of the
loaded dict, an id is a search key inside an already-open snapshot.

``get_prediction`` is also what the middleware's fast path calls (see ``fastpath.py``): one
implementation. It is registered here for the OpenAPI schema; FastAPI itself calls it only for
a GET the fast path did not take (and so validates every query string the fast path does not
know: an unknown parameter or a bad value is a 422).

``values`` holds the served columns; a multi-model snapshot's member structs are added under
``members`` only when the request asks (``?members=true``, or ``"members": true`` in a batch).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from batch_serving.api.backends import Handle
from batch_serving.api.errors import ApiError
from batch_serving.api.limits import RowLimit, post_with_limit
from batch_serving.api.schemas import (
    ID_PATTERN,
    BatchGetRequest,
    BatchGetResponse,
    ErrorResponse,
    HealthResponse,
    LookupQuery,
    ModelInfo,
    ModelsResponse,
    PredictionResponse,
    ScoreRequest,
    ScoreResponse,
)
from batch_serving.api.state import ServingState
from batch_serving.config import MODEL_NAME, ServeSettings

GET_ROUTE = "/v1/models/{model}/predictions/{entity_id}"
ModelParam = Annotated[str, Path(pattern=MODEL_NAME.pattern, description="registered model name")]
IdParam = Annotated[str, Path(pattern=ID_PATTERN, description="entity id")]
# the fast path's two valid query strings, parsed once (see fastpath.py)
QUERIES = {members: LookupQuery(members=members) for members in (False, True)}


async def serving_state(request: Request) -> ServingState:
    """The app's state (async: a sync dependency would cost a thread hop per request)."""
    state: ServingState = request.app.state.serving
    return state


State = Annotated[ServingState, Depends(serving_state)]
router = APIRouter()


@router.get(
    GET_ROUTE,
    response_model=PredictionResponse,
    responses={404: {"model": ErrorResponse}},
    summary="Prediction for one entity",
)
async def get_prediction(
    model: ModelParam,
    entity_id: IdParam,
    state: State,
    query: Annotated[LookupQuery, Query()],
) -> Response:
    # One id from the current snapshot, or ApiError (404 unknown model or id, 422 bad id).
    # A comment, not a docstring: FastAPI would publish a docstring in the schema.
    handle = _handle(state, model)
    key = _parse(handle, model, entity_id)
    (row,) = await handle.lookup([key], query.members)
    if row is None:
        if state.fallback is not None and state.fallback.enabled(model):
            return await state.fallback.get(model, handle, key, entity_id, query.members)
        raise ApiError(
            404,
            "entity_not_found",
            f"entity {entity_id!r} is not in snapshot {handle.snapshot_id} of model {model!r}",
        )
    body = {
        "model": model,
        "entity_id": entity_id,
        **_provenance(handle),
        **_answer(row, handle, query.members),
        "source": "snapshot",
    }
    return Response(json.dumps(body).encode(), media_type="application/json")


@router.post(
    "/v1/models/{model}/predictions:batchGet",
    response_model=BatchGetResponse,
    responses={404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
    summary="Predictions for up to max_batch ids "
    f"(default {ServeSettings.model_fields['max_batch'].default})",
)
async def batch_get(model: ModelParam, request: BatchGetRequest, state: State) -> Response:
    limit = state.settings.max_batch
    if len(request.ids) > limit:
        raise ApiError(
            413, "too_many_ids", f"{len(request.ids)} ids requested; the limit is {limit}"
        )
    handle = _handle(state, model)
    ids = [str(i) for i in request.ids]
    keys = [_parse(handle, model, i) for i in ids]
    found = await handle.lookup(keys, request.members)
    results = [
        {"entity_id": i, **_answer(row, handle, request.members), "source": "snapshot"}
        for i, row in zip(ids, found, strict=True)
        if row is not None
    ]
    missing = [i for i, v in zip(ids, found, strict=True) if v is None]
    if missing and state.fallback is not None and state.fallback.enabled(model):
        wanted = [(k, i) for k, i, v in zip(keys, ids, found, strict=True) if v is None]
        live, missing = await state.fallback.fill(model, handle, wanted, request.members)
        results.extend(live)
    body = {"model": model, **_provenance(handle), "results": results, "missing": missing}
    return Response(json.dumps(body).encode(), media_type="application/json")


async def _score_limit(request: Request) -> RowLimit | None:
    """``POST :score``'s body limit: ``max_batch`` rows of the live model's features. Chosen
    before the body is read, so an unknown model (404 ``model_not_found``) or one without live
    scoring (404 ``live_not_enabled``) is refused without reading it."""
    model = request.path_params.get("model", "")
    if not MODEL_NAME.fullmatch(model):
        return None  # not a model name: FastAPI's validation refuses it (422)
    _, _, limit = await _live_rows(request.app.state.serving, model)
    return limit


async def _live_rows(state: ServingState, model: str) -> tuple[Any, Handle, RowLimit]:
    """(the live fallback, the model's snapshot, the rows a request may post)."""
    handle = _handle(state, model)
    fallback = state.fallback  # api.live_fallback.LiveFallback, when live scoring is on
    if fallback is None or not fallback.enabled(model):
        raise ApiError(404, "live_not_enabled", f"live scoring is not enabled for {model!r}")
    features = await fallback.row_width(model, handle)
    settings = state.settings
    return fallback, handle, RowLimit(settings.max_batch, features, settings.row_field_bytes)


@post_with_limit(
    router,
    "/v1/models/{model}:score",
    _score_limit,
    response_model=ScoreResponse,
    responses={
        404: {"model": ErrorResponse},
        413: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
    summary="Score feature rows from the body (models with live scoring enabled)",
)
async def score_rows(model: ModelParam, request: ScoreRequest, state: State) -> Response:
    fallback, handle, limit = await _live_rows(state, model)
    limit.check_rows(len(request.rows))
    body = await fallback.score_rows(model, handle, request.rows)
    return Response(json.dumps(body).encode(), media_type="application/json")


@router.get(
    "/v1/models", response_model=ModelsResponse, summary="Models served, with version and date"
)
async def list_models(state: State) -> ModelsResponse:
    return ModelsResponse(
        models=[
            ModelInfo(
                model=model,
                **_provenance(h),
                rows=h.manifest.rows,
                published_at=h.manifest.provenance().published_at,
                backend=state.settings.backend,
                members=list(h.member_columns),
            )
            for model, h in sorted(state.snapshots.items())
        ]
    )


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": ErrorResponse}},
    summary="200 once a snapshot is loaded, 503 before",
)
async def health(state: State) -> HealthResponse:
    if not state.snapshots:
        raise ApiError(503, "no_snapshot", "no snapshot loaded yet")
    return HealthResponse(status="ok")


@router.get("/metrics", include_in_schema=False)
async def metrics(state: State) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _provenance(handle: Handle) -> dict[str, Any]:
    """What every answer says about where its values come from."""
    m = handle.manifest.provenance()
    return {
        "model_version": m.model_version,
        "as_of": m.run_date,
        "run_id": m.run_id,
        "snapshot": handle.snapshot_id,
    }


def _answer(row: dict[str, Any], handle: Handle, members: bool) -> dict[str, Any]:
    """``values`` (the served columns) and, when asked for, ``members`` (one object each)."""
    if not members:
        return {"values": row}
    names = handle.member_columns
    return {
        "values": {k: v for k, v in row.items() if k not in names},
        "members": {k: row.get(k) for k in names},
    }


def _handle(state: ServingState, model: str) -> Handle:
    handle: Handle | None = state.snapshots.get(model)
    if handle is None:
        raise ApiError(404, "model_not_found", f"model {model!r} is not served here")
    return handle


def _parse(handle: Handle, model: str, entity_id: str) -> int | str:
    try:
        return handle.parse_key(entity_id)
    except ValueError:
        raise ApiError(
            422,
            "invalid_entity_id",
            f"entity ids of model {model!r} are integers; got {entity_id!r}",
        ) from None
