"""``check_rule_references`` (issue #31 item 7b): the rules against a resolved plan's outputs and
the input's footer columns, before any Spark session: what config load cannot know (which
outputs each member's kind really has, their Arrow types) named with the rule and position.
Fast: a realistic plan built from ModelSpecs, no JVM, no registry."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pyarrow as pa
import pytest

from batch_serving.errors import ConfigError
from batch_serving.models.adapters.base import ModelSpec
from batch_serving.models.registry import ModelRef
from batch_serving.scoring.ensemble import make_ensemble
from batch_serving.scoring.members import namespace_types
from batch_serving.scoring.plan import Member, ScoringPlan, ScoringSettings, build_plan
from batch_serving.scoring.rules import RuleSet, check_rule_references, parse_rules

# the input table as its Parquet footers describe it
INPUT = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("tenure_months", pa.float64()),
        ("support_calls", pa.float64()),
        ("contract", pa.string()),
    ]
)
FEATURES = ("tenure_months", "support_calls")


def member(key: str, kind: str, role: str = "member", version: int = 1) -> Member:
    """A resolved member: a pinned version and the spec its adapter would describe."""
    ref = ModelRef(key, version, "champion", None, "file:/x", "sqlite://", "sqlite://")
    classes = ("gold", "silver", "bronze") if kind == "multiclass" else ()
    spec = ModelSpec("sklearn", kind, FEATURES, "numpy", classes=classes)  # type: ignore[arg-type]
    return Member(key, ref, spec, role)


MEMBERS = (
    member("champion", "binary", "champion"),
    member("tenure_adj", "regression"),
    member("segment", "multiclass"),
    member("challenger", "binary", "shadow", version=2),
)


def plan(rules: RuleSet | None = None, *, ensemble: bool = True) -> ScoringPlan:
    """The plan a run builds once the models are resolved: before any data or Spark."""
    return build_plan(
        MEMBERS,
        ["customer_id"],
        INPUT,
        "0" * 32,
        dt.datetime(2026, 11, 22, tzinfo=dt.UTC),
        "customer_features ds=2026-11-22",
        ScoringSettings(
            multi=True,
            ensemble=make_ensemble(["champion", "tenure_adj"], "mean") if ensemble else None,
            rules=rules,
        ),
    )


def rules(*whens: str) -> RuleSet:
    return parse_rules(
        [*({"when": w, "action": f"a{i}"} for i, w in enumerate(whens)), {"otherwise": "none"}]
    )


def refusal(*whens: str, ensemble: bool = True) -> str:
    available = namespace_types(plan(ensemble=ensemble))
    with pytest.raises(ConfigError) as info:
        check_rule_references(rules(*whens), available, INPUT.names)
    return str(info.value)


def test_rules_that_fit_the_plan_pass() -> None:
    ok = rules(
        "ensemble.score >= 0.8",
        "tenure_adj.prediction > 12 and segment.predicted_label == 'gold'",
        "score >= 0.5 or champion.score < 0.1",
    )
    check_rule_references(ok, namespace_types(plan()), INPUT.names)
    assert plan(ok).rules is ok  # and build_plan, which runs the same check, accepts them


def test_an_output_the_members_kind_lacks_is_named_with_position_and_what_is_there() -> None:
    message = refusal("score >= 0.9", "ensemble.score >= 0.5 and tenure_adj.score > 1")
    assert message.startswith(
        "rules[1].when: unknown column 'tenure_adj.score' at position 26 in "
        '"ensemble.score >= 0.5 and tenure_adj.score > 1"; available: ['
    )
    assert "'tenure_adj.prediction'" in message and "'segment.predicted_label'" in message


def test_an_input_column_is_named_as_one() -> None:
    message = refusal("tenure_months > 12")
    assert message.startswith(
        "rules[0].when: unknown column 'tenure_months' at position 0 in \"tenure_months > 12\"; "
        "'tenure_months' is an input column, and rules read model outputs; available: ["
    )


def test_the_served_columns_follow_the_champion_without_an_ensemble() -> None:
    check_rule_references(rules("score > 0.5"), namespace_types(plan(ensemble=False)))
    message = refusal("prediction > 0.5", ensemble=False)
    assert message.startswith("rules[0].when: unknown column 'prediction' at position 0")


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (
            "segment.predicted_label == 1",
            "rules[0].when: column 'segment.predicted_label' is string but is compared with "
            'number 1 at position 0 in "segment.predicted_label == 1"',
        ),
        (
            "1 != ensemble.score or tenure_adj.prediction == true",
            "rules[0].when: column 'tenure_adj.prediction' is double but is compared with "
            "boolean true at position 23 in ",
        ),
    ],
)
def test_a_literal_of_another_kind_is_named_with_its_position(when: str, expected: str) -> None:
    assert refusal(when).startswith(expected)


def test_build_plan_reports_the_same_position() -> None:
    with pytest.raises(ConfigError, match=r"'tenure_adj\.score' at position 0 in "):
        plan(rules("tenure_adj.score > 1"))


def test_the_check_needs_no_pyspark() -> None:
    code = (
        "import sys; import batch_serving.scoring.rules, batch_serving.scoring.members; "
        "sys.exit(1 if any(m.startswith('pyspark') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
