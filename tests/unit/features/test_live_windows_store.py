"""The pieces of the lookup API's windowed live answers that need no server: a stored history
read apart from its client gives ``features_as_of``'s answer, its times as exact ISO, the
online store named without its password, a job without an online store refused by name."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from windows_oracle import WINDOWS, brute_force, history, spec

from batch_serving.api.live_features import OnlineWindows, iso
from batch_serving.config import JobConfig
from batch_serving.features.offline import to_micros
from batch_serving.features.online import OnlineFeatureWriter, StoredHistory


class Stored:
    """What ``OnlineFeatureWriter`` writes, kept in a dict (its pipeline's ``set``)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def mget(self, keys: list[str]) -> list[str | None]:
        return [self.values.get(k) for k in keys]

    def pipeline(self, transaction: bool = False) -> Stored:
        return self

    def set(self, key: str, value: str, px: int) -> None:
        self.values[key] = value

    def execute(self) -> None:
        return None


def job(windows: dict[str, object]) -> JobConfig:
    return JobConfig.model_validate(
        {
            "job": "fraud_live",
            "model": {"name": "fraud", "alias": "champion", "tracking_uri": "sqlite:///x.db"},
            "input": {"path": "/tmp/in"},
            "entity_columns": ["card_id"],
            "output": {"root": "/tmp/out"},
            "windows": windows,
        }
    )


def test_a_parsed_history_computes_the_brute_force_features() -> None:
    s, store = spec(), Stored()
    events = history(n=120)
    released = events.assign(t=to_micros(events["ts"]))[["card_id", "t", "amount", "merchant"]]
    OnlineFeatureWriter(store, "p", s).write(0, released)
    raw = store.values["p:c1"]
    parsed = StoredHistory.parse(raw.encode())  # the API's client answers bytes
    own = events[events["card_id"] == "c1"]
    newest = int(to_micros(own["ts"]).max())
    assert parsed.newest == newest == json.loads(raw)["newest"]
    at = newest + 90_000_000
    query = pd.DataFrame({"event_id": [-1], "card_id": ["c1"], "ts": [pd.Timestamp(at, unit="us")]})
    want = brute_force(events, query, s).iloc[0]
    got = parsed.features(s, "c1", at)
    assert got == {n: None if pd.isna(want[n]) else pytest.approx(want[n]) for n in s.names}
    empty = StoredHistory.parse(None)
    assert empty.newest is None
    assert empty.features(s, "x", at)["amount_count_10m"] == 0


def test_times_are_exact_iso_utc() -> None:
    micros = 1_796_000_000_123_457
    assert iso(micros) == pd.Timestamp(micros, unit="us", tz="UTC").isoformat()
    assert iso(micros).endswith(".123457+00:00")
    assert iso(0) == "1970-01-01T00:00:00+00:00"


def test_the_store_is_named_without_its_password() -> None:
    store = OnlineWindows.of(job({**WINDOWS, "redis_url": "redis://user:s3cret@cache:6380/2"}))
    assert store.model == "fraud" and store.prefix == "bs:fraud_live:win"
    assert store.where() == "online feature store (Redis at cache:6380/2, keys bs:fraud_live:win:*)"
    assert "s3cret" not in store.where()


def test_a_job_without_an_online_store_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"job 'fraud_live' has no windows.redis_url"):
        OnlineWindows.of(job(dict(WINDOWS)))
