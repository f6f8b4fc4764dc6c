"""The typed spec of a job's ``windows:`` section, shared by the stream, offline and online.

Times are integers of microseconds since the epoch (UTC) everywhere in ``features``: exact,
independent of any session time zone, and what Spark's ``unix_micros`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

from batch_serving.config.windows import WindowsConfig, duration_us

COUNTS = frozenset({"count", "distinct_count"})


@dataclass(frozen=True)
class Feature:
    """One feature column: ``function`` of ``column`` over the trailing ``window_us``."""

    name: str
    column: str
    function: str
    window_us: int

    @property
    def integral(self) -> bool:
        """Counts are integers (0 over an empty window); the rest are floats (null if empty)."""
        return self.function in COUNTS


@dataclass(frozen=True)
class WindowSpec:
    """What the windows compute: per ``entity``, over ``event_time``, these ``features``."""

    entity: str
    event_time: str
    features: tuple[Feature, ...]
    watermark_us: int = 0
    ttl_us: int = 7 * 86_400_000_000

    @classmethod
    def from_config(cls, cfg: WindowsConfig) -> WindowSpec:
        features = tuple(
            Feature(f"{a.column}_{f}_{w}", a.column, f, duration_us(w))
            for a in cfg.aggregates
            for f in a.functions
            for w in a.windows
        )
        return cls(
            cfg.entity, cfg.event_time, features, duration_us(cfg.watermark), duration_us(cfg.ttl)
        )

    @property
    def columns(self) -> tuple[str, ...]:
        """The aggregated columns, each once, in declaration order."""
        return tuple(dict.fromkeys(f.column for f in self.features))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def longest_us(self) -> int:
        return max(f.window_us for f in self.features)
