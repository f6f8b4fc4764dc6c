"""The stream's stateful processor (``transformWithStateInPandas``): per entity, it holds the
events not yet scored (``pending``) and the recent ones (``history``), and releases each event
with its windowed features once the watermark has passed it.

Why wait for the watermark: an event's features are over *every* event before it. An event
at ``t`` arriving after a later event was scored would change that event's features after the
fact; so an event is scored only when the watermark says no earlier event can still come
(Spark drops, and counts as ``numRowsDroppedByWatermark``, any that comes later). Released
events are scored in event-time order with ``compute.frame_features`` over the history plus
the released events, exactly what ``offline.training_set`` computes for them. The cost: an
event is scored a watermark's delay after it happened.

Times are int64 microseconds (``windows_event_us``); other timestamp/date columns ride through the
state as integers (``stream.encode``/``decode``), so no session time zone ever touches them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle
from pyspark.sql.streaming.stateful_processor import ExpiredTimerInfo, TimerValues
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DoubleType,
    FloatType,
    IntegralType,
    LongType,
    StructField,
    StructType,
)

from batch_serving.features.compute import frame_features
from batch_serving.features.spec import WindowSpec

TIME_US = "windows_event_us"  # no leading underscore: Spark renames those


class WindowProcessor(StatefulProcessor):
    """Buffers an entity's events until the watermark passes them, then emits them in event
    order with their features (``pending`` columns + one column per feature)."""

    def __init__(self, spec: WindowSpec, pending: StructType, inputs: list[str]) -> None:
        self.spec = spec
        self.inputs = inputs  # the input frames' columns, by position
        self.pending_schema = pending
        self.history_schema = StructType([pending[TIME_US], *(pending[c] for c in spec.columns)])

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.pending = handle.getListState("pending", self.pending_schema)
        self.history = handle.getListState("history", self.history_schema)

    def handleInputRows(
        self, key: Any, rows: Iterable[pd.DataFrame], timerValues: TimerValues
    ) -> Iterator[pd.DataFrame]:
        """New events wait in ``pending``; a timer at each one's time releases it. An event
        without an entity or an event time has no window: it goes on at once, its features
        null (a malformed line is quarantined downstream as always)."""
        names = self.pending_schema.fieldNames()
        unwindowed = []
        for frame in rows:
            if frame.empty:
                continue
            frame = frame.set_axis(self.inputs, axis=1)[names]
            no_time = frame[TIME_US].isna() | bool(pd.isna(key[0]))
            if no_time.any():
                unwindowed.append(self._with_null_features(frame[no_time]))
            timed = frame[~no_time]
            if timed.empty:
                continue
            self.pending.appendList(state_rows(timed, self.pending_schema))
            for ms in np.unique(-(-timed[TIME_US].to_numpy(dtype=np.int64) // 1000)):
                self.handle.registerTimer(int(ms))
        return iter(unwindowed)

    def handleExpiredTimer(
        self, key: Any, timerValues: TimerValues, expiredTimerInfo: ExpiredTimerInfo
    ) -> Iterator[pd.DataFrame]:
        """Release the pending events at or before the watermark, oldest first."""
        watermark_us = timerValues.getCurrentWatermarkInMs() * 1000
        pending = state_frame(self.pending.get(), self.pending_schema)
        history = state_frame(self.history.get(), self.history_schema)
        released = pending[pending[TIME_US] <= watermark_us]
        self._put(self.pending, pending[pending[TIME_US] > watermark_us], self.pending_schema)
        combined = pd.concat([history, released[history.columns]], ignore_index=True)
        kept = combined[combined[TIME_US] > watermark_us - self.spec.longest_us]
        self._put(self.history, kept, self.history_schema)
        if not kept.empty:  # a last timer empties the history once every event in it is old
            last = int(kept[TIME_US].max()) + self.spec.longest_us
            self.handle.registerTimer(-(-last // 1000))
        if released.empty:
            return iter(())
        released = released.sort_values(TIME_US, kind="stable")
        features = frame_features(
            combined, released[TIME_US].to_numpy(dtype=np.int64), self.spec, TIME_US
        )
        return iter([released.reset_index(drop=True).assign(**features)])

    def close(self) -> None:
        """Nothing to release: the state store persists the state."""

    def _with_null_features(self, frame: pd.DataFrame) -> pd.DataFrame:
        nulls = {
            f.name: pd.Series([None] * len(frame), dtype="Int64" if f.integral else "float64")
            for f in self.spec.features
        }
        return frame.reset_index(drop=True).assign(**nulls)

    @staticmethod
    def _put(state: Any, frame: pd.DataFrame, schema: StructType) -> None:
        if frame.empty:
            state.clear()
        else:
            state.put(state_rows(frame, schema))


def output_schema(pending: StructType, spec: WindowSpec) -> StructType:
    """The processor's rows: the pending columns, then one per feature."""
    features = [
        StructField(f.name, LongType() if f.integral else DoubleType()) for f in spec.features
    ]
    return StructType([*pending.fields, *features])


def state_rows(frame: pd.DataFrame, schema: StructType) -> list[tuple[Any, ...]]:
    """Rows as the state store takes them: Python values of each field's type, None for null."""
    columns = [_python(frame[f.name].tolist(), f.dataType) for f in schema.fields]
    return list(zip(*columns, strict=True)) if columns else []


def state_frame(rows: Iterable[tuple[Any, ...]], schema: StructType) -> pd.DataFrame:
    """State rows as a frame with a nullable dtype per field (integers stay integers)."""
    listed = list(rows)
    return pd.DataFrame(
        {
            f.name: pd.Series([r[i] for r in listed], dtype=_dtype(f.dataType))
            for i, f in enumerate(schema.fields)
        }
    )


def _python(values: list[Any], kind: DataType) -> list[Any]:
    if isinstance(kind, IntegralType):
        return [None if pd.isna(v) else int(v) for v in values]
    if isinstance(kind, DoubleType | FloatType):
        return [None if pd.isna(v) else float(v) for v in values]
    if isinstance(kind, BooleanType):
        return [None if pd.isna(v) else bool(v) for v in values]
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values]


def _dtype(kind: DataType) -> str:
    if isinstance(kind, LongType):
        return "Int64"
    if isinstance(kind, IntegralType):
        return "Int32"
    if isinstance(kind, DoubleType | FloatType):
        return "float64"
    return "boolean" if isinstance(kind, BooleanType) else "object"
