"""Test helper: a generated history landed as JSON files in arrival order, with events that
arrive out of order within the watermark and events far behind it (late)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from windows_oracle import START, history

COLUMNS = "event_id BIGINT, card_id STRING, ts TIMESTAMP, amount DOUBLE, merchant STRING"
FLUSH_CARD = "c9"


@dataclass(frozen=True)
class Landed:
    accepted: pd.DataFrame  # every event the stream must take (flush events excluded)
    late: pd.DataFrame  # events far behind the watermark: dropped and counted
    files: list[Path]


def land(directory: Path, n: int = 240, seed: int = 11) -> Landed:
    """Files 0-2 hold minutes [0, 40), [40, 80), [80, 120) shuffled; the last 4 minutes of a
    range arrive one file later (behind the newest event, inside a 5m watermark); file 2 also
    brings 12 events of minutes [10, 30) (far behind: late). Two events of another card two
    hours on move the watermark past everything, so every accepted event is released."""
    events = history(n=n, seed=seed, minutes=120)
    minute = (events["ts"] - START) / pd.Timedelta(minutes=1)
    file_of = np.minimum(minute // 40, 2).astype(int)
    for k in (0, 1):
        shifted = (minute >= 40 * (k + 1) - 4) & (minute < 40 * (k + 1))
        file_of[shifted] = k + 1
    rng = np.random.default_rng(seed)
    late = pd.DataFrame(
        {
            "event_id": np.arange(10_000, 10_012, dtype=np.int64),
            "card_id": rng.choice(["c1", "c2", "c3", "c4"], 12),
            "ts": START + pd.to_timedelta(rng.integers(600, 1800, 12), unit="s"),
            "amount": rng.integers(1, 400, 12) / 4.0,
            "merchant": rng.choice(["m1", "m2"], 12).astype(object),
        }
    )
    batches = [events[file_of == k] for k in range(3)]
    batches[2] = pd.concat([batches[2], late]).sample(frac=1.0, random_state=seed)
    flush = pd.DataFrame(
        {
            "event_id": [20_000, 20_001],
            "card_id": [FLUSH_CARD] * 2,
            "ts": [START + pd.Timedelta(hours=4), START + pd.Timedelta(hours=4, seconds=1)],
            "amount": [1.0, 1.0],
            "merchant": ["m1", "m1"],
        }
    )
    batches += [flush.iloc[:1], flush.iloc[1:]]
    directory.mkdir(parents=True, exist_ok=True)
    files = [write_json(directory / f"part-{i:03d}.json", b, i) for i, b in enumerate(batches)]
    return Landed(events, late, files)


def write_json(path: Path, frame: pd.DataFrame, order: int) -> Path:
    """One JSON object per line (times in UTC with a Z, nulls as null); modification times in
    landing order, which is the order Spark's file source takes them in."""
    lines = []
    for row in frame.to_dict("records"):
        row["ts"] = row["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines.append(json.dumps({k: (None if v is None or v != v else v) for k, v in row.items()}))
    path.write_text("\n".join(lines) + "\n")
    stamp = 1_700_000_000 + order * 10
    os.utime(path, (stamp, stamp))
    return path
