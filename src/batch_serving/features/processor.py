"""The stream's stateful processor (``transformWithStateInPandas``): it holds the events not
yet scored (``pending``) and each entity's recent ones (``history``), and releases each event
with its windowed features once the watermark has passed it.

Why wait for the watermark: an event's features are over *every* event before it. An event
at ``t`` arriving after a later event was scored would change that event's features after the
fact; so an event is scored only when the watermark says no earlier event can still come
(Spark drops, and counts as ``numRowsDroppedByWatermark``, any that comes later). Released
events are scored in event-time order with ``compute.window_features`` over the entity's
history plus the released events, exactly what ``offline.training_set`` computes for them. The
cost: an event is scored a watermark's delay after it happened.

Why buckets: the state is grouped by ``pmod(xxhash64(entity), BUCKETS)``, not by entity. Each
call into Python and each state operation is a round trip to the JVM; per entity, at 2,000
events/s over 100k entities, those round trips were most of the work. Per bucket, one call
takes a micro-batch's events of many entities at once, one list holds their pending events,
one timer releases them; only each released entity's history is one map entry read and
written. ``BUCKETS`` is part of the checkpoint's state layout: it never changes.

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
    ArrayType,
    BooleanType,
    DataType,
    DoubleType,
    FloatType,
    IntegralType,
    LongType,
    StructField,
    StructType,
)

from batch_serving.features.release import Releaser
from batch_serving.features.spec import WindowSpec
from batch_serving.features.state_pipeline import get_values, remove_keys, update_values

TIME_US = "windows_event_us"  # no leading underscore: Spark renames those
BUCKET = "windows_bucket"
BUCKETS = 16
_NUMERIC = (IntegralType, DoubleType, FloatType, BooleanType)  # aggregated as float64


class WindowProcessor(StatefulProcessor):
    """Buffers a bucket's events until the watermark passes them, then emits them in event
    order per entity with their features (``pending`` columns + one column per feature)."""

    def __init__(self, spec: WindowSpec, pending: StructType, inputs: list[str]) -> None:
        self.spec = spec
        self.inputs = inputs  # the input frames' columns, by position
        self.pending_schema = pending
        chunked = [StructField(f.name, ArrayType(f.dataType)) for f in pending]
        self.chunk_schema = StructType(chunked)
        self.key_schema = StructType([StructField(spec.entity, pending[spec.entity].dataType)])
        self.kinds = {c: pending[c].dataType for c in spec.columns}
        self.releaser = Releaser(spec, {c: isinstance(k, _NUMERIC) for c, k in self.kinds.items()})
        self.history_schema = StructType(
            [
                StructField(TIME_US, ArrayType(LongType())),
                *(StructField(c, ArrayType(pending[c].dataType)) for c in spec.columns),
            ]
        )

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.pending = handle.getListState("pending", self.chunk_schema)
        self.history = handle.getMapState("history", self.key_schema, self.history_schema)
        self.swept = handle.getValueState("next_sweep", StructType([StructField("us", LongType())]))

    def handleInputRows(
        self, key: Any, rows: Iterable[pd.DataFrame], timerValues: TimerValues
    ) -> Iterator[pd.DataFrame]:
        """New events wait in ``pending``; a timer at the earliest releases them. An event
        without an entity or an event time has no window: it goes on at once, its features
        null (a malformed line is quarantined downstream as always)."""
        frames = [f for f in rows if not f.empty]
        if not frames:
            return iter(())
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        frame = frame.set_axis(self.inputs, axis=1)[self.pending_schema.fieldNames()]
        no_window = frame[TIME_US].isna() | frame[self.spec.entity].isna()
        out = [self._with_null_features(frame[no_window])] if no_window.any() else []
        timed = frame[~no_window]
        if not timed.empty:
            self.pending.appendList([chunk(timed, self.pending_schema)])
            self.handle.registerTimer(_ceil_ms(int(timed[TIME_US].min())))
        return iter(out)

    def handleExpiredTimer(
        self, key: Any, timerValues: TimerValues, expiredTimerInfo: ExpiredTimerInfo
    ) -> Iterator[pd.DataFrame]:
        """Release the pending events at or before the watermark; a timer at the earliest
        of the others."""
        watermark_us = timerValues.getCurrentWatermarkInMs() * 1000
        pending = chunks_frame(self.pending.get(), self.pending_schema)
        due = (pending[TIME_US] <= watermark_us).to_numpy(dtype=bool)
        waiting = pending[~due]
        if not waiting.empty:
            self.handle.registerTimer(_ceil_ms(int(waiting[TIME_US].min())))
        out = []
        if due.any():
            if waiting.empty:
                self.pending.clear()
            else:
                self.pending.put([chunk(waiting, self.pending_schema)])
            released = pending[due].sort_values([self.spec.entity, TIME_US], kind="stable")
            released = released.reset_index(drop=True)
            out.append(released.assign(**self._release(released, watermark_us)))
        self._sweep(watermark_us)  # after the release: what it released needed older events
        return iter(out)

    def close(self) -> None:
        """Nothing to release: the state store persists the state."""

    def _release(self, released: pd.DataFrame, watermark_us: int) -> dict[str, np.ndarray]:
        """Each released event's features (rows sorted by entity, then time), each entity's
        history read once and written back without what no later event can see: the
        histories of the whole release in one exchange each way (``state_pipeline``)."""
        spec = self.spec
        entities = _python(released[spec.entity].tolist(), self.key_schema[0].dataType)
        starts = [0, *(i for i in range(1, len(entities)) if entities[i] != entities[i - 1])]
        keys = [(entities[a],) for a in starts]
        done = self.releaser.release(
            np.array([*starts, len(entities)]),
            released[TIME_US].to_numpy(dtype=np.int64),
            {c: _python(released[c].tolist(), self.kinds[c]) for c in spec.columns},
            stored := get_values(self.history, keys),
            watermark_us - spec.longest_us,
        )
        after = list(zip(keys, stored, done.histories, strict=True))
        update_values(self.history, [(k, new) for k, _, new in after if new is not None])
        remove_keys(self.history, [k for k, old, new in after if new is None and old is not None])
        return done.features

    def _sweep(self, watermark_us: int) -> None:
        """Once per longest window of event time, drop the histories no later event can see
        (entities idle since): the state holds the entities of about two longest windows.
        (Spark's state TTL is processing time, refused with event-time timers.)"""
        due = self.swept.get()
        if due is not None and watermark_us < due[0]:
            return
        if due is not None:
            horizon = watermark_us - self.spec.longest_us
            stale = [k for k, v in self.history.iterator() if not v[0] or max(v[0]) <= horizon]
            remove_keys(self.history, stale)
        at = watermark_us + self.spec.longest_us
        self.swept.update((at,))
        self.handle.registerTimer(_ceil_ms(at))

    def _with_null_features(self, frame: pd.DataFrame) -> pd.DataFrame:
        nulls = {
            f.name: pd.Series([None] * len(frame), dtype="Int64" if f.integral else "float64")
            for f in self.spec.features
        }
        return frame.reset_index(drop=True).assign(**nulls)


def output_schema(pending: StructType, spec: WindowSpec) -> StructType:
    """The processor's rows: the pending columns, then one per feature."""
    features = [
        StructField(f.name, LongType() if f.integral else DoubleType()) for f in spec.features
    ]
    return StructType([*pending.fields, *features])


def chunk(frame: pd.DataFrame, schema: StructType) -> tuple[list[Any], ...]:
    """Events as one state value: a list per column of Python values, None for null (one
    value per micro-batch, not one per event: each value is a serialization each way)."""
    return tuple(_python(frame[f.name].tolist(), f.dataType) for f in schema.fields)


def chunks_frame(chunks: Iterable[tuple[Any, ...]], schema: StructType) -> pd.DataFrame:
    """State chunks as one frame with a nullable dtype per field (integers stay integers)."""
    listed = list(chunks)
    return pd.DataFrame(
        {
            f.name: pd.Series(
                [v for c in listed for v in c[i]], dtype=_dtype(f.dataType), name=f.name
            )
            for i, f in enumerate(schema.fields)
        }
    )


def _ceil_ms(us: int) -> int:
    return -(-us // 1000)


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
