"""The cascade's check sample in the pure-Arrow core, no JVM: the last stage also scores a
hash-picked share of the rows earlier stages answered; what is served never changes; the
agreement the run reports equals a pandas computation on the same rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from test_cascade_core import HIGH, LOW, Logistic, cascade, matrix, member, plan, rows

from batch_serving.config.loader import load_config
from batch_serving.errors import ConfigError
from batch_serving.scoring.batch import score_batch
from batch_serving.scoring.cascade import Cascade, StageRows, from_config, in_check_sample
from batch_serving.scoring.cascade_check import (
    check_columns,
    check_partials,
    merge_partials,
    stage_evidence,
)
from batch_serving.scoring.rules import parse_rules

SURE = f"score <= {LOW} or score >= {HIGH}"
RULES = [
    {"when": "big.score >= 0.9", "action": "escalate"},  # reads the last stage's own output
    {"when": "score >= 0.5", "action": "call"},
    {"otherwise": "wait"},
]
MEMBERS = (member("champion", role="champion"), member("big"))
SMALL_W, BIG_W = ((-0.08, 0.6), 0.5), ((-0.05, 0.9), -0.2)


def chain(sample: float) -> Cascade:
    base = cascade(("champion", SURE), ("big", None), big="member")
    return Cascade(base.stages, sample, ("customer_id",) if sample else ())


def scored(sample: float, batch: pa.RecordBatch, rules: Any = None) -> tuple[Any, Logistic]:
    small, big = Logistic(*SMALL_W), Logistic(*BIG_W)
    got = score_batch(plan(MEMBERS, chain(sample), rules), [small, big], batch)
    return got, big


def test_the_sample_never_changes_what_is_served_and_lands_in_the_last_struct() -> None:
    rules = parse_rules(RULES)
    batch = rows(800, seed=3)
    without, _ = scored(0.0, batch, rules)
    with_check, big = scored(0.3, batch, rules)
    off, on = without.predictions, with_check.predictions
    assert on.schema == off.schema
    for name in on.schema.names:
        if name != "big":
            assert on.column(name).equals(off.column(name)), name  # served, rules, champion

    x = matrix(batch)
    p_small, p_big = Logistic(*SMALL_W).proba(x), Logistic(*BIG_W).proba(x)
    early = (p_small <= LOW) | (p_small >= HIGH)
    ids = batch.column("customer_id")
    sampled = early & in_check_sample([ids], 0.3)
    assert 0.2 < sampled.sum() / early.sum() < 0.4  # about the fraction asked for
    big_scores = np.array([s["score"] for s in on.column("big").to_pylist()], dtype=float)
    # the big struct: its answers on the open rows, the check on the sampled rows, else null
    np.testing.assert_array_equal(~np.isnan(big_scores), ~early | sampled)
    np.testing.assert_allclose(big_scores[~early | sampled], p_big[~early | sampled], atol=1e-12)
    # the big model received the open rows and the sampled rows, nothing else
    assert sum(len(s) for s in big.seen) == int((~early).sum() + sampled.sum())
    assert with_check.stages == (
        StageRows("champion", 800, int(early.sum()), 0, int(sampled.sum())),
        StageRows("big", int((~early).sum()), int((~early).sum()), 0, 0),
    )
    # a rule on big.score never fires on a row champion answered, checked or not
    assert not (np.asarray(on.column("action").to_pylist()) == "escalate")[early].any()


def test_the_sample_is_deterministic_by_entity_id() -> None:
    batch = rows(600, seed=5)
    first, _ = scored(0.25, batch)
    again, _ = scored(0.25, batch)
    assert first.predictions.column("big").equals(again.predictions.column("big"))
    # the same ids in another order and batch split: the same rows are checked
    shuffled = batch.take(pa.array(np.random.default_rng(0).permutation(600)))
    parts = [scored(0.25, shuffled.slice(i, 200))[0] for i in (0, 200, 400)]

    def checked_ids(predictions: pa.RecordBatch) -> set[int]:
        out = predictions.to_pydict()
        return {
            i
            for i, by, b in zip(out["customer_id"], out["answered_by"], out["big"], strict=True)
            if by == "champion" and b["score"] is not None
        }

    assert checked_ids(first.predictions) == set().union(
        *(checked_ids(p.predictions) for p in parts)
    )
    ids = np.arange(-500, 500)
    assert (
        in_check_sample([pa.array(ids, pa.int32())], 0.3).tolist()
        == in_check_sample([pa.array(ids, pa.int64())], 0.3).tolist()
    )
    assert in_check_sample([pa.array(["a", "b"])], 0.0).tolist() == [False, False]
    assert in_check_sample([pa.array(["a", "b"])], 1.0).tolist() == [True, True]


def pandas_agreement(out: pd.DataFrame, rules: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The check computed directly: rows champion answered where big's score is present."""
    big = out["big"].map(lambda s: s["score"])
    sample = out[(out["answered_by"] == "champion") & big.notna()]
    big = big[sample.index]
    diff = (sample["score"] - big).abs()
    if rules is None:
        flips = ((sample["score"] >= 0.5) != (big >= 0.5)).sum()
    else:
        would = np.where(big >= 0.9, "escalate", np.where(big >= 0.5, "call", "wait"))
        flips = (sample["action"].to_numpy() != would).sum()
    return {
        "checked": len(sample),
        "mean_abs_diff": diff.mean(),
        "flips": int(flips),
        "flip_share": flips / len(sample),
    }


@pytest.mark.parametrize("with_rules", [True, False])
def test_agreement_equals_a_pandas_computation_on_the_same_sample(with_rules: bool) -> None:
    rules = parse_rules(RULES) if with_rules else None
    small, big = Logistic((-0.08, 0.6), 0.5, fails_above=6.5), Logistic(*BIG_W)
    the_plan = plan(MEMBERS, chain(0.4), rules)
    batches = [score_batch(the_plan, [small, big], rows(500, seed=s)) for s in (11, 12)]
    tables = [pa.Table.from_batches([b.predictions]) for b in batches]
    columns = check_columns(the_plan)
    partials = merge_partials(check_partials(the_plan, t.select(columns)) for t in tables)
    evidence = stage_evidence(
        the_plan,
        [t.column("answered_by") for t in tables],
        [b.quarantined.column("error_member") for b in batches if b.quarantined is not None],
        partials,
    )

    out = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    expected = pandas_agreement(out, RULES if with_rules else None)
    champion, last = evidence
    assert expected["checked"] > 20 and expected["flips"] > 0
    assert champion.checked == expected["checked"]
    assert champion.mean_abs_diff == pytest.approx(expected["mean_abs_diff"], abs=1e-12)
    assert champion.flips == expected["flips"]
    assert champion.flip_share == pytest.approx(expected["flip_share"])
    assert champion.decision == ("action" if with_rules else "label")
    assert (last.checked, last.mean_abs_diff, last.flips) == (0, None, None)
    # the counts equal what the core counted while scoring, quarantines included
    summed = tuple(a + b for a, b in zip(batches[0].stages, batches[1].stages, strict=True))
    assert [(e.member, e.seen, e.answered, e.quarantined, e.checked) for e in evidence] == [
        (r.member, r.seen, r.answered, r.quarantined, r.checked) for r in summed
    ]
    assert champion.quarantined > 0
    assert champion.share_answered == pytest.approx(champion.answered / 1000)
    assert last.share_seen == pytest.approx(last.seen / 1000)


def job_file(tmp_path: Path, check_sample: Any) -> Path:
    data = {
        "job": "j",
        "model": {"name": "small", "alias": "champion", "tracking_uri": "sqlite:///x.db"},
        "input": {"path": "/tmp/in"},
        "entity_columns": ["customer_id"],
        "output": {"root": "/tmp/out"},
        "members": {"big": {"name": "big", "alias": "champion"}},
        "cascade": {
            "stages": [{"member": "champion", "answer_if": SURE}, {"member": "big"}],
            "check_sample": check_sample,
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("value", [-0.1, 1.5, "x"])
def test_check_sample_outside_0_to_1_is_a_config_error_naming_it(tmp_path, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"cascade.check_sample"):
        load_config(job_file(tmp_path, value))


def test_check_sample_reaches_the_plan(tmp_path) -> None:
    cascade = from_config(load_config(job_file(tmp_path, 0.05)))
    assert cascade is not None and cascade.check_sample == 0.05
    default = from_config(load_config(job_file(tmp_path, 0)))
    assert default is not None and default.check_sample == 0.0


@pytest.mark.parametrize(
    "condition",
    [
        SURE,
        "score > 0.9",
        "champion.score != 0.5",
        "score == 0.25 or (score >= 0.4 and score < 0.6)",
    ],
)
def test_the_numpy_condition_equals_the_rules_evaluator(condition: str) -> None:
    """The embedded cascade's numpy path decides the rows the Arrow rules evaluator does,
    NaN included (a NaN compares False, != too)."""
    two = cascade(("champion", condition), ("big", None), big="member")
    values = np.random.default_rng(8).uniform(0, 1, 2000)
    values[::7] = np.nan
    values[::11] = 0.5
    values[::13] = 0.25
    arrow = two.answers(0, {"score": pa.array(values, pa.float64())})
    assert arrow.any() and not arrow.all()
    np.testing.assert_array_equal(two.answers_numbers(0, values), arrow)
    np.testing.assert_array_equal(two.answers_numbers(0, values[:1]), arrow[:1])  # one row
    assert two.answers_numbers(1, values).all()
