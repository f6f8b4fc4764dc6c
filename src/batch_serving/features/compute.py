"""THE function of windowed features: an entity's aggregates as of just before each query time.

For a query time ``t`` and a window ``w`` the aggregate covers the entity's events with time in
``(t - w, t)``: strictly before ``t`` (an event never sees itself, nor others at the same
instant), strictly after ``t - w``. The stream's processor, the offline training-set builder and
the online reader all call ``window_features``; a feature therefore depends only on the set of
events before ``t``, never on the order they arrived in.

Over an empty window ``count``/``distinct_count`` are 0 and ``sum`` is 0.0; ``mean``, ``min`` and
``max`` are NaN (null). Nulls of the column are skipped by every function (``count`` counts the
non-null values, as SQL's ``COUNT(col)`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from batch_serving.features.spec import Feature, WindowSpec

Values = np.ndarray  # float64 (NaN for null) or object (None for null)


def window_features(
    times: np.ndarray,
    values: Mapping[str, Values],
    queries: np.ndarray,
    features: Sequence[Feature],
) -> dict[str, np.ndarray]:
    """Each feature at each query time, from one entity's history.

    ``times``: the history's event times (int64 microseconds), sorted ascending; ``values``:
    each aggregated column's values aligned with ``times``; ``queries``: int64 microseconds, in
    any order. Returns ``{feature name: array aligned with queries}`` (int64 for counts,
    float64 otherwise)."""
    times = np.asarray(times, dtype=np.int64)
    queries = np.asarray(queries, dtype=np.int64)
    hi = np.searchsorted(times, queries, side="left")  # first event at or after t: excluded
    out: dict[str, np.ndarray] = {}
    for feature in features:
        lo = np.searchsorted(times, queries - feature.window_us, side="right")  # > t - w
        column = values[feature.column]
        out[feature.name] = _over_slices(feature.function, column, lo, hi)
    return out


def frame_features(
    history: pd.DataFrame, queries: np.ndarray, spec: WindowSpec, time_column: str
) -> dict[str, np.ndarray]:
    """``window_features`` over a pandas history of one entity (any row order): its
    ``time_column`` (int64 microseconds) and the aggregated columns."""
    order = np.argsort(history[time_column].to_numpy(dtype=np.int64), kind="stable")
    ordered = history.iloc[order]
    values = {c: column_values(ordered[c]) for c in spec.columns}
    return window_features(
        ordered[time_column].to_numpy(dtype=np.int64), values, queries, spec.features
    )


def column_values(series: pd.Series) -> Values:
    """A column as ``window_features`` takes it: numbers (and booleans) as float64 with NaN
    for null, anything else as objects with None for null."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    array: np.ndarray = series.astype(object).to_numpy(copy=True)
    array[np.asarray(pd.isna(array), dtype=bool)] = None
    return array


def _over_slices(function: str, column: Values, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    valid = _valid(column)
    if function == "count":
        seen = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)])
        return np.where(hi > lo, seen[np.maximum(hi, lo)] - seen[lo], 0).astype(np.int64)
    aggregate = _AGGREGATES[function]
    kept = [column[a:b][valid[a:b]] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
    integral = function == "distinct_count"
    return np.array([aggregate(k) for k in kept], dtype=np.int64 if integral else np.float64)


def _valid(column: Values) -> np.ndarray:
    if column.dtype == np.float64:
        return ~np.isnan(column)
    return np.array([v is not None for v in column], dtype=bool)


def _float_or_nan(reduce: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], float]:
    def aggregate(kept: np.ndarray) -> float:
        return float(reduce(kept)) if len(kept) else float("nan")

    return aggregate


_AGGREGATES: dict[str, Callable[[np.ndarray], float | int]] = {
    "sum": lambda kept: float(np.sum(kept)) if len(kept) else 0.0,
    "mean": _float_or_nan(np.mean),
    "min": _float_or_nan(np.min),
    "max": _float_or_nan(np.max),
    "distinct_count": lambda kept: len(set(kept.tolist())),
}
