"""Cascades in the pure-Arrow scoring core (issue #28), no JVM: the second stage receives only
the rows the first left open, rows keep their order, per-stage quarantine, per-stage counts;
and the config/plan checks that name the stage (exit 2)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from batch_serving.config import JobConfig
from batch_serving.config.cascade import CascadeConfig, check_cascade
from batch_serving.errors import ConfigError
from batch_serving.models.adapters.base import ModelSpec
from batch_serving.models.registry import ModelRef
from batch_serving.scoring.batch import score_batch
from batch_serving.scoring.cascade import Cascade, StageRows, counted_stages, stage_shares
from batch_serving.scoring.plan import Member, ScoringPlan, ScoringSettings, build_plan
from batch_serving.scoring.rules import parse_rules

FEATURES = ("tenure_months", "support_calls")
INPUT = pa.schema([("customer_id", pa.int64()), *((f, pa.float64()) for f in FEATURES)])
LOW, HIGH = 0.3, 0.7


class Logistic:
    """A binary classifier on a float64 matrix that records every batch it is given."""

    def __init__(self, weights: tuple[float, float], bias: float, fails_above: float = np.inf):
        self.weights, self.bias, self.fails_above = np.asarray(weights), bias, fails_above
        self.seen: list[np.ndarray] = []

    def proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(1 / (1 + np.exp(-(x @ self.weights + self.bias))))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(np.asarray(x))
        if (x[:, 1] > self.fails_above).any():
            raise ValueError(f"support_calls above {self.fails_above}")
        p = self.proba(x)
        return np.column_stack([1 - p, p])


def member(key: str, kind: str = "binary", role: str = "member") -> Member:
    ref = ModelRef(f"m_{key}", 3, "champion", f"run-{key}", "file:/x", "sqlite://", "sqlite://")
    positive = 1 if kind == "binary" else None
    spec = ModelSpec("sklearn", kind, FEATURES, "numpy", positive_index=positive)  # type: ignore[arg-type]
    return Member(key, ref, spec, role)


def cascade(*stages: tuple[str, str | None], **members: str) -> Cascade:
    config = CascadeConfig.model_validate(
        {"stages": [{"member": m, "answer_if": a} for m, a in stages]}
    )
    roles = {"champion": "champion", **members}
    return Cascade(check_cascade(config, roles, {}, ensemble=False))


def plan(members: tuple[Member, ...], chain: Cascade, rules: Any = None) -> ScoringPlan:
    return build_plan(
        members,
        ["customer_id"],
        INPUT,
        "r" * 32,
        dt.datetime(2026, 11, 22, tzinfo=dt.UTC),
        "test rows",
        ScoringSettings(multi=True, rules=rules, cascade=chain),
    )


def rows(n: int, seed: int = 1) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1000, 1000 + n))  # not sorted: order must be kept
    return pa.RecordBatch.from_pydict(
        {
            "customer_id": ids,
            "tenure_months": rng.uniform(0, 72, n),
            "support_calls": rng.integers(0, 8, n).astype(np.float64),
        }
    )


def matrix(batch: pa.RecordBatch) -> np.ndarray:
    return np.column_stack([batch.column(f).to_numpy() for f in FEATURES])


TWO = cascade(("champion", f"score <= {LOW} or score >= {HIGH}"), ("big", None), big="member")


def test_second_stage_scores_only_the_open_rows_and_rows_keep_their_order() -> None:
    small, big = Logistic((-0.08, 0.6), 0.5), Logistic((-0.05, 0.9), -0.2)
    batch = rows(500)
    got = score_batch(
        plan((member("champion", role="champion"), member("big")), TWO), [small, big], batch
    )

    x = matrix(batch)
    p_small, p_big = small.proba(x), big.proba(x)
    open_rows = (p_small > LOW) & (p_small < HIGH)
    assert 0 < open_rows.sum() < 500  # both stages answer some rows
    expected = np.where(open_rows, p_big, p_small)

    out = got.predictions.to_pydict()
    assert out["customer_id"] == batch.column("customer_id").to_pylist()
    assert np.max(np.abs(np.asarray(out["score"]) - expected)) <= 1e-12
    assert out["answered_by"] == ["big" if o else "champion" for o in open_rows]
    # the big model received exactly the open rows, in one call
    assert [len(s) for s in big.seen] == [int(open_rows.sum())]
    np.testing.assert_array_equal(big.seen[0], x[open_rows])
    assert got.stages == (
        StageRows("champion", 500, int((~open_rows).sum()), 0),
        StageRows("big", int(open_rows.sum()), int(open_rows.sum()), 0),
    )
    # each stage's struct: its score where it scored, null elsewhere; lineage on every row
    big_struct = out["big"]
    assert [s["score"] is None for s in big_struct] == list(~open_rows)
    assert {(s["model_name"], s["model_version"], s["model_run_id"]) for s in big_struct} == {
        ("m_big", 3, "run-big")
    }
    assert all(s["score"] is not None for s in out["champion"])


def test_rules_act_on_the_answering_stage_score() -> None:
    small, big = Logistic((-0.08, 0.6), 0.5), Logistic((-0.05, 0.9), -0.2)
    rules = parse_rules([{"when": "score >= 0.5", "action": "call"}, {"otherwise": "wait"}])
    batch = rows(200, seed=4)
    members = (member("champion", role="champion"), member("big"))
    got = score_batch(plan(members, TWO, rules), [small, big], batch).predictions.to_pydict()
    assert got["action"] == ["call" if s >= 0.5 else "wait" for s in got["score"]]


def test_a_row_a_stage_cannot_score_is_quarantined_once_naming_that_stage() -> None:
    small = Logistic((-0.08, 0.6), 0.5, fails_above=6.5)  # rows with 7 support calls
    big = Logistic((-0.05, 0.9), -0.2, fails_above=5.5)  # open rows with 6 calls
    batch = rows(400, seed=2)
    members = (member("champion", role="champion"), member("big"))
    got = score_batch(plan(members, TWO), [small, big], batch)

    x = matrix(batch)
    ids = np.asarray(batch.column("customer_id"))
    p_small = small.proba(x)
    bad_small = x[:, 1] > 6.5
    open_rows = ~bad_small & (p_small > LOW) & (p_small < HIGH)
    bad_big = open_rows & (x[:, 1] > 5.5)
    assert bad_small.any() and bad_big.any()
    q = got.quarantined
    assert q is not None
    by_member = dict(
        zip(q.column("customer_id").to_pylist(), q.column("error_member").to_pylist(), strict=True)
    )
    assert by_member == {
        **{int(i): "champion" for i in ids[bad_small]},
        **{int(i): "big" for i in ids[bad_big]},
    }
    kept = ~bad_small & ~bad_big
    out = got.predictions.to_pydict()
    assert out["customer_id"] == ids[kept].tolist()
    expected = np.where(open_rows, big.proba(x), p_small)[kept]
    assert np.max(np.abs(np.asarray(out["score"]) - expected)) <= 1e-12
    assert got.stages[1] == StageRows(
        "big", int(open_rows.sum()), int((open_rows & ~bad_big).sum()), int(bad_big.sum())
    )


def test_a_nan_score_stays_open_for_the_next_stage() -> None:
    small = Logistic((np.nan, 0.0), 0.0)  # every score NaN: never sure
    big = Logistic((-0.05, 0.9), -0.2)
    batch = rows(50)
    members = (member("champion", role="champion"), member("big"))
    got = score_batch(plan(members, TWO), [small, big], batch).predictions.to_pydict()
    assert set(got["answered_by"]) == {"big"}
    assert [len(s) for s in big.seen] == [50]


def test_three_stages_each_sees_what_is_still_open() -> None:
    chain = cascade(
        ("champion", "score <= 0.2 or score >= 0.8"),
        ("mid", "score <= 0.4 or score >= 0.6"),
        ("big", None),
        mid="member",
        big="member",
    )
    models = [Logistic((-0.08, 0.6), 0.5), Logistic((-0.06, 0.7), 0.3), Logistic((-0.05, 0.9), 0)]
    members = (member("champion", role="champion"), member("mid"), member("big"))
    batch = rows(600, seed=7)
    got = score_batch(plan(members, chain), models, batch)
    x = matrix(batch)
    p = [m.proba(x) for m in models]
    open1 = (p[0] > 0.2) & (p[0] < 0.8)
    open2 = open1 & (p[1] > 0.4) & (p[1] < 0.6)
    assert [r.seen for r in got.stages] == [600, int(open1.sum()), int(open2.sum())]
    assert sum(r.answered for r in got.stages) == 600
    expected = np.where(open2, p[2], np.where(open1, p[1], p[0]))
    score = np.asarray(got.predictions.column("score"))
    assert np.max(np.abs(score - expected)) <= 1e-12


def test_stages_outputting_different_columns_is_a_config_error_naming_the_stage() -> None:
    members = (member("champion", role="champion"), member("big", kind="regression"))
    with pytest.raises(ConfigError, match=r"cascade.stages\[1\]: stage 'big' .* outputs"):
        plan(members, TWO)


def test_a_condition_on_an_output_the_stage_lacks_names_the_stage() -> None:
    chain = cascade(("champion", "prediction >= 3"), ("big", None), big="member")
    members = (member("champion", role="champion"), member("big"))
    with pytest.raises(ConfigError, match=r"cascade.stages\[0\].answer_if.*'prediction'"):
        plan(members, chain)


BASE: dict[str, Any] = {
    "job": "j",
    "model": {"name": "small", "alias": "champion", "tracking_uri": "sqlite:///x.db"},
    "input": {"path": "/tmp/in"},
    "entity_columns": ["customer_id"],
    "output": {"root": "/tmp/out"},
    "members": {
        "big": {"name": "big", "alias": "champion"},
        "chal": {"name": "small", "alias": "challenger", "role": "shadow"},
    },
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"cascade": {"stages": [{"member": "champion"}, {"member": "big"}]}},
            "cascade.stages[0].answer_if: stage 'champion' is not the last, so it needs",
        ),
        (
            {
                "cascade": {
                    "stages": [
                        {"member": "champion", "answer_if": "scroe > 0.9"},
                        {"member": "big"},
                    ]
                }
            },
            "cascade.stages[0].answer_if: unknown output 'scroe' of stage 'champion' at position 0",
        ),
        (
            {
                "cascade": {
                    "stages": [
                        {"member": "champion", "answer_if": "big.score > 0.9"},
                        {"member": "big"},
                    ]
                }
            },
            "'big.score' is not an output of stage 'champion'",
        ),
        (
            {
                "cascade": {
                    "stages": [
                        {"member": "champion", "answer_if": "score > 0.9"},
                        {"member": "chal"},
                    ]
                }
            },
            "cascade.stages[1].member: 'chal' is a shadow",
        ),
        (
            {
                "cascade": {
                    "stages": [
                        {"member": "champion", "answer_if": "score > 0.9"},
                        {"member": "big", "answer_if": "score > 0.5"},
                    ]
                }
            },
            "cascade.stages[1].answer_if: the last stage ('big') answers every row still open",
        ),
        (
            {
                "cascade": {
                    "stages": [
                        {"member": "champion", "answer_if": "score > 0.9"},
                        {"member": "big", "answer_if": "score > 0.5"},
                        {"member": "champion"},
                    ]
                }
            },
            "cascade.stages[2].member: 'champion' is already cascade.stages[0]",
        ),
        (
            {
                "cascade": {
                    "stages": [
                        {"member": "champion", "answer_if": "score > 0.9"},
                        {"member": "nobody"},
                    ]
                }
            },
            "cascade.stages[1].member: unknown member 'nobody'",
        ),
        (
            {
                "cascade": {
                    "stages": [
                        {"member": "champion", "answer_if": "score > 0.9"},
                        {"member": "big"},
                    ]
                },
                "ensemble": {"members": ["champion", "big"], "method": "mean"},
            },
            "a cascade or an ensemble, not both",
        ),
        (
            {"cascade": {"stages": [{"member": "champion", "answer_if": "score > 0.9"}]}},
            "cascade.stages: a cascade needs at least 2 stages",
        ),
        (
            {
                "cascade": {
                    "stages": [
                        {"member": "champion", "answer_if": "score >> 0.9"},
                        {"member": "big"},
                    ]
                }
            },
            "cascade.stages[0].answer_if: unknown operator '>>'",
        ),
    ],
)
def test_config_errors_name_the_stage(change: dict[str, Any], message: str) -> None:
    data = {**BASE, **change}
    with pytest.raises(ConfigError) as info:
        JobConfig.model_validate(data)
    assert message in str(info.value)


def test_counts_from_the_output_alone_equal_what_each_stage_received() -> None:
    """What a run can report from its predictions and quarantine (answered_by, error_member)
    is what the stages really saw, quarantines included."""
    small = Logistic((-0.08, 0.6), 0.5, fails_above=6.5)
    big = Logistic((-0.05, 0.9), -0.2, fails_above=5.5)
    members = (member("champion", role="champion"), member("big"))
    scored = [score_batch(plan(members, TWO), [small, big], rows(300, seed=s)) for s in (2, 3)]
    counted = counted_stages(
        TWO,
        [s.predictions.column("answered_by") for s in scored],
        [s.quarantined.column("error_member") for s in scored if s.quarantined is not None],
    )
    summed = tuple(a + b for a, b in zip(scored[0].stages, scored[1].stages, strict=True))
    assert counted == summed
    assert counted[1].quarantined > 0 and counted[0].quarantined > 0
    shares = stage_shares(counted)
    assert [s["member"] for s in shares] == ["champion", "big"]
    assert shares[0]["share_seen"] == 1.0
    assert shares[1]["share_seen"] == pytest.approx(counted[1].seen / counted[0].seen)
    assert sum(s["share_answered"] for s in shares) == pytest.approx(
        sum(r.answered for r in counted) / counted[0].seen
    )
    assert TWO.describe() == [
        f"cascade.stages[0]: champion answers if score <= {LOW} or score >= {HIGH}",
        "cascade.stages[1]: big answers the rest",
    ]


def test_a_shadow_beside_a_cascade_never_changes_what_is_served() -> None:
    """The shadow is scored on every row; its would-be action is the rules' with it answering
    in place of the whole cascade."""
    small, big = Logistic((-0.08, 0.6), 0.5), Logistic((-0.05, 0.9), -0.2)
    shadow = Logistic((-0.02, 0.3), 0.1)
    rules = parse_rules([{"when": "score >= 0.5", "action": "call"}, {"otherwise": "wait"}])
    members = (member("champion", role="champion"), member("big"))
    batch = rows(300, seed=9)
    alone = score_batch(plan(members, TWO, rules), [small, big], batch).predictions
    with_shadow = (*members, member("chal", role="shadow"))
    got = score_batch(plan(with_shadow, TWO, rules), [small, big, shadow], batch).predictions
    for column in ("customer_id", "score", "answered_by", "action", "champion", "big"):
        assert got.column(column).equals(alone.column(column)), column
    chal = got.column("chal").to_pylist()
    expected = shadow.proba(matrix(batch))
    assert np.max(np.abs(np.array([c["score"] for c in chal]) - expected)) <= 1e-12
    assert [c["action"] for c in chal] == ["call" if s >= 0.5 else "wait" for s in expected]
