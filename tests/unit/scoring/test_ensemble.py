"""Ensembles: combine() against numpy references, null/NaN rows, and every config error."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from batch_serving.errors import ConfigError
from batch_serving.scoring.ensemble import Ensemble, make_ensemble

MEMBERS = ("champion", "tenure_adj", "recency")


def member_scores(rows: int = 200, seed: int = 11) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(rows) for _ in MEMBERS]


def combined(ensemble: Ensemble, scores: list[np.ndarray]) -> np.ndarray:
    result = ensemble.combine([pa.array(s) for s in scores])
    assert result.type == pa.float64()
    return np.asarray(result.to_numpy(zero_copy_only=False))


def test_mean_is_the_numpy_mean() -> None:
    scores = member_scores()
    got = combined(make_ensemble(MEMBERS, "mean"), scores)
    np.testing.assert_allclose(got, np.mean(np.column_stack(scores), axis=1), rtol=0, atol=1e-15)


def test_weighted_mean_normalizes_the_weights() -> None:
    scores = member_scores()
    got = combined(make_ensemble(MEMBERS, "weighted_mean", weights=[7, 2, 1]), scores)
    expected = np.average(np.column_stack(scores), axis=1, weights=[0.7, 0.2, 0.1])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    scaled = combined(make_ensemble(MEMBERS, "weighted_mean", weights=[0.7, 0.2, 0.1]), scores)
    np.testing.assert_allclose(scaled, got, rtol=0, atol=1e-15)


def test_zero_weight_ignores_that_member() -> None:
    scores = member_scores()
    got = combined(make_ensemble(MEMBERS, "weighted_mean", weights=[1, 0, 3]), scores)
    np.testing.assert_allclose(got, 0.25 * scores[0] + 0.75 * scores[2], rtol=0, atol=1e-15)


def test_max_is_the_rowwise_maximum() -> None:
    scores = member_scores()
    got = combined(make_ensemble(MEMBERS, "max"), scores)
    expected = [max(row) for row in zip(*scores, strict=True)]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.8])
def test_vote_is_the_fraction_of_members_at_or_above_the_threshold(threshold: float) -> None:
    scores = member_scores()
    got = combined(make_ensemble(MEMBERS, "vote", threshold=threshold), scores)
    expected = [sum(s >= threshold for s in row) / 3 for row in zip(*scores, strict=True)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)


def test_vote_counts_a_score_equal_to_the_threshold_as_positive() -> None:
    ensemble = make_ensemble(["a", "b"], "vote", threshold=0.6)
    got = ensemble.combine([pa.array([0.6, 0.59, 0.9]), pa.array([0.1, 0.6, 0.6])])
    assert got.to_pylist() == [0.5, 0.5, 1.0]


@pytest.mark.parametrize(
    "method, weights",
    [("mean", None), ("weighted_mean", [1.0, 0.0]), ("vote", None), ("max", None)],
)
def test_a_null_or_nan_member_score_makes_the_row_null(
    method: str, weights: list[float] | None
) -> None:
    # the second member has weight 0 in weighted_mean: its null still makes the row null
    ensemble = make_ensemble(["a", "b"], method, weights=weights)
    first = pa.array([0.9, float("nan"), 0.2, None], pa.float64())
    second = pa.array([0.8, 0.7, None, 0.4], pa.float64())
    got = ensemble.combine([first, second]).to_pylist()
    assert got[0] is not None
    assert got[1:] == [None, None, None]


def test_combine_accepts_integer_and_float32_scores() -> None:
    ensemble = make_ensemble(["a", "b"], "mean")
    got = ensemble.combine([pa.array([1, None], pa.int64()), pa.array([0.5, 1.0], pa.float32())])
    assert got.type == pa.float64()
    assert got.to_pylist() == [0.75, None]


def test_combine_names_the_members_when_an_array_is_missing() -> None:
    ensemble = make_ensemble(MEMBERS, "mean")
    with pytest.raises(ValueError, match=r"needs 3 score arrays \(champion, tenure_adj, recency\)"):
        ensemble.combine([pa.array([0.1]), pa.array([0.2])])


def test_combine_rejects_arrays_of_different_lengths() -> None:
    ensemble = make_ensemble(["a", "b"], "max")
    with pytest.raises(ValueError, match=r"differ in length: \{'a': 2, 'b': 1\}"):
        ensemble.combine([pa.array([0.1, 0.2]), pa.array([0.2])])


def test_describe_and_pickle() -> None:
    weighted = make_ensemble(["champion", "tenure_adj"], "weighted_mean", weights=[0.7, 0.3])
    assert weighted.describe() == "weighted_mean of champion (0.7), tenure_adj (0.3)"
    vote = make_ensemble(["a", "b"], "vote", threshold=0.4)
    assert vote.describe() == "vote of a, b (votes positive when score >= 0.4)"
    assert pickle.loads(pickle.dumps(weighted)) == weighted
    assert weighted.weights == (0.7, 0.3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"method": "median"},
            "jobs.ensemble.method: unknown method 'median'; "
            "expected one of mean, weighted_mean, vote, max",
        ),
        (
            {"method": "mean", "weights": [0.5, 0.5]},
            "jobs.ensemble.weights: weights are only used by method weighted_mean, not 'mean'",
        ),
        (
            {"method": "weighted_mean"},
            "jobs.ensemble.weights: method weighted_mean needs one weight per member",
        ),
        (
            {"method": "weighted_mean", "weights": [1.0]},
            "jobs.ensemble.weights: 1 weights [1.0] for 2 members ['champion', 'tenure_adj']",
        ),
        (
            {"method": "weighted_mean", "weights": [1.0, -0.5]},
            "jobs.ensemble.weights: weights must be finite and >= 0, got [1.0, -0.5]",
        ),
        (
            {"method": "weighted_mean", "weights": [0, 0.0]},
            "jobs.ensemble.weights: weights must not all be zero, got [0.0, 0.0]",
        ),
        (
            {"method": "weighted_mean", "weights": [1.0, "heavy"]},
            "jobs.ensemble.weights: weights must be numbers, got [1.0, 'heavy']",
        ),
        (
            {"method": "vote", "threshold": float("nan")},
            "jobs.ensemble.threshold: must be a finite number, got nan",
        ),
        (
            {"method": "mean", "members": ["champion"]},
            "jobs.ensemble.members: an ensemble needs at least 2 members, got ['champion']",
        ),
        (
            {"method": "mean", "members": ["champion", "b", "champion"]},
            "jobs.ensemble.members: duplicate member(s) ['champion'] in "
            "['champion', 'b', 'champion']",
        ),
    ],
)
def test_config_errors_name_the_key(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"members": ["champion", "tenure_adj"], "where": "jobs.ensemble", **kwargs}
    with pytest.raises(ConfigError) as caught:
        make_ensemble(**arguments)
    assert str(caught.value) == message
    assert caught.value.exit_code == 2


def test_default_where_is_ensemble() -> None:
    with pytest.raises(ConfigError, match=r"^ensemble\.method: "):
        make_ensemble(["a", "b"], "avg")
