"""The online store of windowed features on a real redis-server: written batch by batch,
read with ``features_as_of``, equal to the brute-force recomputation at the same time."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from windows_oracle import brute_force, history, spec

from batch_serving.errors import ServingStoreError
from batch_serving.features.offline import to_micros
from batch_serving.features.online import OnlineFeatureWriter, connect, features_as_of

PREFIX = "bs:test_online:win"


def clear(client: Any) -> None:
    """Only this module's keys: the session's redis-server is shared with other tests."""
    for key in client.scan_iter(f"{PREFIX}:*"):
        client.delete(key)


def released(events: pd.DataFrame) -> pd.DataFrame:
    """Events as the stream hands them to the writer: entity, t (microseconds), columns."""
    return events.assign(t=to_micros(events["ts"]))[["card_id", "t", "amount", "merchant"]]


def at(card: str, micros: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"event_id": [-1], "card_id": [card], "ts": [pd.Timestamp(micros, unit="us")]}
    )


def test_online_features_equal_brute_force_after_every_batch(redis_url: str) -> None:
    s, client = spec(), connect(redis_url)
    clear(client)
    events = history(n=200).sort_values("ts", kind="stable")
    writer = OnlineFeatureWriter(client, PREFIX, s)
    for batch_id, part in enumerate([events.iloc[:70], events.iloc[70:150], events.iloc[150:]]):
        assert writer.write(batch_id, released(part)) == part["card_id"].nunique()
        seen = events.iloc[: (70, 150, 200)[batch_id]]
        for card in seen["card_id"].unique():
            newest = int(to_micros(seen.loc[seen["card_id"] == card, "ts"]).max())
            for as_of in (newest, newest + 1, newest + 20 * 60_000_000):
                got = features_as_of(client, PREFIX, s, card, as_of)
                want = brute_force(seen, at(card, as_of), s).iloc[0]
                for name in s.names:
                    if pd.isna(want[name]):
                        assert got[name] is None, name  # null, not NaN
                    else:
                        assert got[name] == pytest.approx(want[name], rel=1e-9), name
    ttl_ms = client.pttl(f"{PREFIX}:c1")
    assert 0 < ttl_ms <= s.ttl_us // 1000


def test_a_replayed_batch_changes_nothing_and_old_times_are_refused(redis_url: str) -> None:
    s, client = spec(), connect(redis_url)
    clear(client)
    events = history(n=50).sort_values("ts", kind="stable")
    writer = OnlineFeatureWriter(client, PREFIX, s)
    writer.write(0, released(events.iloc[:30]))
    writer.write(1, released(events.iloc[30:]))
    before = {k: client.get(k) for k in client.keys(f"{PREFIX}:*")}
    assert writer.write(1, released(events.iloc[30:])) == 0  # replayed after a restart
    assert writer.write(0, released(events.iloc[:30])) == 0
    assert {k: client.get(k) for k in client.keys(f"{PREFIX}:*")} == before
    newest = int(to_micros(events.loc[events["card_id"] == "c1", "ts"]).max())
    with pytest.raises(ServingStoreError, match=r"card_id=c1: as of .* is before its newest"):
        features_as_of(client, PREFIX, s, "c1", newest - 1)
    empty = features_as_of(client, PREFIX, s, "nobody", newest)
    assert empty["amount_count_1h"] == 0 and empty["amount_mean_1h"] is None


def test_unreachable_redis_names_the_url() -> None:
    url = "redis://127.0.0.1:1/0"
    with pytest.raises(
        ServingStoreError, match=r"Redis at redis://127\.0\.0\.1:1/0 is unreachable"
    ):
        connect(url)
