"""The features of events released together, over many entities at once (no pyspark).

The stream's processor releases a bucket's events of many entities per micro-batch. Calling
``compute.window_features`` once per entity costs a few dozen NumPy calls each; instead, every
entity's history and released events are laid end to end, sorted by (entity, time), and each
time is mapped into its entity's own band of one integer line:

    g = entity index * span + (time - entity base)

where each entity's base is below its earliest time by more than the longest window, and
``span`` exceeds every entity's range. Within a band ``g`` keeps the time's order and
distances, so ``g(t) - w = g(t - w)``; between bands it never mixes. One ``window_features``
call over ``g`` is then exactly the per-entity calls (the same function, the same slices).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from batch_serving.features.compute import window_features
from batch_serving.features.spec import WindowSpec

History = tuple[list[Any], ...]  # (times, then one list per aggregated column)
_LIMIT = 2**62  # headroom below int64 for the mapped line


@dataclass(frozen=True)
class Release:
    """The released events' features and each entity's history to keep (None: nothing)."""

    features: dict[str, np.ndarray]
    histories: list[History | None]


@dataclass(frozen=True)
class Releaser:
    """Releases for one spec; ``numeric``: which aggregated columns are numbers (aggregated as
    float64; the others as objects)."""

    spec: WindowSpec
    numeric: Mapping[str, bool]

    def release(
        self,
        bounds: np.ndarray,
        times: np.ndarray,
        values: Mapping[str, list[Any]],
        stored: Sequence[History | None],
        horizon_us: int,
    ) -> Release:
        """``times``/``values``: the released events, sorted by entity then time; entity
        ``i``'s events are ``bounds[i]:bounds[i + 1]``, its stored history ``stored[i]``.
        Histories keep the events after ``horizon_us`` (what a later event's window can still
        reach)."""
        columns = self.spec.columns
        count = len(stored)
        own = np.diff(bounds)
        kept_counts = [len(h[0]) if h else 0 for h in stored]
        segment = np.concatenate(
            [np.repeat(np.arange(count), kept_counts), np.repeat(np.arange(count), own)]
        )
        at = np.concatenate([_ints([t for h in stored if h for t in h[0]]), times])
        raw = {
            c: _objects([v for h in stored if h for v in h[i + 1]] + list(values[c]))
            for i, c in enumerate(columns)
        }
        order = np.lexsort((at, segment))
        segment, at = segment[order], at[order]
        starts = np.searchsorted(segment, np.arange(count), side="left")
        ends = np.append(starts[1:], len(segment))
        base = np.minimum.reduceat(at, starts) - self.spec.longest_us - 1
        offset = at - base[segment]
        span = int(offset.max()) + 1
        if count > 1 and span * count >= _LIMIT:  # extreme time ranges: one entity at a time
            return self._one_by_one(bounds, times, values, stored, horizon_us)
        line = segment * span + offset
        released = np.repeat(np.arange(count), own)
        queries = released * span + (times - base[released])
        sorted_raw = {c: raw[c][order] for c in columns}
        arrays = {
            c: sorted_raw[c].astype(np.float64) if self.numeric[c] else sorted_raw[c]
            for c in columns
        }
        got = window_features(line, arrays, queries, self.spec.features)
        keep = at > horizon_us
        histories: list[History | None] = []
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            mask = keep[a:b]
            if not mask.any():
                histories.append(None)
                continue
            histories.append(
                (at[a:b][mask].tolist(), *(sorted_raw[c][a:b][mask].tolist() for c in columns))
            )
        return Release(got, histories)

    def _one_by_one(
        self,
        bounds: np.ndarray,
        times: np.ndarray,
        values: Mapping[str, list[Any]],
        stored: Sequence[History | None],
        horizon_us: int,
    ) -> Release:
        parts = []
        for i, history in enumerate(stored):
            a, b = int(bounds[i]), int(bounds[i + 1])
            one = {c: list(values[c][a:b]) for c in self.spec.columns}
            parts.append(self.release(np.array([0, b - a]), times[a:b], one, [history], horizon_us))
        return Release(
            {
                f.name: np.concatenate([p.features[f.name] for p in parts])
                for f in self.spec.features
            },
            [h for p in parts for h in p.histories],
        )


def _ints(values: list[Any]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64) if values else np.empty(0, dtype=np.int64)


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
