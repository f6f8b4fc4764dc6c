"""The fraud demo's transactions: a burst added where and how it is asked, the live timeline
ending before the clock, the burst card clean apart from its burst."""

from __future__ import annotations

import pandas as pd

from batch_serving.features.fraud_example import transactions, with_burst
from batch_serving.fraud_demo import live_transactions, messages


def test_with_burst_adds_fraud_at_unused_merchants_before_its_end() -> None:
    frame = transactions(cards=5, days=0.5, seed=3)
    end = pd.Timestamp("2026-11-20 06:00:00")
    out = with_burst(frame, "card0002", end, size=7, span_s=120, seed=1)
    burst = out[out["is_fraud"] == 1].loc[lambda f: f["card_id"] == "card0002"]
    added = len(out) - len(frame)
    assert added == 7 and len(burst) >= 7
    newest = burst.nlargest(7, "ts")
    assert newest["ts"].between(end - pd.Timedelta(seconds=120), end).all()
    own = set(frame.loc[frame["card_id"] == "card0002", "merchant"])
    assert own.isdisjoint(newest["merchant"])
    assert out["txn_id"].tolist() == list(range(len(out)))
    assert out["ts"].is_monotonic_increasing


def test_live_transactions_end_before_now_with_one_fresh_burst() -> None:
    now = pd.Timestamp("2026-12-07 12:00:00", tz="UTC")
    events, burst_card, normal_card = live_transactions(now)
    naive = now.tz_localize(None)
    assert events["ts"].max() <= naive - pd.Timedelta(seconds=30)
    assert events["ts"].min() >= naive - pd.Timedelta(hours=2, minutes=2)
    burst = events[events["card_id"] == burst_card]
    assert burst["is_fraud"].sum() == 8  # only the added burst
    fresh = burst[burst["ts"] > naive - pd.Timedelta(minutes=4)]
    assert fresh["is_fraud"].sum() == 8  # the whole burst within the last 3.5 minutes
    assert events.loc[events["card_id"] == normal_card, "is_fraud"].sum() == 0
    key, value = messages(events.tail(1))[0]
    merchant = burst["merchant"].iloc[-1]
    assert key == burst_card and value.endswith(f'"merchant": "{merchant}"}}')
    assert '"ts": "2026-12-07T11:59:' in value and 'Z"' in value
