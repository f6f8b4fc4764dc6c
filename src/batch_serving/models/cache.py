"""Bounded caches of loaded models, and the per-Python-worker one.

Python imports a module once per process, so this module's globals live as long as the
(reused) Spark Python worker: a model is loaded at most once per worker per model version.
The cache holds every model a job uses (a multi-model job must not thrash); it is bounded
only to let long-lived workers drop models of finished jobs. The driver keeps its loaded
models and their broadcasts in ``LruCache`` instances of its own (``models.loading``,
``spark.delivery``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

MAX_MODELS = 16  # far above the members of one job; older models are released

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``limit`` values, least recently used dropped first (``on_evict`` told)."""

    def __init__(self, limit: int, on_evict: Callable[[V], None] | None = None) -> None:
        self._limit = limit
        self._on_evict = on_evict
        self._values: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_load(self, key: K, loader: Callable[[], V]) -> tuple[V, bool]:
        """Return ``(value, loaded_now)``; ``loader`` runs only on a miss."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key], False
            value = loader()
            self._values[key] = value
            while len(self._values) > self._limit:
                dropped = self._values.popitem(last=False)[1]
                if self._on_evict is not None:
                    self._on_evict(dropped)
            return value, True

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


_WORKER: LruCache[str, Any] = LruCache(MAX_MODELS)


def get_or_load(key: str, loader: Callable[[], Any]) -> tuple[Any, bool]:
    """This worker's model for ``key``: ``(model, loaded_now)``; ``loader`` runs on a miss."""
    return _WORKER.get_or_load(key, loader)


def clear() -> None:
    """Forget every cached model (used by tests of the in-process path)."""
    _WORKER.clear()
