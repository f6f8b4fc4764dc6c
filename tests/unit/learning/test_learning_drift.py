"""The online learner, without Spark: a day's batch is exactly its per-event updates, and
after an abrupt concept drift the learner's prequential AUC recovers while a frozen copy's
does not."""

from __future__ import annotations

import numpy as np
import pytest

from batch_serving.learning.learner import OnlineLearner, prequential
from batch_serving.learning.metrics import roc_auc

FEATURES = tuple(f"f{i}" for i in range(5))
BEFORE = np.array([2.0, -1.5, 1.0, 0.5, 0.0])
AFTER = np.array([-1.0, 1.5, 1.0, -2.0, 1.5])  # abrupt drift: the concept changes at once
DRIFT_AT = 10_000
WINDOW = 1_000


def drifting_stream(seed: int, after: int = 6_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(DRIFT_AT + after, len(FEATURES)))
    logit = np.r_[x[:DRIFT_AT] @ BEFORE, x[DRIFT_AT:] @ AFTER]
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x, y


def events_to_recover(y: np.ndarray, scores: np.ndarray, level: float) -> int | None:
    """Labelled events after the drift until the trailing window's AUC is back within 0.02
    of ``level`` (None: never, in this stream)."""
    for end in range(WINDOW, len(y) + 1, 100):
        if roc_auc(y[end - WINDOW : end], scores[end - WINDOW : end]) >= level - 0.02:
            return end
    return None


def test_a_days_batch_is_exactly_its_per_event_updates() -> None:
    x, y = drifting_stream(0, after=0)
    batch, events = OnlineLearner(FEATURES), OnlineLearner(FEATURES)
    batch.learn(x[:100], y[:100])  # the scaler is fixed by the first batch: same for both
    events.learn(x[:100], y[:100])
    batch.learn(x[100:3000], y[100:3000])
    for i in range(100, 3000):
        events.learn(x[i : i + 1], y[i : i + 1])
    assert batch.learned == events.learned == 3000
    np.testing.assert_allclose(batch.model.coef_, events.model.coef_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(batch.model.intercept_, events.model.intercept_, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_after_abrupt_drift_the_learner_recovers_within_5k_events_and_a_frozen_copy_does_not(
    seed: int,
) -> None:
    x, y = drifting_stream(seed)
    learner = OnlineLearner(FEATURES)
    before = prequential(learner, None, x[:DRIFT_AT], y[:DRIFT_AT])
    level = roc_auc(y[DRIFT_AT - 2 * WINDOW : DRIFT_AT], before[-2 * WINDOW :])
    assert level > 0.85  # the pre-drift concept was learned
    frozen = learner.pipeline()
    online = prequential(learner, None, x[DRIFT_AT:], y[DRIFT_AT:])
    fixed = prequential(None, frozen, x[DRIFT_AT:], y[DRIFT_AT:])

    recovered = events_to_recover(y[DRIFT_AT:], online, level)
    assert recovered is not None and recovered <= 5_000, (level, recovered)
    assert events_to_recover(y[DRIFT_AT:], fixed, level) is None
    assert roc_auc(y[DRIFT_AT:], fixed) < level - 0.2  # the frozen model stays wrong
