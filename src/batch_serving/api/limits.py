"""Request body limits: how many bytes a request may send, by the kind of body it carries.

An id list (``batchGet``) holds at most ``max_batch`` ids: ``IdListLimit``. Feature rows
(``POST :score``, scoring requests) hold at most ``max_batch`` rows of the model's fields, and a
row of 30 features is far bigger than an id: ``RowLimit`` follows from both (and from
``row_field_bytes``), and its 413 names the rows and fields allowed, not only a byte count.

One place enforces every limit while the body streams in: ``StreamedBody``, the ``receive``
the ASGI front (``fastpath.py``) hands the app. The app's id-list limit holds unless the route
chose its own: a route registered with ``post_with_limit`` picks the limit for its model
before FastAPI reads the body (``choose`` runs after routing, so it knows the path's model; it
may also refuse the request, e.g. 404 for an unknown model, before a byte of body is read).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.types import Message, Receive, Scope, Send

from batch_serving.api.errors import BodyTooLarge, TooManyRows

SCOPE_KEY = "batch_serving.body"
SLACK = 4096  # the JSON around the list: braces, key, other small fields
ID_BYTES = 160  # one id of up to 128 characters, quoted, with its separator
ROW_BYTES = 16  # one row's braces and separator


class BodyLimit(ABC):
    """The most bytes a request body may have, and how its 413 names that limit."""

    @property
    @abstractmethod
    def max_bytes(self) -> int: ...

    @abstractmethod
    def error(self) -> BodyTooLarge:
        """The 413 for a body over ``max_bytes``."""


@dataclass(frozen=True)
class IdListLimit(BodyLimit):
    """``max_ids`` ids of up to 128 characters each."""

    max_ids: int

    @property
    def max_bytes(self) -> int:
        return self.max_ids * ID_BYTES + SLACK

    def error(self) -> BodyTooLarge:
        return BodyTooLarge(self.max_bytes)


@dataclass(frozen=True)
class RowLimit(BodyLimit):
    """``max_rows`` rows of ``fields`` fields (``noun``: what they are to the caller), each
    field given ``field_bytes`` on average for its name, value and punctuation."""

    max_rows: int
    fields: int
    field_bytes: int
    noun: str = "features"

    @property
    def max_bytes(self) -> int:
        return self.max_rows * (self.fields * self.field_bytes + ROW_BYTES) + SLACK

    def describe(self) -> str:
        return f"at most {self.max_rows} rows of {self.fields} {self.noun}"

    def error(self) -> BodyTooLarge:
        return BodyTooLarge(self.max_bytes, self.describe())

    def check_rows(self, count: int) -> None:
        """413 ``too_many_rows`` for a parsed body of more than ``max_rows`` rows."""
        if count > self.max_rows:
            raise TooManyRows(count, self.describe())


class StreamedBody:
    """``receive``/``send`` for the app: refuses a declared ``Content-Length`` over the limit
    at the first read, counts body bytes as they arrive and raises BodyTooLarge past the limit
    (before the bytes reach the app); then holds back the app's own answer (FastAPI turns a
    failed body read into a 400), so the front can answer the 413 in its place."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: BodyLimit) -> None:
        self.limit = limit
        self._declared = _content_length(scope)
        self._receive = receive
        self._send = send
        self._seen = 0
        self._reading = False
        self.exceeded: BodyTooLarge | None = None
        self.started = False

    def choose(self, limit: BodyLimit) -> None:
        """The route's own limit; only before the body is read (later it would come late)."""
        if not self._reading:
            self.limit = limit

    async def receive(self) -> Message:
        if self.exceeded is not None:
            raise self.exceeded
        if not self._reading:
            self._reading = True
            if self._declared is not None and self._declared > self.limit.max_bytes:
                self.exceeded = self.limit.error()
                raise self.exceeded
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self.limit.max_bytes:
                self.exceeded = self.limit.error()
                raise self.exceeded
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded is not None and not self.started:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


LimitChooser = Callable[[Request], Awaitable[BodyLimit | None]]
Endpoint = Callable[..., Coroutine[Any, Any, Response]]


def post_with_limit(
    router: APIRouter, path: str, choose: LimitChooser, **kwargs: Any
) -> Callable[[Endpoint], Endpoint]:
    """Like ``@router.post(path, **kwargs)``, with the body limit ``choose`` picks for the
    request (``None``: the app's id-list limit) in force before FastAPI reads the body."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            route_class_override=_limited_route(choose),
            **kwargs,
        )
        return endpoint

    return register


def _limited_route(choose: LimitChooser) -> type[APIRoute]:
    class LimitedBodyRoute(APIRoute):
        """A route whose handler first lets ``choose`` set the request's body limit."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def limited(request: Request) -> Response:
                limit = await choose(request)
                body: StreamedBody | None = request.scope.get(SCOPE_KEY)
                if limit is not None and body is not None:
                    body.choose(limit)
                return await handler(request)

            return limited

    return LimitedBodyRoute
