"""Asynchronous scoring requests: ``POST`` rows, get a request id, ``GET`` the result later.

The rows are checked here against the stream's landing schema (422 naming the row and field,
before anything is queued), then written as one file into the stream's landing directory
(``stream.requests``); the stream scores them like any event and writes the request's result
file, which ``GET`` returns. A model takes requests when one of ``stream_jobs`` streams it.
A request holds at most ``max_batch`` rows; its body at most what that many rows of the
stream's columns take (``limits.RowLimit``), counted while it streams in.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from batch_serving.api.errors import ApiError
from batch_serving.api.limits import RowLimit, post_with_limit
from batch_serving.api.schemas import ErrorResponse
from batch_serving.config import MODEL_NAME, ServeSettings, load_config
from batch_serving.stream.layout import StreamLayout
from batch_serving.stream.requests import (
    REQUEST_ID,
    is_pending,
    land_request,
    new_request_id,
)
from batch_serving.stream.schema import parse_ddl

ROUTE = "/v1/models/{model}/scoring-requests"
ModelParam = Annotated[
    str, PathParam(pattern=MODEL_NAME.pattern, description="registered model name")
]
router = APIRouter()


class ScoringRequest(BaseModel):
    """Feature rows to score, each an object with the stream's columns."""

    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Any]] = Field(min_length=1)


class Accepted(BaseModel):
    request_id: str
    model: str
    status: str
    rows: int
    location: str


@dataclass(frozen=True)
class StreamTarget:
    """Where one model's requests land, how they must look, and where results appear."""

    model: str
    landing: Path
    fmt: str
    schema: pa.Schema
    optional: frozenset[str]
    layout: StreamLayout


def load_targets(settings: ServeSettings) -> dict[str, StreamTarget]:
    """model -> target, from the configured stream jobs (a bad job file is a ConfigError)."""
    targets = {}
    for path in settings.stream_jobs:
        cfg = load_config(path)
        stream = cfg.stream
        if stream is None or stream.source != "files" or stream.path is None:
            continue
        schema = parse_ddl(stream.columns)
        optional = frozenset([stream.event_time_column] if stream.event_time_column else [])
        targets[cfg.model.name] = StreamTarget(
            cfg.model.name,
            Path(stream.path),
            stream.format,
            schema,
            optional,
            StreamLayout.for_job(cfg),
        )
    return targets


async def stream_targets(request: Request) -> dict[str, StreamTarget]:
    """Loaded once per app, at the first request that needs them."""
    state = request.app.state
    if getattr(state, "stream_targets", None) is None:
        state.stream_targets = load_targets(state.serving.settings)
    targets: dict[str, StreamTarget] = state.stream_targets
    return targets


Targets = Annotated[dict[str, StreamTarget], Depends(stream_targets)]


async def _rows_limit(request: Request) -> RowLimit | None:
    """The body limit of a scoring request: ``max_batch`` rows of the stream's columns; a
    model no stream takes requests for is a 404 before its body is read."""
    model = request.path_params.get("model", "")
    if not MODEL_NAME.fullmatch(model):
        return None  # not a model name: FastAPI's validation refuses it (422)
    return row_limit(request, _target(await stream_targets(request), model))


def row_limit(request: Request, target: StreamTarget) -> RowLimit:
    settings: ServeSettings = request.app.state.serving.settings
    fields = len(target.schema)
    return RowLimit(settings.max_batch, fields, settings.row_field_bytes, noun="columns")


@post_with_limit(
    router,
    ROUTE,
    _rows_limit,
    status_code=202,
    response_model=Accepted,
    responses={404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
    summary="Queue rows for the stream to score; 202 with the request id",
)
async def submit_scoring_request(
    model: ModelParam, body: ScoringRequest, targets: Targets, request: Request
) -> Response:
    target = _target(targets, model)
    row_limit(request, target).check_rows(len(body.rows))
    rows = [check_row(i, row, target) for i, row in enumerate(body.rows)]
    request_id = new_request_id()
    land_request(target.landing, request_id, rows, target.schema, target.fmt)
    location = f"{ROUTE.format(model=model)}/{request_id}"
    answer = Accepted(
        request_id=request_id, model=model, status="pending", rows=len(rows), location=location
    )
    return Response(
        answer.model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": location},
    )


@router.get(
    ROUTE + "/{request_id}",
    responses={202: {"description": "not scored yet"}, 404: {"model": ErrorResponse}},
    summary="The result of a scoring request: 200 once scored, 202 while pending",
)
async def get_scoring_request(model: ModelParam, request_id: str, targets: Targets) -> Response:
    target = _target(targets, model)
    if not REQUEST_ID.fullmatch(request_id):
        raise ApiError(404, "request_not_found", f"no scoring request {request_id!r}")
    done = target.layout.request_result(request_id)
    if done.exists():
        answer = json.loads(done.read_text())
        body = {"model": model, "status": "done", **answer}
        return Response(json.dumps(body), media_type="application/json")
    if is_pending(target.landing, request_id):
        body = {"model": model, "request_id": request_id, "status": "pending"}
        return Response(json.dumps(body), status_code=202, media_type="application/json")
    raise ApiError(
        404, "request_not_found", f"no scoring request {request_id!r} for model {model!r}"
    )


def _target(targets: dict[str, StreamTarget], model: str) -> StreamTarget:
    target = targets.get(model)
    if target is None:
        raise ApiError(404, "model_not_found", f"model {model!r} takes no scoring requests here")
    return target


def check_row(index: int, row: dict[str, Any], target: StreamTarget) -> dict[str, Any]:
    """The row, or a 422 naming ``rows[i].<field>`` and what is wrong with it."""
    names = set(target.schema.names)
    unknown = sorted(set(row) - names)
    if unknown:
        raise _invalid(index, unknown[0], f"unknown field; expected {sorted(names)}")
    for field in target.schema:
        value = row.get(field.name)
        if value is None:
            if field.name in target.optional:
                continue
            raise _invalid(index, field.name, "field required (not null)")
        problem = _type_problem(field.type, value)
        if problem:
            raise _invalid(index, field.name, f"{problem}, got {value!r}")
    return row


def _type_problem(kind: pa.DataType, value: Any) -> str | None:
    if isinstance(value, bool) and not pa.types.is_boolean(kind):
        return f"expected {kind}"
    if pa.types.is_integer(kind):
        return None if isinstance(value, int) else "expected an integer"
    if pa.types.is_floating(kind):
        return None if isinstance(value, int | float) else "expected a number"
    if pa.types.is_string(kind):
        return None if isinstance(value, str) else "expected a string"
    if pa.types.is_boolean(kind):
        return None if isinstance(value, bool) else "expected true or false"
    parse = dt.date.fromisoformat if pa.types.is_date(kind) else dt.datetime.fromisoformat
    try:
        parse(value)
    except (TypeError, ValueError):
        return "expected an ISO-8601 date/time string"
    return None


def _invalid(index: int, field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_row", f"rows[{index}].{field}: {message}")
