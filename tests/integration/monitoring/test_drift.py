"""Drift numbers (no Spark): equal to scipy on the same binned data, PSI by hand on synthetic
shifts, profiles that merge like one pass over all rows, and the drift gate's outcome."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import ks_2samp

from batch_serving.config.sections import DriftGatesConfig
from batch_serving.monitoring.drift import EPSILON, binned_ks, compare, js_distance, psi
from batch_serving.monitoring.gates import evaluate
from batch_serving.monitoring.profile import OTHER, ColumnSpec, ProfileSpec, profile_table
from batch_serving.monitoring.reference import Monitored, build_spec


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scipy_on_the_same_bins(seed: int) -> None:
    rng = np.random.default_rng(seed)
    current = rng.integers(0, 400, size=12)
    reference = rng.integers(0, 400, size=12)
    current[3] = 0  # an empty bin on one side only: the floor is what keeps PSI finite
    p, q = current / current.sum(), reference / reference.sum()

    floored_p, floored_q = np.maximum(p, EPSILON), np.maximum(q, EPSILON)
    expected_psi = float(np.sum(rel_entr(floored_p, floored_q) + rel_entr(floored_q, floored_p)))
    assert psi(current, reference) == pytest.approx(expected_psi, abs=1e-9)
    assert js_distance(current, reference) == pytest.approx(
        float(jensenshannon(p, q, base=2)), abs=1e-9
    )
    # binned KS = two-sample KS of the rows placed at their bin index
    a = np.repeat(np.arange(12), current)
    b = np.repeat(np.arange(12), reference)
    assert binned_ks(current, reference) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-9)


def psi_by_hand(current: np.ndarray, reference: np.ndarray, edges: np.ndarray) -> float:
    """PSI as a textbook writes it: histogram both on the reference's edges, sum per bin."""
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    total = 0.0
    for lo, hi in itertools.pairwise(bounds):
        actual = max(np.mean((current >= lo) & (current < hi)), 1e-6)
        expected = max(np.mean((reference >= lo) & (reference < hi)), 1e-6)
        total += (actual - expected) * np.log(actual / expected)
    return total


@pytest.mark.parametrize(("shift", "low", "high"), [(0.0, 0.0, 0.01), (1.0, 0.25, 10.0)])
def test_psi_of_synthetic_shift(shift: float, low: float, high: float) -> None:
    """No drift: PSI < 0.01; a 1-sigma mean shift: PSI > 0.25; and equal to a hand computation."""
    rng = np.random.default_rng(42)
    reference = rng.normal(0, 1, 100_000)
    current = rng.normal(shift, 1, 100_000)
    columns = [Monitored("x", "feature", pa.float64())]
    ref_table = pa.table({"x": reference})
    spec = build_spec(columns, [], lambda names: ref_table.select(names), bins=10, top_k=5)
    ref_profile = profile_table(spec, ref_table)
    cur_profile = profile_table(spec, pa.table({"x": current}))
    (drift,) = compare(cur_profile, [ref_profile])

    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1]))
    assert drift.psi == pytest.approx(psi_by_hand(current, reference, edges), abs=1e-9)
    assert low <= drift.psi < high


def test_partials_merge_like_one_pass() -> None:
    """Counts of two halves merged equal the counts of the whole; nulls, NaN, other."""
    spec = ProfileSpec(
        (
            ColumnSpec("x", "numeric", "feature", (-1.0, 0.0, 1.0)),
            ColumnSpec("c", "categorical", "feature", (), ("a", "b")),
        )
    )
    x = pa.array([-2.0, -1.0, 0.5, None, float("nan"), 3.0, 0.0, float("inf")])
    c = pa.array(["a", "b", "z", None, "a", "a", "y", "b"])
    table = pa.table({"x": x, "c": c})
    whole = profile_table(spec, table)
    first = profile_table(spec, table.slice(0, 3))
    second = profile_table(spec, table.slice(3))
    merged = spec.partial()
    merged = merged.merge(type(merged)(dict(first.counts))).merge(type(merged)(dict(second.counts)))
    for name in ("x", "c"):
        assert merged.columns[name].counts.tolist() == whole.counts[name].counts.tolist()
    # x: bins (-inf,-1) [-1,0) [0,1) [1,inf): -2 | -1 | 0.5, 0 | 3, inf ; 1 null, 1 NaN
    assert whole.counts["x"].counts.tolist() == [1, 1, 2, 2]
    assert (whole.counts["x"].nulls, whole.counts["x"].nans) == (1, 1)
    assert whole.counts["x"].low == -2.0 and whole.counts["x"].high == 3.0
    # c: a, b, then <other> (z, y); one null
    assert whole.counts["c"].counts.tolist() == [3, 2, 2]
    assert spec.columns[1].labels() == ["a", "b", OTHER]
    assert whole.counts["c"].nulls == 1


def test_missing_values_drift() -> None:
    """A column that goes 30% null drifts even when its values do not."""
    spec = ProfileSpec((ColumnSpec("x", "numeric", "feature", (0.0,)),))
    values = np.random.default_rng(0).normal(size=10_000)
    ref = profile_table(spec, pa.table({"x": values}))
    mask = np.zeros(10_000, dtype=bool)
    mask[:3000] = True
    cur = profile_table(spec, pa.table({"x": pa.array(values, mask=mask)}))
    (drift,) = compare(cur, [ref])
    assert drift.missing_rate == pytest.approx(0.3)
    assert drift.psi > 0.25


def test_gate_outcome_names_column_and_value() -> None:
    gates = DriftGatesConfig(score_psi_max=0.25, feature_psi_warn=0.2, feature_psi_max=1.0)
    columns = {
        "score": {"role": "score", "psi": 0.31},
        "tenure": {"role": "feature", "psi": 0.22},
        "charges": {"role": "feature", "psi": 1.5},
        "contract": {"role": "feature", "psi": 0.01},
    }
    outcome = evaluate(gates, columns)
    assert outcome.blocking == ["feature charges PSI 1.5000 > 1.0", "score score PSI 0.3100 > 0.25"]
    assert outcome.warnings == ["feature tenure PSI 0.2200 > 0.2 (warning)"]
    assert not outcome.success
    assert evaluate(DriftGatesConfig(score_psi_max=0.5), {"score": columns["score"]}).success


def test_training_reference_round_trips_through_mlflow(tracking_uri: str) -> None:
    """A training profile logged with a model's run is what a run takes its bins from."""
    import mlflow

    from batch_serving.monitoring.reference import (
        log_training_reference,
        model_profile,
        reference_profiles,
        training_reference,
    )

    rng = np.random.default_rng(5)
    table = pa.table(
        {
            "tenure": rng.normal(20, 5, 5000),
            "contract": rng.choice(["monthly", "yearly"], 5000),
            "score": rng.uniform(0, 1, 5000),
        }
    )
    reference = training_reference(table, "score", bins=8, top_k=5)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        log_training_reference(reference)
    got = model_profile(tracking_uri, run.info.run_id)
    assert got is not None and got.to_dict() == reference.to_dict()
    assert model_profile(tracking_uri, None) is None
    counts = {
        v: int(np.sum(table.column("contract").to_numpy() == v)) for v in ("monthly", "yearly")
    }
    by_count = tuple(sorted(counts, key=lambda v: -counts[v]))
    assert got.spec.by_name()["contract"].categories == by_count  # most frequent first
    assert len(got.spec.by_name()["tenure"].edges) == 7
    assert got.spec.by_name()["score"].edges == tuple(np.linspace(0, 1, 9)[1:-1])

    # auto: the model's reference first, the previous date's after it
    previous = training_reference(table.slice(0, 100), "score")
    order = reference_profiles("auto", lambda: got, lambda: previous)
    assert order == [got, previous]
    assert reference_profiles("previous", lambda: got, lambda: None) == []
    spec = build_spec(
        [Monitored("tenure", "feature", pa.float64()), Monitored("new", "feature", pa.int64())],
        order,
        lambda names: pa.table({"new": pa.array(range(100))}).select(names),
        bins=4,
        top_k=3,
    )
    assert spec.by_name()["tenure"].edges == got.spec.by_name()["tenure"].edges
    assert spec.by_name()["new"].edges == (24.75, 49.5, 74.25)  # quartiles of the sample
