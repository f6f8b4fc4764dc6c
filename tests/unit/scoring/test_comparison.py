"""Champion vs shadow: partials summarize to what numpy/pandas compute on the full data, and
merging any split of the rows gives the same summary as one partial of all of them."""

from __future__ import annotations

import json
import pickle
from functools import reduce

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batch_serving.scoring.comparison import (
    ComparisonPartial,
    ComparisonSummary,
    labels_from_scores,
    summarize,
)

ACTIONS = np.array(["approve", "review", "decline"], dtype=object)


def scored_frame(rows: int = 600, seed: int = 5, offset: float = 0.0) -> pd.DataFrame:
    """Champion and a noisy shadow; some scores null or NaN, some actions missing on each side."""
    rng = np.random.default_rng(seed)
    x = rng.random(rows)
    y = 0.8 * x + rng.normal(0, 0.15, rows)
    frame = pd.DataFrame({"x": x + offset, "y": y + offset})
    frame["c_act"] = ACTIONS[np.digitize(x, [0.4, 0.7])]
    frame["s_act"] = ACTIONS[np.digitize(y, [0.4, 0.7])]
    frame.loc[rng.random(rows) < 0.05, "y"] = np.nan
    frame.loc[rng.random(rows) < 0.03, "x"] = np.nan
    frame.loc[rng.random(rows) < 0.06, "s_act"] = None
    frame.loc[rng.random(rows) < 0.02, "c_act"] = None
    return frame


def partial_of(frame: pd.DataFrame, null_scores: bool = True) -> ComparisonPartial:
    """Missing scores as Arrow nulls (or as NaN values), actions with Arrow nulls."""
    return ComparisonPartial.of(
        pa.array(frame["x"].to_numpy(), from_pandas=null_scores),
        pa.array(frame["y"].to_numpy(), from_pandas=null_scores),
        pa.array(frame["c_act"].tolist(), pa.string()),
        pa.array(frame["s_act"].tolist(), pa.string()),
    )


def reference_flips(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    table = pd.crosstab(frame["c_act"].fillna("<none>"), frame["s_act"].fillna("<none>"))
    return {str(c): {str(s): int(n) for s, n in row.items() if n} for c, row in table.iterrows()}


@pytest.mark.parametrize("null_scores", [True, False])
def test_one_partial_matches_numpy_and_pandas(null_scores: bool) -> None:
    frame = scored_frame()
    summary = summarize(partial_of(frame, null_scores))
    both = frame[["x", "y"]].dropna()
    assert summary.rows == len(frame)
    assert summary.compared == len(both) < len(frame)
    agreement = (frame["c_act"] == frame["s_act"]).mean()  # None == None is False in pandas
    assert summary.agreement == pytest.approx(agreement, abs=1e-12)
    expected_r = np.corrcoef(both["x"], both["y"])[0, 1]
    assert summary.correlation == pytest.approx(expected_r, abs=1e-12)
    expected_mad = np.mean(np.abs(both["x"] - both["y"]))
    assert summary.mean_abs_diff == pytest.approx(expected_mad, abs=1e-12)
    assert summary.flips == reference_flips(frame)


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_merging_seven_random_splits_equals_one_partial(offset: float) -> None:
    # offset 1e6: raw power sums would cancel to noise here, centered moments must not
    frame = scored_frame(rows=900, seed=8, offset=offset)
    cuts = sorted(np.random.default_rng(1).integers(0, len(frame), 6))
    cuts[2] = cuts[1]  # one empty split: merging with nothing changes nothing
    pieces = np.split(np.arange(len(frame)), cuts)
    assert len(pieces) == 7
    merged = reduce(ComparisonPartial.merge, [partial_of(frame.iloc[p]) for p in pieces])
    whole, split = summarize(partial_of(frame)), summarize(merged)
    assert (split.rows, split.compared, split.flips) == (whole.rows, whole.compared, whole.flips)
    for name in ("agreement", "correlation", "mean_abs_diff"):
        assert getattr(split, name) == pytest.approx(getattr(whole, name), abs=1e-9), name
    both = frame[["x", "y"]].dropna()
    expected_r = np.corrcoef(both["x"], both["y"])[0, 1]
    assert split.correlation == pytest.approx(expected_r, abs=1e-9)


def test_merge_leaves_both_inputs_unchanged() -> None:
    frame = scored_frame(rows=40)
    left, right = partial_of(frame.iloc[:20]), partial_of(frame.iloc[20:])
    before = (pickle.dumps(left), pickle.dumps(right))
    left.merge(right)
    assert (pickle.dumps(left), pickle.dumps(right)) == before


def test_partial_survives_pickling() -> None:
    partial = partial_of(scored_frame(rows=50))
    assert pickle.loads(pickle.dumps(partial)) == partial


def constant_partial(value: float, shadow: list[float]) -> ComparisonPartial:
    labels = pa.array(["a"] * len(shadow))
    return ComparisonPartial.of(pa.array([value] * len(shadow)), pa.array(shadow), labels, labels)


def test_zero_variance_gives_no_correlation_even_after_merging() -> None:
    parts = [constant_partial(0.1, [0.2, 0.9, 0.4]) for _ in range(7)]
    merged = reduce(ComparisonPartial.merge, [ComparisonPartial(), *parts])
    for partial in (parts[0], merged):
        summary = summarize(partial)
        assert summary.correlation is None
        assert summary.mean_abs_diff == pytest.approx((0.1 + 0.8 + 0.3) / 3, abs=1e-12)


def test_tiny_inputs_give_none() -> None:
    empty = summarize(ComparisonPartial())
    assert (empty.rows, empty.compared, empty.flips) == (0, 0, {})
    assert (empty.agreement, empty.correlation, empty.mean_abs_diff) == (None, None, None)
    one = summarize(constant_partial(0.3, [0.5]))
    assert (one.compared, one.correlation) == (1, None)
    assert one.mean_abs_diff == pytest.approx(0.2, abs=1e-12)
    assert one.agreement == 1.0


def test_unscored_rows_count_in_rows_but_not_in_score_statistics() -> None:
    summary = summarize(
        ComparisonPartial.of(
            pa.array([0.1, None, 0.5, float("inf")]),
            pa.array([0.3, 0.4, float("nan"), 0.2]),
            pa.array(["a", "a", "a", "a"]),
            pa.array(["a", "b", None, "a"]),
        )
    )
    assert (summary.rows, summary.compared) == (4, 1)
    assert summary.mean_abs_diff == pytest.approx(0.2, abs=1e-12)
    assert summary.agreement == 0.5
    assert summary.flips == {"a": {"a": 2, "b": 1, "<none>": 1}}


def test_rows_without_both_actions_never_agree() -> None:
    scores = pa.array([0.1, 0.2, 0.3])
    partial = ComparisonPartial.of(
        scores, scores, pa.array([None, "a", "b"], pa.string()), pa.array([None, "a", "a"])
    )
    summary = summarize(partial)
    assert summary.agreement == pytest.approx(1 / 3, abs=1e-15)
    assert summary.flips == {"a": {"a": 1}, "b": {"a": 1}, "<none>": {"<none>": 1}}


def test_a_failed_shadow_shows_as_none_in_the_flips() -> None:
    champion = pa.array([0.9, 0.1, 0.8])
    shadow = pa.array([0.7, None, None], pa.float64())
    partial = ComparisonPartial.of(
        champion, shadow, labels_from_scores(champion), labels_from_scores(shadow)
    )
    assert summarize(partial).flips == {
        "negative": {"<none>": 1},
        "positive": {"positive": 1, "<none>": 1},
    }


def test_of_rejects_misaligned_arrays() -> None:
    with pytest.raises(ValueError, match=r"shadow actions differ in length: \[2, 2, 2, 1\]"):
        ComparisonPartial.of(
            pa.array([0.1, 0.2]), pa.array([0.1, 0.2]), pa.array(["a", "b"]), pa.array(["a"])
        )


def test_labels_from_scores_keeps_nulls() -> None:
    labels = labels_from_scores(pa.array([0.2, 0.5, None, float("nan"), 0.9]), threshold=0.5)
    assert labels.type == pa.string()
    assert labels.to_pylist() == ["negative", "positive", None, None, "positive"]
    assert labels_from_scores(pa.array([0.2, 0.5]), threshold=0.1).to_pylist() == ["positive"] * 2


SMALL = ComparisonSummary(
    rows=10,
    compared=9,
    agreement=0.7,
    correlation=None,
    mean_abs_diff=0.125,
    flips={"approve": {"approve": 5, "review": 1}, "review": {"review": 2, "<none>": 2}},
)


def test_to_dict_has_stable_json_keys() -> None:
    data = SMALL.to_dict()
    assert list(data) == ["rows", "compared", "agreement", "correlation", "mean_abs_diff", "flips"]
    assert json.loads(json.dumps(data)) == data
    assert data["flips"] == SMALL.flips and data["flips"] is not SMALL.flips


def test_metrics_are_prefixed_and_skip_none() -> None:
    assert SMALL.metrics("shadow_tenure_adj") == {
        "shadow_tenure_adj_agreement": 0.7,
        "shadow_tenure_adj_mean_abs_diff": 0.125,
    }


def test_lines_show_the_statistics_and_the_flip_matrix() -> None:
    assert SMALL.lines() == [
        "rows 10, compared 9 (both scored)",
        "agreement 0.7000, correlation n/a, mean abs diff 0.1250",
        "action flips (rows: champion, columns: shadow):",
        "  champion \\ shadow  approve  review  <none>",
        "  approve                  5       1       0",
        "  review                   0       2       2",
    ]
    assert summarize(ComparisonPartial()).lines()[-1] == "action flips: none (no rows)"


def test_summary_orders_flips_alphabetically_with_none_last() -> None:
    partial = ComparisonPartial(
        rows=3, flips={("b", "<none>"): 1, ("<none>", "a"): 1, ("b", "a"): 1}
    )
    flips = summarize(partial).flips
    assert list(flips) == ["b", "<none>"]
    assert list(flips["b"]) == ["a", "<none>"]
