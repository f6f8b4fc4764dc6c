"""Point-in-time-correct training sets from an event history, and the online == offline check.

For each labelled event (entity, time t) the features are ``compute.window_features`` over the
entity's events strictly before t: the same function the stream's processor calls, so a row
of a training set equals the features the stream scored that event with (over the events the
stream accepted: one it dropped as late is in the history here, so the features of later
events in its windows differ; the stream counts those).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from batch_serving.errors import MissingColumnsError
from batch_serving.features.compute import frame_features
from batch_serving.features.spec import WindowSpec

TIME_US = "_event_us"


def to_micros(times: pd.Series) -> np.ndarray:
    """Timestamps (naive: UTC; aware: any zone) or int64 microseconds -> int64 microseconds
    since the epoch."""
    if pd.api.types.is_integer_dtype(times.dtype):
        return times.to_numpy(dtype=np.int64)
    stamps = pd.to_datetime(times, utc=True)
    micros = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    return np.asarray(micros, dtype=np.int64)


def training_set(
    events: pd.DataFrame, spec: WindowSpec, rows: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``rows`` (default: every event; e.g. the labelled ones, with their label) with one column
    per feature, in ``rows``' order; ``events`` is the whole history the features read.
    Both need the entity and event-time columns; ``events`` the aggregated ones."""
    rows = events if rows is None else rows
    _require(events, [spec.entity, spec.event_time, *spec.columns], "the event history")
    _require(rows, [spec.entity, spec.event_time], "the training rows")
    history = events.assign(**{TIME_US: to_micros(events[spec.event_time])})
    query_us = to_micros(rows[spec.event_time])
    out = {
        n: np.zeros(len(rows), dtype=np.int64 if f.integral else np.float64)
        for n, f in zip(spec.names, spec.features, strict=True)
    }
    by_entity = history.groupby(spec.entity, sort=False, dropna=False).indices
    positions = pd.Series(np.arange(len(rows))).groupby(rows[spec.entity].to_numpy()).indices
    for entity, at in positions.items():
        own = history.iloc[by_entity[entity]] if entity in by_entity else history.iloc[:0]
        computed = frame_features(own, query_us[at], spec, TIME_US)
        for name, values in computed.items():
            out[name][at] = values
    return rows.reset_index(drop=True).assign(**out)


def feature_mismatches(
    served: pd.DataFrame,
    offline: pd.DataFrame,
    spec: WindowSpec,
    keys: Sequence[str],
    tolerance: float = 1e-9,
) -> pd.DataFrame:
    """The rows (joined on ``keys``) whose features differ between what was served and the
    offline recomputation: counts exactly, floats within ``tolerance`` (relative), nulls equal
    to nulls; a row present on one side only is a mismatch too. Empty: online == offline."""
    both = served.merge(
        offline, on=list(keys), how="outer", suffixes=("_served", "_offline"), indicator=True
    )
    bad = both["_merge"] != "both"
    for feature in spec.features:
        a = both[f"{feature.name}_served"].astype("float64").to_numpy()
        b = both[f"{feature.name}_offline"].astype("float64").to_numpy()
        if feature.integral:
            same = a == b
        else:
            same = np.isclose(a, b, rtol=tolerance, atol=tolerance, equal_nan=True)
        bad |= ~same
    return both[bad]


def _require(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise MissingColumnsError(missing, list(frame.columns), where)
