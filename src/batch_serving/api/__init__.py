"""The lookup API; ``create_app(settings)`` builds it, ``app_from_env()`` from the environment
(``uvicorn 'batch_serving.api:app_from_env' --factory --workers N``)."""

from batch_serving.api.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
