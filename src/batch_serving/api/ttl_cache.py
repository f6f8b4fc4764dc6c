"""A bounded LRU with a time-to-live: the live fallback's answer cache (``live_fallback.py``)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any


class TtlCache:
    """Bounded LRU with a time-to-live; used from the event loop only (no lock)."""

    def __init__(self, size: int, ttl_s: float) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._data: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[1]

    def put(self, key: Any, value: Any) -> None:
        self._data[key] = (time.monotonic() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
