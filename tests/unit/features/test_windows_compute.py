"""The pure windowed-features function and the offline training set, against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from windows_oracle import brute_force, history, spec

from batch_serving.errors import MissingColumnsError
from batch_serving.features.compute import window_features
from batch_serving.features.offline import feature_mismatches, to_micros, training_set
from batch_serving.features.spec import Feature


def test_training_set_equals_brute_force_over_every_event() -> None:
    events, s = history(), spec()
    built = training_set(events, s)
    expected = brute_force(events, events, s)
    assert len(built) == len(events) == 300
    assert feature_mismatches(built, expected, s, ["event_id"]).empty
    for feature in s.features:  # exact counts and sums, means to 1e-9
        got, want = built[feature.name].to_numpy(float), expected[feature.name].to_numpy(float)
        if feature.function in ("count", "distinct_count", "sum", "min", "max"):
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)
    assert built["amount_count_1h"].max() > 10  # the windows are not trivially empty


def test_arrival_order_does_not_change_any_feature() -> None:
    events, s = history(), spec()
    a = training_set(events, s)
    b = training_set(events.iloc[::-1].reset_index(drop=True), s)
    assert feature_mismatches(a, b, s, ["event_id"]).empty


def test_window_is_open_at_both_ends_and_ties_do_not_see_each_other() -> None:
    f = [Feature("n", "x", "count", 10), Feature("s", "x", "sum", 10)]
    times = np.array([0, 5, 5, 10, 20], dtype=np.int64)
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    got = window_features(times, {"x": x}, np.array([5, 10, 20, 30, 0]), f)
    # t=5: only 0; t=10: (0, 10) holds 5, 5; t=20: (10, 20) empty; t=30: (20, 30) empty
    assert got["n"].tolist() == [1, 2, 0, 0, 0]
    assert got["s"].tolist() == [1.0, 6.0, 0.0, 0.0, 0.0]


def test_empty_windows_give_zero_counts_and_null_means() -> None:
    f = [Feature("m", "x", "mean", 10), Feature("d", "x", "distinct_count", 10)]
    got = window_features(np.array([], dtype=np.int64), {"x": np.array([])}, np.array([3]), f)
    assert np.isnan(got["m"][0]) and got["d"].tolist() == [0]


def test_labelled_rows_get_features_from_the_whole_history() -> None:
    events, s = history(), spec()
    labelled = events.sample(40, random_state=1).assign(label=1)[
        ["event_id", "card_id", "ts", "label"]
    ]
    built = training_set(events, s, labelled)
    assert built["event_id"].tolist() == labelled["event_id"].tolist()
    assert built["label"].tolist() == [1] * 40
    assert feature_mismatches(built, brute_force(events, labelled, s), s, ["event_id"]).empty


def test_mismatch_check_finds_a_changed_count_and_a_missing_row() -> None:
    events, s = history(n=60), spec()
    built = training_set(events, s)
    changed = built.copy()
    changed.loc[3, "amount_count_10m"] += 1
    bad = feature_mismatches(changed.iloc[:-1], built, s, ["event_id"])
    assert sorted(bad["event_id"]) == sorted([built.loc[3, "event_id"], built.iloc[-1]["event_id"]])


def test_missing_history_column_is_named() -> None:
    events, s = history(n=20), spec()
    with pytest.raises(MissingColumnsError, match=r"missing columns \['merchant'\]"):
        training_set(events.drop(columns=["merchant"]), s)


def test_times_with_zones_and_integers_are_the_same_micros() -> None:
    naive = pd.Series(pd.to_datetime(["2026-11-22 08:00:00.000001"]))
    zoned = naive.dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")
    assert to_micros(naive).tolist() == to_micros(zoned).tolist() == [1795334400000001]
    assert to_micros(pd.Series([5], dtype="int64")).tolist() == [5]
