"""Numeric bins counted on a sample of each batch: exact where claimed, within the stated bound
elsewhere, the same on a rerun, and every value counted in small batches."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from batch_serving.monitoring.drift import compare, with_missing
from batch_serving.monitoring.profile import (
    SAMPLE_FLOOR,
    ColumnSpec,
    Profile,
    ProfilePartial,
    ProfileSpec,
    profile_table,
)

EDGES = tuple(float(e) for e in np.linspace(-1.5, 1.5, 9))
ROWS = 300_000


def _table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(rows)
    holes = 3 + rng.choice(rows - 3, 1200, replace=False)
    x[holes[:700]] = np.nan
    x[:3] = [np.inf, -np.inf, 9.0]
    mask = np.zeros(rows, dtype=bool)
    mask[holes[700:]] = True
    return pa.table(
        {
            "x": pa.array(x, mask=mask),
            "n": pa.array(rng.integers(-3, 4, rows)),
            "c": pa.array(rng.choice(["a", "b", "z"], rows)),
        }
    )


def _spec(sample: float) -> ProfileSpec:
    return ProfileSpec(
        (
            ColumnSpec("x", "numeric", "feature", EDGES),
            ColumnSpec("n", "numeric", "feature", (-1.0, 0.0, 2.0)),
            ColumnSpec("c", "categorical", "feature", (), ("a", "b")),
        ),
        sample,
    )


def test_sampled_bins_within_the_bound_and_the_rest_exact() -> None:
    table = _table(ROWS)
    exact = profile_table(_spec(1.0), table)
    sampled = profile_table(_spec(0.125), table)
    for name in ("x", "n", "c"):
        a, b = exact.counts[name], sampled.counts[name]
        assert (b.rows, b.nulls, b.nans) == (a.rows, a.nulls, a.nans), name
        assert (b.low, b.high, b.total) == (a.low, a.high, a.total), name
    assert sampled.counts["c"].counts.tolist() == exact.counts["c"].counts.tolist()
    assert exact.counts["x"].nans == 700 and exact.counts["x"].nulls == 500
    for name in ("x", "n"):
        exact_bins, sampled_bins = exact.counts[name].counts, sampled.counts[name].counts
        present = exact_bins.sum()
        assert sampled_bins.sum() == pytest.approx(present)  # scaled to the values, batch by batch
        assert sampled_bins.tolist() != exact_bins.tolist()  # estimates: a sample was drawn
        shares, truth = sampled_bins / present, exact_bins / present
        edges = len(_spec(1.0).by_name()[name].edges)
        # Hoeffding over the draws (each batch draws at least its eighth) and a union over
        # the edges, probability 1 - 1e-6: the bound docs/monitoring.md states
        bound = math.sqrt(math.log(2 * edges / 1e-6) / (2 * 0.125 * present))
        assert np.max(np.abs(np.cumsum(shares) - np.cumsum(truth))) < bound, name
        missing = with_missing(_spec(1.0).columns[0], sampled.counts[name])
        assert missing[-1] == exact.counts[name].nulls + exact.counts[name].nans
    # drift of the sampled profile against the exact one: noise far below any threshold
    for column in compare(sampled, [exact]):
        assert column.psi < 2e-3, column.name


def test_a_rerun_counts_the_same() -> None:
    table = _table(ROWS, seed=3)
    first = profile_table(_spec(0.125), table)
    again = profile_table(_spec(0.125), table)
    for name in ("x", "n"):
        assert first.counts[name].counts.tolist() == again.counts[name].counts.tolist()


def test_small_batches_count_every_value() -> None:
    table = _table(3 * SAMPLE_FLOOR, seed=5)
    exact = _spec(1.0).partial()
    sampled = _spec(0.125).partial()
    for batch in table.to_batches(max_chunksize=SAMPLE_FLOOR):
        exact.add(_spec(1.0), batch, batch)
        sampled.add(_spec(0.125), batch, batch)
    for name in ("x", "n", "c"):
        assert sampled.columns[name].counts.tolist() == exact.columns[name].counts.tolist()


def test_scores_shorter_than_the_batch_get_their_own_draw() -> None:
    """Quarantined rows have no score: the predictions column is shorter than the batch."""
    spec = ProfileSpec(
        (
            ColumnSpec("x", "numeric", "feature", EDGES),
            ColumnSpec("score", "numeric", "score", (0.25, 0.5, 0.75)),
        ),
        0.125,
    )
    rng = np.random.default_rng(9)
    batch = pa.record_batch({"x": rng.standard_normal(60_000)})
    scores = pa.record_batch({"score": rng.random(50_000)})
    partial: ProfilePartial = spec.partial()
    partial.add(spec, batch, scores)
    assert partial.columns["x"].rows == 60_000 and partial.columns["score"].rows == 50_000
    binned = [partial.columns[name].counts.sum() for name in ("x", "score")]
    assert binned == [pytest.approx(60_000), pytest.approx(50_000)]


def test_batches_weigh_by_their_rows_not_by_their_draws() -> None:
    """A big batch (sampled) and a small one (counted whole) of different values: each weighs
    by its rows, so the share above the edge is the exact one."""
    spec = ProfileSpec((ColumnSpec("x", "numeric", "feature", (5.0,)),), 0.125)
    partial = spec.partial()
    for value, rows in ((0.0, 65_536), (10.0, 8_192)):
        batch = pa.record_batch({"x": np.full(rows, value)})
        partial.add(spec, batch, batch)
    counts = partial.columns["x"].counts
    assert counts.tolist() == [65_536, 8_192]  # all one value per batch: the scaling is exact
    assert counts[1] / counts.sum() == pytest.approx(8_192 / 73_728)


def test_a_draw_without_values_counts_the_batch() -> None:
    """100,000 rows, 10 of them numbers: whether the draw of 12,500 finds some of them or none
    (then the batch's own are counted), the ten are counted as ten."""
    spec = ProfileSpec((ColumnSpec("x", "numeric", "feature", (0.5,)),), 0.125)
    x = np.full(100_000, np.nan)
    x[:10] = 1.0
    partial = spec.partial()
    batch = pa.record_batch({"x": x})
    partial.add(spec, batch, batch)
    assert partial.columns["x"].counts.tolist() == [0, 10]
    assert partial.columns["x"].nans == 99_990


def test_the_stored_profile_says_how_it_was_binned() -> None:
    profile = profile_table(_spec(0.25), _table(20_000))
    data = json.loads(json.dumps(profile.to_dict()))
    assert data["bin_sample"] == 0.25
    assert Profile.from_dict(data).spec.sample == 0.25
    del data["bin_sample"]  # a profile written before sampling existed: every value counted
    assert Profile.from_dict(data).spec.sample == 1.0
