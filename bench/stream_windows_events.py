"""What the windowed-stream benchmark produces: fraud-like card events, and a paced producer
that stamps each event's ``ts`` into its JSON as it sends it (latency counts from that)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from batch_serving.kafka_roundtrip import PacedProducer

KEY = "event_id"


class Events:
    """Fraud-like events: uniform cards, log-normal amounts, 50 merchants; ids only grow."""

    def __init__(self, cards: int, seed: int = 7) -> None:
        self.cards, self.rng = cards, np.random.default_rng(seed)
        self.next_id = 0
        self.frames: list[pd.DataFrame] = []

    def take(self, count: int) -> pd.DataFrame:
        ids = np.arange(self.next_id, self.next_id + count, dtype=np.int64)
        self.next_id += count
        frame = pd.DataFrame(
            {
                KEY: ids,
                "card_id": self.rng.integers(0, self.cards, count),
                "amount": np.round(self.rng.lognormal(3.5, 1.0, count), 2),
                "merchant": [f"m{m}" for m in self.rng.integers(0, 50, count)],
            }
        )
        self.frames.append(frame)
        return frame

    def produced(self, stamps_ms: dict[int, int]) -> pd.DataFrame:
        """Every event taken, with the ``ts`` it was produced with."""
        frame = pd.concat(self.frames, ignore_index=True)
        ms = frame[KEY].map(stamps_ms)
        frame = frame[ms.notna()].copy()
        frame["ts"] = pd.to_datetime(ms[ms.notna()].astype("int64"), unit="ms")
        return frame


class StampedProducer(PacedProducer):
    """Produces ``events`` at ``rate`` per second (event ``i`` due ``i / rate`` s after the
    start); each event's ``ts`` is written into its JSON just before it is produced."""

    def __init__(self, bootstrap: str, topic: str, events: pd.DataFrame, rate: float) -> None:
        records = events.to_json(orient="records", lines=True).splitlines()
        heads = [r[:-1] + ',"ts":"' for r in records]  # the JSON without its closing brace
        keys = events["card_id"].astype(str).tolist()
        super().__init__(bootstrap, topic, list(zip(keys, heads, strict=True)), rate)
        self.ids = events[KEY].to_numpy()
        self.sent_ms = np.zeros(len(records), dtype=np.int64)

    def stamps_ms(self) -> dict[int, int]:
        sent = self.sent_ms > 0
        return dict(zip(self.ids[sent].tolist(), self.sent_ms[sent].tolist(), strict=True))

    def _message(self, i: int, now: float) -> tuple[str, str, int]:
        ms = int(now * 1000)
        self.sent_at[i], self.sent_ms[i] = ms / 1000, ms  # latency counts from it
        stamp = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        key, head = self.messages[i]
        return key, f'{head}{stamp}.{ms % 1000:03d}Z"}}', ms
