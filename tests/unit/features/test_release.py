"""``release``: one call over many entities equals ``window_features`` entity by entity."""

from __future__ import annotations

import numpy as np
import pytest

from batch_serving.features.compute import window_features
from batch_serving.features.release import History, Releaser
from batch_serving.features.spec import Feature, WindowSpec

MIN = 60_000_000
FEATURES = (
    Feature("n_10m", "amount", "count", 10 * MIN),
    Feature("s_1h", "amount", "sum", 60 * MIN),
    Feature("m_1h", "amount", "mean", 60 * MIN),
    Feature("lo_10m", "amount", "min", 10 * MIN),
    Feature("hi_1h", "amount", "max", 60 * MIN),
    Feature("d_10m", "shop", "distinct_count", 10 * MIN),
)
RELEASER = Releaser(WindowSpec("card", "ts", FEATURES), {"amount": True, "shop": False})


def _case(seed: int, entities: int, age_us: int) -> tuple[np.ndarray, np.ndarray, dict, list]:
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 4, entities)
    bounds = np.concatenate([[0], np.cumsum(per)])
    start = 2**61 + rng.integers(0, 30 * MIN, entities)
    times = np.concatenate(
        [np.sort(s + rng.integers(0, 5 * MIN, n)) for s, n in zip(start, per, strict=True)]
    )
    amounts = [None if rng.random() < 0.1 else float(rng.integers(1, 100)) for _ in times]
    shops = [None if rng.random() < 0.1 else f"s{rng.integers(0, 4)}" for _ in times]
    stored: list[History | None] = []
    for s in start:
        n = int(rng.integers(0, 5))
        if n == 0:
            stored.append(None)
            continue
        past = sorted((s - rng.integers(1, age_us, n)).tolist())
        stored.append(
            (past, [float(rng.integers(1, 100)) for _ in past], [f"s{i % 3}" for i in range(n)])
        )
    return bounds, times, {"amount": amounts, "shop": shops}, stored


def _expected(bounds, times, values, stored, horizon):
    features = {f.name: [] for f in FEATURES}
    histories = []
    for i, history in enumerate(stored):
        a, b = bounds[i], bounds[i + 1]
        old = history or ([], [], [])
        all_times = np.array(list(old[0]) + times[a:b].tolist(), dtype=np.int64)
        order = np.argsort(all_times, kind="stable")
        amount = np.array(list(old[1]) + values["amount"][a:b], dtype=np.float64)[order]
        shop = np.array(list(old[2]) + values["shop"][a:b], dtype=object)[order]
        got = window_features(
            all_times[order], {"amount": amount, "shop": shop}, times[a:b], FEATURES
        )
        for name, column in got.items():
            features[name].append(column)
        keep = all_times[order] > horizon
        raw_amount = np.array(list(old[1]) + values["amount"][a:b], dtype=object)[order]
        histories.append(
            (all_times[order][keep].tolist(), raw_amount[keep].tolist(), shop[keep].tolist())
            if keep.any()
            else None
        )
    return {k: np.concatenate(v) for k, v in features.items()}, histories


@pytest.mark.parametrize(
    ("seed", "spread_us"), [(1, 30 * MIN), (2, 3 * 86_400 * 10**6), (3, 2**61)]
)
def test_release_equals_entity_by_entity(seed: int, spread_us: int) -> None:
    bounds, times, values, stored = _case(seed, 300, spread_us)
    horizon = int(times.min()) - 20 * MIN
    done = RELEASER.release(bounds, times, values, stored, horizon)
    features, histories = _expected(bounds, times, values, stored, horizon)
    for f in FEATURES:
        np.testing.assert_array_equal(done.features[f.name], features[f.name], err_msg=f.name)
        assert done.features[f.name].dtype == features[f.name].dtype
    assert done.histories == histories


def test_release_drops_histories_behind_the_horizon() -> None:
    bounds = np.array([0, 1, 2])
    times = np.array([100 * MIN, 100 * MIN], dtype=np.int64)
    stored: list[History | None] = [([10 * MIN], [5.0], ["a"]), None]
    values = {"amount": [1.0, 2.0], "shop": ["a", "b"]}
    done = RELEASER.release(bounds, times, values, stored, 50 * MIN)
    assert done.histories == [([100 * MIN], [1.0], ["a"]), ([100 * MIN], [2.0], ["b"])]
    assert done.features["n_10m"].tolist() == [0, 0]
    done = RELEASER.release(bounds, times, values, stored, 100 * MIN)
    assert done.histories == [None, None]
