"""The pure-ASGI front of the app: bearer auth, the body limit, the hot GET, request metrics.

Auth comes first so nothing runs for a bad token. The body limit (``limits.py``: the app's
id-list limit, or the one a feature-row route chose for its model) holds for a declared
``Content-Length`` and for bodies of unknown length too (chunked): bytes are counted as they
stream in; past the limit the app gets no more body and the client gets a 413, so a huge body
is never read whole or parsed.

The hot route (one id) is matched here, without the router: FastAPI's per-request dependency
and validation machinery halves its throughput. It calls the same ``routes.get_prediction``
FastAPI has registered; anything unusual (other methods, ids the pattern rejects, a query
string other than none, ``members=true`` or ``members=false``) falls through to FastAPI, which
validates it (an unknown parameter or a bad value is a 422 in the usual error shape).
"""

from __future__ import annotations

import hmac
import re
import time

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batch_serving.api.errors import ApiError, BodyTooLarge, api_error_response, error_response
from batch_serving.api.limits import SCOPE_KEY, IdListLimit, StreamedBody
from batch_serving.api.routes import GET_ROUTE, QUERIES, get_prediction
from batch_serving.api.schemas import ID_PATTERN
from batch_serving.api.state import ServingState
from batch_serving.config import MODEL_NAME

_GET_PATH = re.compile(r"/v1/models/([^/]+)/predictions/([^/]+)")
_ID = re.compile(ID_PATTERN)
PROTECTED = ("/v1/", "/metrics")
_MEMBERS = {b"": False, b"members=false": False, b"members=true": True}


class FastPath:
    """Middleware around the whole app; every HTTP request is counted and timed here."""

    def __init__(self, app: ASGIApp, state: ServingState) -> None:
        self.app = app
        self.state = state
        self.limit = IdListLimit(state.settings.max_batch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        template = None
        try:
            rejection = self._reject(scope)
            if rejection is not None:
                await rejection(scope, receive, send_status)
            elif (fast := _fast_get(scope)) is not None:
                template = GET_ROUTE
                response = await _get(self.state, *fast)
                await response(scope, receive, send_status)
            else:
                await self._app_within_limit(scope, receive, send_status)
        finally:
            if template is None:
                template = getattr(scope.get("route"), "path", "<unmatched>")
            metrics = self.state.metrics
            metrics.requests.labels(scope["method"], template, str(status[0])).inc()
            metrics.latency.labels(template).observe(time.perf_counter() - start)

    def _reject(self, scope: Scope) -> Response | None:
        """401 for a missing or wrong token on protected paths."""
        if self.state.tokens and scope["path"].startswith(PROTECTED):
            auth = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not any(
                hmac.compare_digest(token.strip(), t) for t in self.state.tokens
            ):
                return error_response(
                    401,
                    "unauthorized",
                    "missing or invalid bearer token",
                    {"WWW-Authenticate": "Bearer"},
                )
        return None

    async def _app_within_limit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, cut off from the body once it passes the limit (a route may choose its
        own through the scope); then a 413 is sent in place of whatever the app answered."""
        limit = StreamedBody(scope, receive, send, self.limit)
        scope[SCOPE_KEY] = limit
        try:
            await self.app(scope, limit.receive, limit.send)
        except BodyTooLarge:
            if limit.started:
                raise
        if limit.exceeded is not None and not limit.started:
            exc = limit.exceeded
            # the rest of the body is never read: close the connection rather than drain it
            response = error_response(exc.status, exc.code, exc.message, {"Connection": "close"})
            await response(scope, receive, send)


def _fast_get(scope: Scope) -> tuple[str, str, bool] | None:
    """(model, id, members) of a GET for one id whose parts pass validation, else None."""
    if scope["method"] != "GET":
        return None
    members = _MEMBERS.get(scope.get("query_string", b""))
    if members is None:
        return None
    match = _GET_PATH.fullmatch(scope["path"])
    if match is None or not MODEL_NAME.fullmatch(match[1]) or not _ID.fullmatch(match[2]):
        return None
    return match[1], match[2], members


async def _get(state: ServingState, model: str, entity_id: str, members: bool) -> Response:
    """The route's own answer; its ApiError becomes the JSON error FastAPI would send."""
    try:
        return await get_prediction(model, entity_id, state, QUERIES[members])
    except ApiError as exc:
        return api_error_response(exc)
