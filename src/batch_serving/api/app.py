"""Lookup API: precomputed predictions by entity id, from the current published snapshot.

``create_app`` wires the pieces: the state (backend + current snapshots, ``state.py``), the
routes (``routes.py``), the error shape (``errors.py``) and the ASGI front (``fastpath.py``).
Snapshots load at startup and are re-polled every ``poll_interval_s`` by the lifespan.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from batch_serving import __version__
from batch_serving.api.backends import Backend, make_backend
from batch_serving.api.errors import install_handlers
from batch_serving.api.fastpath import FastPath
from batch_serving.api.live_fallback import LiveFallback
from batch_serving.api.openapi import declare_bearer_auth, operation_id
from batch_serving.api.requests import router as requests_router
from batch_serving.api.routes import router
from batch_serving.api.schemas import ErrorResponse
from batch_serving.api.state import ServingState
from batch_serving.config import ServeSettings, load_serve_settings


def create_app(settings: ServeSettings, backend: Backend | None = None) -> FastAPI:
    """The app; ``backend`` defaults to the one ``settings`` names (tests pass their own)."""
    state = ServingState(
        settings=settings,
        backend=backend or make_backend(settings),
        tokens=[t.encode() for t in settings.tokens()],
    )
    app = FastAPI(
        title="batch-serving lookup API",
        version=__version__,
        description="Precomputed batch predictions by entity id. Ids outside the scored "
        "domain return 404; every answer names the model version and run date it comes from.",
        lifespan=_lifespan,
        responses={401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
        generate_unique_id_function=operation_id,
    )
    # what the GET route and batchGet consult on a snapshot miss, and POST :score scores with
    live = settings.live_models or settings.live_window_jobs
    state.fallback = LiveFallback(settings) if live else None
    app.state.serving = state
    install_handlers(app)
    app.add_middleware(FastPath, state=state)
    app.include_router(router)
    app.include_router(requests_router)
    declare_bearer_auth(app)
    return app


def app_from_env() -> FastAPI:
    """The app with settings from ``BATCH_SERVING_*`` only: an import string for uvicorn's
    factory mode, so it can run several worker processes (each builds its own app)::

        rm -rf /run/bs-metrics && mkdir /run/bs-metrics
        PROMETHEUS_MULTIPROC_DIR=/run/bs-metrics \\
            uvicorn 'batch_serving.api:app_from_env' --factory --workers 4 --host 0.0.0.0

    With ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory at start) ``/metrics`` sums the
    counters of all workers, whichever answers; without it each worker reports its own.
    """
    return create_app(load_serve_settings())


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load before the first request, poll while serving, close the store at shutdown."""
    state: ServingState = app.state.serving
    await state.refresh_logged()
    task = asyncio.create_task(state.poll())
    try:
        yield
    finally:
        task.cancel()
        await state.backend.close()
        if state.fallback is not None:
            await state.fallback.close()
