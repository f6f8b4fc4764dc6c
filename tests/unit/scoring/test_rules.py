"""Business rules (issue #11): parsing, validation messages, and vectorized evaluation checked
against a plain row-by-row Python reference written independently of the parser."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from batch_serving.config import rules as config_rules
from batch_serving.errors import ConfigError
from batch_serving.scoring import rules as rules_module
from batch_serving.scoring.rules import Comparison, Rule, RuleSet, parse_rules

OPS = (">=", ">", "<=", "<", "==", "!=")
Row = dict[str, Any]


def when(text: str) -> tuple[tuple[Comparison, ...], ...]:
    """The OR of ANDs one ``when`` parses to."""
    return parse_rules([{"when": text, "action": "hit"}, {"otherwise": "miss"}]).rules[0].any_of


def config_error(raw: Any, where: str = "rules") -> str:
    with pytest.raises(ConfigError) as info:
        parse_rules(raw, where)
    return str(info.value)


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
def test_every_operator_parses_to_one_comparison(op: str) -> None:
    assert when(f"ensemble.score {op} 0.85") == ((Comparison("ensemble.score", op, 0.85),),)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("3", 3),
        ("-2", -2),
        ("0.5", 0.5),
        ("-1.25", -1.25),
        ("1e-3", 0.001),
        ("2.5E+2", 250.0),
        (".5", 0.5),
        ('"churn"', "churn"),
        ("'stay put'", "stay put"),
        ("true", True),
        ("false", False),
    ],
)
def test_literals_keep_their_type(literal: str, value: Any) -> None:
    op = "==" if isinstance(value, str | bool) else ">"
    ((comparison,),) = when(f"x {op} {literal}")
    assert comparison.value == value
    assert type(comparison.value) is type(value)


def test_refs_are_dotted_or_bare_columns() -> None:
    assert when("tenure_adj.prediction < -1 or score > 2") == (
        (Comparison("tenure_adj.prediction", "<", -1),),
        (Comparison("score", ">", 2),),
    )


def test_and_binds_tighter_than_or() -> None:
    a, b, c = (Comparison(r, ">", 1) for r in "abc")
    assert when("a > 1 or b > 1 and c > 1") == ((a,), (b, c))
    assert when("a > 1 and b > 1 or c > 1") == ((a, b), (c,))


def test_parentheses_override_precedence() -> None:
    a, b, c, d = (Comparison(r, ">", 1) for r in "abcd")
    assert when("(a > 1 or b > 1) and c > 1") == ((a, c), (b, c))
    assert when("((a > 1 or b > 1)) and (c > 1 or d > 1)") == ((a, c), (a, d), (b, c), (b, d))


@pytest.mark.parametrize(
    ("text", "op"),
    [
        ("0.5 <= s", ">="),
        ("0.5 < s", ">"),
        ("0.5 >= s", "<="),
        ("0.5 > s", "<"),
        ("0.5 == s", "=="),
        ("0.5 != s", "!="),
    ],
)
def test_literal_first_comparisons_are_flipped(text: str, op: str) -> None:
    assert when(text) == ((Comparison("s", op, 0.5),),)


def test_string_equality_and_inequality() -> None:
    assert when("champion.predicted_label == \"churn\" and 'stay' != champion.predicted_label") == (
        (
            Comparison("champion.predicted_label", "==", "churn"),
            Comparison("champion.predicted_label", "!=", "stay"),
        ),
    )


def test_keywords_are_case_insensitive() -> None:
    assert when("a > 1 AND flag == True") == (
        (Comparison("a", ">", 1), Comparison("flag", "==", True)),
    )


def test_empty_rule_list_is_an_empty_rule_set_that_cannot_evaluate() -> None:
    empty = parse_rules([])
    assert empty.rules == () and empty.actions == () and empty.refs == ()
    with pytest.raises(ConfigError, match=r"rules: no rules"):
        empty.evaluate({"x": pa.array([1.0])})


# --- errors ----------------------------------------------------------------------------------


def test_unknown_operator_names_index_token_position_and_the_valid_ones() -> None:
    raw = [
        {"when": "x > 1", "action": "block"},
        {"when": "ensemble.score => 0.5", "action": "review"},
        {"otherwise": "allow"},
    ]
    assert config_error(raw) == (
        "rules[1].when: unknown operator '=>' at position 15 in \"ensemble.score => 0.5\"; "
        "use one of >=, >, <=, <, ==, !="
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x = 1", "unknown operator '=' at position 2"),
        ("x <> 1", "unknown operator '<>' at position 2"),
        ("x > 1 and", "expected a column or a literal, got the end at position 9"),
        ("x > 1 y > 2", "unexpected 'y', expected 'and', 'or' or the end at position 6"),
        ("x > 1 && y > 2", "unexpected '&&', expected 'and', 'or' or the end at position 6"),
        (
            "(x > 1 or y > 2",
            "expected ')' to close the '(' at position 0, got the end at position 15",
        ),
        ("x > 1)", "unexpected ')'"),
        ("x 1", "expected an operator after 'x', got '1' at position 2"),
        ("x >", "expected a column or a literal, got the end at position 3"),
        ("x > y", "compare a column with a literal, not two columns at position 0"),
        ("1 > 2", "compare a column with a literal, not two literals at position 0"),
        ("label >= 'a'", "'>=' orders numbers; a string takes == or != at position 6"),
        ("flag < true", "'<' orders numbers; a boolean takes == or != at position 5"),
        ("not x > 1", "'not' is not supported"),
        ("x > 0.5x", "expected a column or a literal, got '0.5x' at position 4"),
        ("x > @", "expected a column or a literal, got '@' at position 4"),
    ],
)
def test_syntax_errors_name_rule_token_and_position(text: str, expected: str) -> None:
    message = config_error([{"when": text, "action": "a"}, {"otherwise": "b"}])
    assert message.startswith("rules[0].when: ")
    assert expected in message
    assert f'in "{text}"' in message


def test_a_condition_that_expands_beyond_64_terms_is_rejected() -> None:
    text = " and ".join(f"(a{i} > 1 or b{i} > 1)" for i in range(7))
    assert "more than 64 and-terms" in config_error(
        [{"when": text, "action": "a"}, {"otherwise": "b"}]
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            [{"when": "x > 1", "action": "a", "then": 1}, {"otherwise": "b"}],
            "rules[0]: unknown key 'then'",
        ),
        ([{"when": "x > 1", "otherwise": "a"}], "rules[0]: has both 'otherwise' and 'when'"),
        ([{"otherwise": "b", "action": "a"}], "rules[0]: has both 'otherwise' and 'action'"),
        ([{"when": "x > 1"}, {"otherwise": "b"}], "rules[0]: missing key 'action'"),
        ([{"action": "a"}, {"otherwise": "b"}], "rules[0]: missing key 'when'"),
        (
            [{"when": "x > 1", "action": ""}, {"otherwise": "b"}],
            "rules[0].action: expected an action name",
        ),
        (
            [{"when": "x > 1", "action": True}, {"otherwise": "b"}],
            "rules[0].action: expected an action name of letters, digits, '_', '.' or '-', "
            "got True",
        ),
        ([{"when": "x > 1", "action": "block it"}, {"otherwise": "b"}], "got 'block it'"),
        (
            [{"when": "x > 1", "action": "a"}, {"otherwise": 3}],
            "rules[1].otherwise: expected an action name",
        ),
        (
            [{"when": 0.5, "action": "a"}, {"otherwise": "b"}],
            "rules[0].when: expected a non-empty string, got 0.5",
        ),
        (
            [{"when": "  ", "action": "a"}, {"otherwise": "b"}],
            "rules[0].when: expected a non-empty string",
        ),
        (["x > 1", {"otherwise": "b"}], "rules[0]: expected a mapping, got str"),
        ("x > 1", "rules: expected a list of rules, got str"),
        ({"otherwise": "b"}, "rules: expected a list of rules, got dict"),
        (
            [{"otherwise": "b"}, {"when": "x > 1", "action": "a"}, {"otherwise": "c"}],
            "rules[0].otherwise: must be the last rule; the 2 rule(s) after it could never match",
        ),
        (
            [{"when": "x > 1", "action": "a"}, {"when": "y > 1", "action": "c"}],
            "rules must end with {otherwise: <action>} so that every row gets an action; "
            "rule 1 (the last, action 'c') has a 'when'",
        ),
    ],
)
def test_rule_shape_errors_name_index_and_key(raw: Any, expected: str) -> None:
    assert expected in config_error(raw)


def test_messages_use_the_given_location() -> None:
    raw = [{"when": "x >> 1", "action": "a"}, {"otherwise": "b"}]
    assert config_error(raw, "jobs.churn.rules").startswith("jobs.churn.rules[0].when: ")


def test_a_rule_set_built_without_the_parser_still_needs_its_otherwise_last() -> None:
    check = Rule("a", ((Comparison("x", ">", 1),),))
    with pytest.raises(ConfigError, match=r"rules must end with \{otherwise"):
        RuleSet((check,))
    with pytest.raises(ConfigError, match=r"rules\[0\]\.otherwise: must be the last"):
        RuleSet((Rule("b", ()), check, Rule("c", ())))


# --- check_refs ------------------------------------------------------------------------------

SCHEMA = {
    "ensemble.score": pa.float64(),
    "champion.score": pa.float32(),
    "champion.predicted_label": pa.string(),
    "tenure": pa.int64(),
    "flagged": pa.bool_(),
}


def two_rules(text: str) -> RuleSet:
    return parse_rules(
        [{"when": "tenure > 1", "action": "a"}, {"when": text, "action": "b"}, {"otherwise": "c"}]
    )


def test_check_refs_accepts_matching_kinds() -> None:
    two_rules("ensemble.score > 1 and champion.score < 0.5 and tenure >= 2.5").check_refs(SCHEMA)
    two_rules("champion.predicted_label == 'churn' and flagged != false").check_refs(SCHEMA)


def test_check_refs_names_an_unknown_ref_and_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as info:
        two_rules("ensembel.score >= 0.5").check_refs(SCHEMA)
    assert str(info.value) == (
        "rules[1].when: unknown column 'ensembel.score' at position 0 in "
        "\"ensembel.score >= 0.5\"; available: ['champion.predicted_label', "
        "'champion.score', 'ensemble.score', 'flagged', 'tenure']"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "champion.predicted_label == 1",
            "column 'champion.predicted_label' is string but is compared with number 1",
        ),
        (
            "ensemble.score == 'high'",
            "column 'ensemble.score' is double but is compared with string \"high\"",
        ),
        (
            "ensemble.score == true",
            "column 'ensemble.score' is double but is compared with boolean true",
        ),
        ("flagged == 1", "column 'flagged' is bool but is compared with number 1"),
        ("champion.predicted_label != true", "is string but is compared with boolean true"),
    ],
)
def test_check_refs_rejects_a_literal_of_another_kind(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        two_rules(text).check_refs(SCHEMA)
    assert str(info.value).startswith("rules[1].when: ")
    assert expected in str(info.value)


def test_evaluate_checks_refs_first() -> None:
    with pytest.raises(
        ConfigError, match=r"rules\[0\]\.when: unknown column 'tenure' at position 0 .*\['x'\]"
    ):
        two_rules("x > 1").evaluate({"x": pa.array([1.0])})


# --- evaluation against a row-by-row reference ----------------------------------------------

N = 10_000


def known(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def ge(x: Any, c: Any) -> bool:
    return known(x) and x >= c


def gt(x: Any, c: Any) -> bool:
    return known(x) and x > c


def le(x: Any, c: Any) -> bool:
    return known(x) and x <= c


def lt(x: Any, c: Any) -> bool:
    return known(x) and x < c


def eq(x: Any, c: Any) -> bool:
    return known(x) and x == c


def ne(x: Any, c: Any) -> bool:
    return known(x) and x != c


THREE = [
    {"when": "ensemble.score >= 0.85", "action": "block"},
    {"when": "ensemble.score >= 0.5 and champion.score > 0.3", "action": "review"},
    {"otherwise": "allow"},
]


def three_reference(r: Row) -> str:
    e, c = r["ensemble.score"], r["champion.score"]
    if ge(e, 0.85):
        return "block"
    if ge(e, 0.5) and gt(c, 0.3):
        return "review"
    return "allow"


FIVE = [
    {
        "when": 'champion.predicted_label == "churn" and '
        "(ensemble.score > 0.9 or tenure_adj.prediction < -1.5)",
        "action": "block",
    },
    {
        "when": "0.7 <= ensemble.score or champion.score != 0.25 and flagged == true",
        "action": "escalate",
    },
    {
        "when": "tenure == 3 or tenure > 40 and champion.predicted_label != 'stay'",
        "action": "review",
    },
    {"when": "ensemble.score < 1e-1 or champion.score <= 0.05", "action": "watch"},
    {"otherwise": "allow"},
]


def five_reference(r: Row) -> str:
    e, c, adj = r["ensemble.score"], r["champion.score"], r["tenure_adj.prediction"]
    label, tenure, flagged = r["champion.predicted_label"], r["tenure"], r["flagged"]
    if eq(label, "churn") and (gt(e, 0.9) or lt(adj, -1.5)):
        return "block"
    if ge(e, 0.7) or (ne(c, 0.25) and eq(flagged, True)):
        return "escalate"
    if eq(tenure, 3) or (gt(tenure, 40) and ne(label, "stay")):
        return "review"
    if lt(e, 0.1) or le(c, 0.05):
        return "watch"
    return "allow"


def random_columns(seed: int) -> dict[str, pa.Array]:
    """Scores rounded to 2 decimals (so == and != hit), ~5% null and ~5% NaN in float columns."""
    rng = np.random.default_rng(seed)

    def floats(values: np.ndarray) -> pa.Array:
        values = values.copy()
        values[rng.random(N) < 0.05] = np.nan
        return pa.array(values, mask=rng.random(N) < 0.05)

    labels = rng.choice(np.array(["churn", "stay", "unknown"]), N).tolist()
    return {
        "ensemble.score": floats(np.round(rng.random(N), 2)),
        "champion.score": floats(np.round(rng.random(N), 2)),
        "tenure_adj.prediction": floats(np.round(rng.normal(0, 2, N), 1)),
        "tenure": pa.array(rng.integers(0, 60, N), mask=rng.random(N) < 0.05),
        "champion.predicted_label": pa.array([None if rng.random() < 0.05 else x for x in labels]),
        "flagged": pa.array(rng.random(N) < 0.3, mask=rng.random(N) < 0.05),
    }


def rows_of(columns: dict[str, pa.Array]) -> list[Row]:
    names = list(columns)
    return [
        dict(zip(names, values, strict=True))
        for values in zip(*(columns[n].to_pylist() for n in names), strict=True)
    ]


def chunked(array: pa.Array) -> pa.ChunkedArray:
    return pa.chunked_array([array.slice(0, 3001), array.slice(3001, 0), array.slice(3001)])


@pytest.mark.parametrize("as_chunks", [False, True], ids=["plain", "chunked"])
@pytest.mark.parametrize(
    ("raw", "reference"),
    [(THREE, three_reference), (FIVE, five_reference)],
    ids=["3-rules", "5-rules"],
)
def test_evaluate_equals_a_row_by_row_reference(
    raw: list[dict[str, str]], reference: Callable[[Row], str], as_chunks: bool
) -> None:
    columns = random_columns(seed=len(raw))
    expected = [reference(row) for row in rows_of(columns)]
    rule_set = parse_rules(raw)
    assert set(expected) == set(rule_set.actions)  # every rule is exercised
    feed = {name: chunked(col) for name, col in columns.items()} if as_chunks else columns
    got = rule_set.evaluate(feed)
    assert isinstance(got, pa.Array) and got.type == pa.string() and got.null_count == 0
    assert got.to_pylist() == expected


def test_first_matching_rule_wins() -> None:
    score = {"s": pa.array([0.95, 0.6, 0.1])}
    high_first = [
        {"when": "s > 0.9", "action": "block"},
        {"when": "s > 0.5", "action": "review"},
        {"otherwise": "allow"},
    ]
    assert parse_rules(high_first).evaluate(score).to_pylist() == ["block", "review", "allow"]
    low_first = [high_first[1], high_first[0], high_first[2]]
    assert parse_rules(low_first).evaluate(score).to_pylist() == ["review", "review", "allow"]


@pytest.mark.parametrize("op", OPS)
def test_null_and_nan_operands_never_match(op: str) -> None:
    rule_set = parse_rules([{"when": f"s {op} 0.5", "action": "hit"}, {"otherwise": "miss"}])
    got = rule_set.evaluate({"s": pa.array([None, math.nan, 0.5], pa.float64())}).to_pylist()
    assert got[:2] == ["miss", "miss"]
    assert got[2] == ("hit" if op in (">=", "<=", "==") else "miss")


def test_null_strings_and_booleans_never_match() -> None:
    rule_set = parse_rules(
        [{"when": "l != 'a' or f != false", "action": "hit"}, {"otherwise": "miss"}]
    )
    columns = {"l": pa.array([None, "a", "b"]), "f": pa.array([None, None, False])}
    assert rule_set.evaluate(columns).to_pylist() == ["miss", "miss", "hit"]


def test_empty_plain_and_chunked_columns_give_an_empty_string_array() -> None:
    rule_set = parse_rules(THREE)
    for empty in (pa.array([], pa.float64()), pa.chunked_array([], pa.float64())):
        got = rule_set.evaluate({"ensemble.score": empty, "champion.score": empty})
        assert got.type == pa.string() and len(got) == 0


def test_an_otherwise_only_rule_set_needs_the_row_count() -> None:
    rule_set = parse_rules([{"otherwise": "allow"}])
    assert rule_set.evaluate({}, num_rows=3).to_pylist() == ["allow"] * 3
    assert rule_set.evaluate({"x": pa.array([1, 2])}).to_pylist() == ["allow"] * 2
    with pytest.raises(ValueError, match="num_rows"):
        rule_set.evaluate({})


# --- properties and describe -----------------------------------------------------------------


def test_refs_actions_and_thresholds() -> None:
    rule_set = parse_rules(FIVE)
    assert rule_set.refs == (
        "champion.predicted_label",
        "champion.score",
        "ensemble.score",
        "flagged",
        "tenure",
        "tenure_adj.prediction",
    )
    assert rule_set.actions == ("block", "escalate", "review", "watch", "allow")
    assert rule_set.thresholds == {
        "champion.score": (0.05, 0.25),
        "ensemble.score": (0.1, 0.7, 0.9),
        "tenure": (3.0, 40.0),
        "tenure_adj.prediction": (-1.5,),
    }


def test_actions_are_unique_in_rule_order() -> None:
    raw = [
        {"when": "a > 1", "action": "z"},
        {"when": "b > 1", "action": "y"},
        {"when": "c > 1", "action": "z"},
        {"otherwise": "y"},
    ]
    assert parse_rules(raw).actions == ("z", "y")


def test_describe_gives_one_readable_line_per_rule() -> None:
    assert parse_rules(FIVE).describe() == [
        'rules[0]: when (champion.predicted_label == "churn" and ensemble.score > 0.9) or '
        '(champion.predicted_label == "churn" and tenure_adj.prediction < -1.5) -> block',
        "rules[1]: when ensemble.score >= 0.7 or (champion.score != 0.25 and flagged == true)"
        " -> escalate",
        'rules[2]: when tenure == 3 or (tenure > 40 and champion.predicted_label != "stay")'
        " -> review",
        "rules[3]: when ensemble.score < 0.1 or champion.score <= 0.05 -> watch",
        "rules[4]: otherwise -> allow",
    ]


def test_described_conditions_parse_back_to_the_same_rules() -> None:
    original = parse_rules(FIVE)
    raw: list[dict[str, object]] = []
    for line in original.describe():
        body, action = line.split(": ", 1)[1].rsplit(" -> ", 1)
        raw.append(
            {"otherwise": action} if body == "otherwise" else {"when": body[5:], "action": action}
        )
    assert parse_rules(raw) == original


# --- the module itself -----------------------------------------------------------------------

# parsing lives in the config layer (no Arrow), evaluation in the scoring core
SOURCE = Path(rules_module.__file__).read_text() + Path(config_rules.__file__).read_text()


def test_the_module_never_evaluates_text() -> None:
    code = SOURCE.replace("re.compile(", "")
    assert not re.search(r"\b(eval|exec|compile|__import__)\s*\(", code)
    assert "import ast" not in SOURCE and "literal_eval" not in SOURCE


def test_the_module_imports_only_arrow_numpy_and_errors() -> None:
    imported = set(re.findall(r"^(?:from|import) ([\w.]+)", SOURCE, re.M))
    allowed = {"__future__", "re", "collections.abc", "dataclasses", "typing", "numpy", "pyarrow"}
    allowed.add("difflib")  # name suggestions in config.rules
    ours = {"pyarrow.compute", "batch_serving.errors", "batch_serving.config.rules"}
    assert imported <= allowed | ours, imported
    config_only = set(
        re.findall(r"^(?:from|import) ([\w.]+)", Path(config_rules.__file__).read_text(), re.M)
    )
    assert not {m for m in config_only if m.startswith(("pyarrow", "numpy"))}
