"""The OpenAPI document: readable operation ids for generated clients, and the bearer scheme.

Auth itself is enforced by the ASGI front (``fastpath.py``) for every path under
``PROTECTED``, before any route runs; the schema only declares it, always (whether tokens are
configured is a deployment detail), so ``/docs`` can send a token and generated clients know
which calls need one. The routes stay free of a per-request security dependency.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from batch_serving.api.fastpath import PROTECTED

BEARER = "bearerAuth"

# route function -> operationId (other routes get their function name in camelCase)
OPERATION_IDS = {
    "get_prediction": "getPrediction",
    "batch_get": "batchGetPredictions",
    "list_models": "listModels",
    "health": "health",
}


def operation_id(route: APIRoute) -> str:
    """FastAPI's ``generate_unique_id_function``: ``batch_get`` -> ``batchGetPredictions``."""
    return OPERATION_IDS.get(route.name) or re.sub(r"_(\w)", lambda m: m[1].upper(), route.name)


def declare_bearer_auth(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so the document names the bearer scheme and the routes under it."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from BATCH_SERVING_AUTH_TOKENS(_FILE); required "
                    "when the server has tokens configured.",
                }
            }
            for path, operations in schema.get("paths", {}).items():
                if path.startswith(PROTECTED):
                    for operation in operations.values():
                        operation["security"] = [{BEARER: []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
