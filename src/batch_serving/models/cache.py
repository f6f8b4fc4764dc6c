"""Per-Python-worker model cache.

Python imports a module once per process, so this module's globals live as long as the
(reused) Spark Python worker: a model is loaded at most once per worker per model version.
The cache holds every model a job uses (a multi-model job must not thrash); it is bounded
only to let long-lived workers drop models of finished jobs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MAX_MODELS = 16  # far above the members of one job; older models are released

_CACHE: OrderedDict[str, Any] = OrderedDict()
_LOCK = threading.Lock()


def get_or_load(key: str, loader: Callable[[], Any]) -> tuple[Any, bool]:
    """Return ``(model, loaded_now)``; ``loader`` runs only on a miss."""
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key], False
        model = loader()
        _CACHE[key] = model
        while len(_CACHE) > MAX_MODELS:
            _CACHE.popitem(last=False)
        return model, True


def clear() -> None:
    """Forget every cached model (used by tests of the in-process path)."""
    with _LOCK:
        _CACHE.clear()
