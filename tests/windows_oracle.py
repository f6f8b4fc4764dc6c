"""Test helpers of the windowed features: a generated event history (several entities, ties,
nulls, shuffled arrival) and the brute-force pandas recomputation every test compares with."""

from __future__ import annotations

import numpy as np
import pandas as pd

from batch_serving.config.windows import WindowsConfig
from batch_serving.features.spec import WindowSpec

START = pd.Timestamp("2026-11-22 08:00:00")
WINDOWS = {
    "entity": "card_id",
    "event_time": "ts",
    "watermark": "5m",
    "ttl": "1d",
    "aggregates": [
        {
            "column": "amount",
            "functions": ["count", "sum", "mean", "min", "max"],
            "windows": ["10m", "1h"],
        },
        {"column": "merchant", "functions": ["count", "distinct_count"], "windows": ["30m"]},
    ],
}


def spec() -> WindowSpec:
    return WindowSpec.from_config(WindowsConfig.model_validate(WINDOWS))


def history(n: int = 300, seed: int = 7, minutes: int = 150) -> pd.DataFrame:
    """``n`` events of 4 cards over ``minutes``, in shuffled (arrival) order: whole seconds,
    some exact ties, amounts in quarters (sums are exact in any order), some nulls."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, minutes * 60, n))
    seconds[10:20] = seconds[10]  # a run of ties
    frame = pd.DataFrame(
        {
            "event_id": np.arange(n, dtype=np.int64),
            "card_id": rng.choice(["c1", "c2", "c3", "c4"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "ts": START + pd.to_timedelta(seconds, unit="s"),
            "amount": rng.integers(1, 400, n) / 4.0,
            "merchant": rng.choice(["m1", "m2", "m3", "m4", "m5"], n).astype(object),
        }
    )
    frame.loc[rng.random(n) < 0.05, "amount"] = np.nan
    frame.loc[rng.random(n) < 0.05, "merchant"] = None
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def brute_force(events: pd.DataFrame, rows: pd.DataFrame, spec: WindowSpec) -> pd.DataFrame:
    """For each row: each feature over the same card's events with ts in (t - w, t), by pandas
    masks and reductions, one row at a time."""
    out = rows[["event_id", spec.entity, spec.event_time]].copy()
    for feature in spec.features:
        window = pd.Timedelta(microseconds=feature.window_us)
        values = []
        for _, row in rows.iterrows():
            t = row[spec.event_time]
            mask = (
                (events[spec.entity] == row[spec.entity])
                & (events[spec.event_time] > t - window)
                & (events[spec.event_time] < t)
            )
            picked = events.loc[mask, feature.column]
            values.append(_reduce(feature.function, picked))
        out[feature.name] = values
    return out


def _reduce(function: str, picked: pd.Series) -> float:
    if function == "count":
        return int(picked.notna().sum())
    if function == "distinct_count":
        return int(picked.dropna().nunique())
    if function == "sum":
        return float(picked.sum()) if picked.notna().any() else 0.0
    return float(getattr(picked, function)()) if picked.notna().any() else float("nan")
