"""Helpers for the lookup API's live answers with windowed features (its test and
``bench/live_bench.py``): a model on windowed + snapshot features, a serving root whose feature
snapshot holds every card (with stale window values the online store must override) and whose
predictions hold none, the job file naming the online store, events as the stream writes them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from windows_oracle import WINDOWS

from batch_serving.features.offline import to_micros
from batch_serving.serving.features import FEATURES_DIR
from batch_serving.serving.format import build_table, write_snapshot
from batch_serving.serving.pointer import ServingLayout, write_pointer

JOB = "win_api"
WINDOWED = ["amount_count_10m", "amount_sum_1h", "merchant_distinct_count_30m"]
FEATURES = [*WINDOWED, "credit_limit"]
# what the nightly feature snapshot holds for the windowed columns: never what is served
STALE = {"amount_count_10m": 99, "amount_sum_1h": -1.0, "merchant_distinct_count_30m": 99}


def training_frame(rows: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Features (counts int64, like the windows give them) and a label they decide."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount_count_10m": rng.integers(0, 8, rows).astype(np.int64),
            "amount_sum_1h": rng.random(rows) * 400,
            "merchant_distinct_count_30m": rng.integers(0, 5, rows).astype(np.int64),
            "credit_limit": rng.choice([500.0, 1000.0, 5000.0], rows),
        }
    )
    risk = (
        frame["amount_count_10m"]
        + frame["merchant_distinct_count_30m"]
        - frame["credit_limit"] / 2000
    )
    label = (risk + rng.normal(0, 1, rows) > 3).astype(int)
    return frame, label


def fit_model() -> Any:
    from sklearn.linear_model import LogisticRegression

    frame, label = training_frame()
    return LogisticRegression(max_iter=1000).fit(frame[FEATURES], label)


def credit_limits(cards: list[str]) -> dict[str, float]:
    return {card: (500.0, 1000.0, 5000.0)[i % 3] for i, card in enumerate(cards)}


def publish_features(
    root: Path, model: str, version: int, tracking_uri: str, cards: list[str]
) -> str:
    """A serving root for ``model``: predictions of one card (``c-batch``) and a feature
    snapshot of ``cards`` keyed by ``card_id``, laid out as ``publish`` lays them out; returns
    the snapshot id."""
    layout = ServingLayout(root)
    snapshot_id = f"2026-12-01_v{version}_win"
    directory = layout.snapshot_dir(model, snapshot_id)
    common = {
        "model": model,
        "model_version": version,
        "model_uri": f"models:/{model}/{version}",
        "run_date": "2026-12-01",
        "run_id": "win",
        "entity_columns": ["card_id"],
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    predictions = pa.table({"card_id": ["c-batch"], "score": [0.5]})
    write_snapshot(
        build_table(predictions, ["card_id"], ["score"]),
        directory,
        {**common, "snapshot_id": snapshot_id},
    )
    limits = credit_limits(cards)
    features = pa.table(
        {
            "card_id": cards,
            "credit_limit": [limits[c] for c in cards],
            **{name: pa.array([value] * len(cards)) for name, value in STALE.items()},
        }
    )
    write_snapshot(
        build_table(features, ["card_id"], ["credit_limit", *STALE]),
        directory / FEATURES_DIR,
        {
            **common,
            "snapshot_id": f"features-{snapshot_id}",
            "tracking_uri": tracking_uri,
            "registry_uri": tracking_uri,
            "positive_label": 1,
            "score_column": "score",
        },
    )
    write_pointer(layout, model, snapshot_id, [])
    return snapshot_id


def job_file(folder: Path, model: str, tracking_uri: str, redis_url: str) -> Path:
    """The job whose ``windows:`` (the oracle's, with ``redis_url``) feed live answers."""
    folder.mkdir(parents=True, exist_ok=True)
    job = {
        "job": JOB,
        "model": {"name": model, "alias": "champion", "tracking_uri": tracking_uri},
        "input": {"path": str(folder / "warehouse")},
        "entity_columns": ["card_id"],
        "output": {"root": str(folder / "out")},
        "windows": {**WINDOWS, "redis_url": redis_url},
    }
    path = folder / f"{JOB}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def events(card: str, seconds_ago: list[float], now: float, seed: int = 0) -> pd.DataFrame:
    """Events of ``card`` at ``now - s`` (whole milliseconds; negative: in the future)."""
    rng = np.random.default_rng(seed)
    stamps = [pd.Timestamp(int((now - s) * 1000), unit="ms") for s in seconds_ago]
    return pd.DataFrame(
        {
            "event_id": np.arange(len(stamps), dtype=np.int64),
            "card_id": card,
            "ts": stamps,
            "amount": rng.integers(1, 400, len(stamps)) / 4.0,
            "merchant": rng.choice(["m1", "m2", "m3", "m4"], len(stamps)).astype(object),
        }
    )


def released(frame: pd.DataFrame) -> pd.DataFrame:
    """Events as the stream hands them to ``OnlineFeatureWriter``: entity, t, columns."""
    return frame.assign(t=to_micros(frame["ts"]))[["card_id", "t", "amount", "merchant"]]


@dataclass(frozen=True)
class Query:
    """A point-in-time query row of ``windows_oracle.brute_force``."""

    card: str
    micros: int

    def frame(self) -> pd.DataFrame:
        ts = pd.Timestamp(self.micros, unit="us")
        return pd.DataFrame({"event_id": [-1], "card_id": [self.card], "ts": [ts]})


def recent_events(cards: list[str], per_card: int, now: float, span_s: float) -> pd.DataFrame:
    """``per_card`` events of every card within the last ``span_s`` seconds (the bench's
    online store), built at once."""
    rng = np.random.default_rng(11)
    n = len(cards) * per_card
    ago = rng.random(n) * span_s
    return pd.DataFrame(
        {
            "card_id": np.repeat(np.asarray(cards, dtype=object), per_card),
            "ts": pd.to_datetime(((now - ago) * 1000).astype(np.int64), unit="ms"),
            "amount": rng.integers(1, 400, n) / 4.0,
            "merchant": rng.choice(["m1", "m2", "m3", "m4"], n).astype(object),
        }
    )
