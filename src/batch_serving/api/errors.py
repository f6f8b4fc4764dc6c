"""API errors: one exception carrying status and code, one JSON shape for every error answer.

Every error the API gives, from a route, FastAPI's validation, the router or the middleware, is
``{"error": {"code": ..., "message": ...}}`` with a proper HTTP status (never 200).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An expected failure of a request; ``code`` is the stable machine-readable name."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class BodyTooLarge(ApiError):
    """The request body is over the byte limit, declared in Content-Length or counted as it
    streams in; ``allowed`` says what fits in it (``at most 1000 rows of 30 features``)."""

    def __init__(self, limit: int, allowed: str | None = None) -> None:
        message = f"request body over {limit} bytes" + (f" ({allowed})" if allowed else "")
        super().__init__(413, "body_too_large", message)


class TooManyRows(ApiError):
    """A body of feature rows holds more rows than one request may."""

    def __init__(self, count: int, allowed: str) -> None:
        super().__init__(413, "too_many_rows", f"{count} rows posted ({allowed})")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def api_error_response(exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message)


def install_handlers(app: FastAPI) -> None:
    """Map ApiError, validation and router errors onto the one error shape."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return api_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        not_json = _json_problem(exc)
        if not_json is not None:
            return error_response(422, "invalid_json", not_json)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        return error_response(422, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))


def _json_problem(exc: RequestValidationError) -> str | None:
    """What is wrong with a body that is not JSON at all, where the parser stopped (FastAPI
    says only ``body.26: JSON decode error``); None for any other validation error."""
    errors = exc.errors()
    if len(errors) != 1 or errors[0]["type"] != "json_invalid":
        return None
    error = errors[0]
    reason = error.get("ctx", {}).get("error", "malformed")
    position, text = error["loc"][-1], exc.body
    if not isinstance(position, int) or not isinstance(text, str):
        return f"request body is not valid JSON: {reason}"
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return f"request body is not valid JSON: {reason} at line {line} column {column}"
