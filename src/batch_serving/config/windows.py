"""The ``windows:`` section of a job file: windowed features of an entity's recent events.

Each aggregate is computed, for every event, over the same entity's events strictly before it
within a trailing window ``(t - w, t)``: in the stream (``features.stream``), in the offline
training set (``features.offline``) and by the online store's reader, with one function
(``features.compute``). Kept apart from ``sections.py``; only pydantic here (Airflow loads job
files), so durations and the stream's DDL are read by small parsers of this module.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from batch_serving.config.sections import Frozen

Function = Literal["count", "sum", "mean", "min", "max", "distinct_count"]
NUMERIC_FUNCTIONS = frozenset({"sum", "mean", "min", "max"})
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNIT_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_DDL_COLUMN = re.compile(r"^\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s+([A-Za-z]+)\s*$")
_NUMERIC_DDL = frozenset(
    {"TINYINT", "BYTE", "SMALLINT", "SHORT", "INT", "INTEGER", "BIGINT", "LONG", "FLOAT", "REAL"}
    | {"DOUBLE"}
)


def duration_us(text: str) -> int:
    """``10m`` -> microseconds; units ms, s, m, h, d. Raises ValueError naming the value."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (want e.g. 30s, 10m, 1h, 7d)")
    return int(match.group(1)) * _UNIT_US[match.group(2)]


def _positive(text: str) -> str:
    if duration_us(text) <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return text


def _duration(text: str) -> str:
    duration_us(text)
    return text


Duration = Annotated[str, AfterValidator(_duration)]
PositiveDuration = Annotated[str, AfterValidator(_positive)]


class AggregateConfig(Frozen):
    """Aggregates of one column over trailing windows; each (function, window) is one feature
    column named `<column>_<function>_<window>`, e.g. `amount_sum_10m`."""

    column: str = Field(min_length=1)
    """The event column aggregated (`count` counts its non-null values)."""
    functions: tuple[Function, ...] = Field(min_length=1)
    """Any of `count`, `sum`, `mean`, `min`, `max`, `distinct_count`. Over an empty window
    `count`, `sum` and `distinct_count` are 0, the others null."""
    windows: tuple[PositiveDuration, ...] = Field(min_length=1)
    """Trailing window lengths, e.g. `[10m, 1h, 24h]`: the events in `(t - w, t)`."""

    def feature_names(self) -> list[str]:
        return [f"{self.column}_{f}_{w}" for f in self.functions for w in self.windows]


class WindowsConfig(Frozen):
    """Windowed features of each entity's recent events, point-in-time correct: every event is
    scored with the aggregates of its entity's events strictly before it, in the stream, in
    training sets and online."""

    entity: str = Field(min_length=1)
    """The column whose value identifies the entity (e.g. `card_id`)."""
    event_time: str = Field(min_length=1)
    """The event-time column (a timestamp); with a stream, its `stream.event_time_column`."""
    watermark: Duration = "10m"
    """How late (in event time, behind the newest event seen) an event may arrive. An event
    is scored once the watermark passes it (the features then include every event before it);
    one arriving later than that is dropped and counted (`late_events`), never mixed in."""
    ttl: PositiveDuration = "7d"
    """How long an entity's online features live in the online store after its last event;
    at least the longest window."""
    aggregates: tuple[AggregateConfig, ...] = Field(min_length=1)
    """The aggregates, e.g. `{column: amount, functions: [count, sum], windows: [10m, 1h]}`."""
    redis_url: str | None = None
    """Online store: every micro-batch writes each entity's recent events to this Redis (key
    `bs:<job>:win:<entity>`, expiring `ttl` after its last write), from which
    `features.online.features_as_of` computes its features, and the lookup API's live answers
    read them (`live_window_jobs`); `null`: no online store."""

    @model_validator(mode="after")
    def _names_and_ttl(self) -> WindowsConfig:
        names = self.feature_names()
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"windows.aggregates name a feature twice: {twice}")
        longest = max(self.windows_us())
        if duration_us(self.ttl) < longest:
            raise ValueError(
                f"windows.ttl {self.ttl} is shorter than the longest window "
                f"({self.longest_window()}): online features would expire while still in use"
            )
        return self

    def feature_names(self) -> list[str]:
        """Every feature column, in declaration order."""
        return [n for a in self.aggregates for n in a.feature_names()]

    def windows_us(self) -> list[int]:
        return [duration_us(w) for a in self.aggregates for w in a.windows]

    def longest_window(self) -> str:
        return max((w for a in self.aggregates for w in a.windows), key=duration_us)

    def check_columns(self, ddl: str, event_time_column: str | None) -> None:
        """Against a stream's declared columns (``stream.columns``): the entity, the event
        time and every aggregated column exist, numeric functions get numeric columns, and the
        stream's event time is this one. Raises ValueError naming the key."""
        declared = _ddl_types(ddl)
        if not declared:
            return  # the stream's own check reports an unparseable DDL
        present = sorted(declared)
        for key, column in (
            ("windows.entity", self.entity),
            ("windows.event_time", self.event_time),
        ):
            if column not in declared:
                raise ValueError(f"{key}: unknown column {column!r}; stream.columns: {present}")
        if declared[self.event_time] != "TIMESTAMP":
            raise ValueError(
                f"windows.event_time: column {self.event_time} is "
                f"{declared[self.event_time]}, not TIMESTAMP"
            )
        if event_time_column != self.event_time:
            raise ValueError(
                f"windows.event_time {self.event_time} needs stream.event_time_column "
                f"{self.event_time} (it is {event_time_column}): windows are in event time"
            )
        for i, agg in enumerate(self.aggregates):
            key = f"windows.aggregates.{i}.column"
            if agg.column not in declared:
                raise ValueError(f"{key}: unknown column {agg.column!r}; stream.columns: {present}")
            numeric = sorted(NUMERIC_FUNCTIONS & set(agg.functions))
            if numeric and declared[agg.column] not in _NUMERIC_DDL:
                raise ValueError(
                    f"{key}: {numeric} need a numeric column; {agg.column} is "
                    f"{declared[agg.column]}"
                )
        clash = sorted(set(self.feature_names()) & set(declared))
        if clash:
            raise ValueError(f"windows: feature names {clash} are already event columns")


def _ddl_types(ddl: str) -> dict[str, str]:
    """``"a BIGINT, t TIMESTAMP"`` -> ``{"a": "BIGINT", "t": "TIMESTAMP"}``; {} if any part
    does not parse (``stream.schema.parse_ddl`` then says why)."""
    found: dict[str, str] = {}
    for part in ddl.split(","):
        match = _DDL_COLUMN.match(part)
        if match is None:
            return {}
        found[match.group(1)] = match.group(2).upper()
    return found
