"""The lookup API; ``create_app(settings)`` builds it."""

from batch_serving.api.app import create_app

__all__ = ["create_app"]
