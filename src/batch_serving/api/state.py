"""What one app serves right now, and how it moves to newer snapshots.

Consistency: every request takes the snapshot handles dict once and answers from that one
snapshot; a swap builds a complete new handle first and then replaces the dict reference
(one assignment), so in-flight requests finish on the old snapshot and new ones see the new one.
The old handle (and its memory map) is released when the last request holding it returns.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

from batch_serving.api.backends import Backend
from batch_serving.api.metrics import Metrics
from batch_serving.config import ServeSettings
from batch_serving.errors import BatchServingError

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    settings: ServeSettings
    backend: Backend
    tokens: list[bytes]
    snapshots: dict[str, Any] = field(default_factory=dict)
    live: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    fallback: Any = None  # api.live.LiveFallback when live scoring is enabled for a model

    def __post_init__(self) -> None:
        self.metrics = Metrics(lambda: self.snapshots, lambda: len(self.live))

    async def refresh(self) -> list[str]:
        """Load snapshots whose pointer moved; swap them in with one assignment."""
        before = self.snapshots
        after = await self.backend.load(before)
        swapped = [m for m, h in after.items() if before.get(m) is not h]
        if swapped:
            self.snapshots = after
            for model in swapped:
                handle = after[model]
                self.live.add(handle)
                self.metrics.swaps.labels(model).inc()
                old = before.get(model)
                log.info(
                    "serving %s snapshot %s (was %s)",
                    model,
                    handle.snapshot_id,
                    old.snapshot_id if old is not None else "none",
                )
                if old is not None:
                    weakref.finalize(
                        old, log.info, "released %s snapshot %s", model, old.snapshot_id
                    )
        return swapped

    async def refresh_logged(self) -> None:
        """A failed poll keeps the previous snapshots in service (logged and counted)."""
        try:
            await self.refresh()
        except BatchServingError as exc:
            self.metrics.refresh_errors.inc()
            log.error("snapshot refresh failed (still serving the previous one): %s", exc)

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            await self.refresh_logged()
