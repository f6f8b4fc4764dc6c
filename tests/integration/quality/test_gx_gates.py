"""GX gates in one pass: the same results as GX's own validation, from one Spark job; any GX
expectation by class name; a wrong class or argument is a config error (exit 2)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from conftest import RUN_DATE
from pyspark.sql import functions as F
from test_bad_input import Setup

from batch_serving.config import ExpectationConfig
from batch_serving.errors import ConfigError
from batch_serving.quality import catalog
from batch_serving.quality.gates import run_gate, to_gx, validate_with_gx
from batch_serving.quality.onepass import validate_in_one_pass

ROWS = [  # nulls, a NaN, out-of-range and unexpected categories on purpose
    (1, 10.0, "a", 5),
    (2, None, "b", 7),
    (3, 700.0, "zz", None),
    (4, float("nan"), None, 9),
    (5, -1.0, "a", 11),
    (6, 20.0, "c", 5),
]

FAST = [
    {"type": "not_null", "column": "x"},
    {"type": "null_fraction", "column": "x", "max_fraction": 0.2},
    {"type": "between", "column": "x", "min": 0, "max": 600},
    {"type": "in_set", "column": "cat", "values": ["a", "b", "c"]},
    {
        "expectation": "ExpectColumnValuesToBeBetween",
        "column": "n",
        "min_value": 5,
        "strict_min": True,
        "mostly": 0.5,
    },
    {"expectation": "expect_column_values_to_not_be_in_set", "column": "cat", "value_set": ["zz"]},
    {"expectation": "ExpectColumnValuesToBeNull", "column": "cat"},
    {"expectation": "ExpectTableRowCountToBeBetween", "min_value": 1, "max_value": 5},
    {"expectation": "ExpectColumnMaxToBeBetween", "column": "n", "max_value": 10},
    {"expectation": "ExpectColumnMeanToBeBetween", "column": "n", "min_value": 5},
    {"expectation": "ExpectColumnMinToBeBetween", "column": "x", "min_value": 0},
    {"expectation": "ExpectColumnStdevToBeBetween", "column": "n", "max_value": 1},
    {"expectation": "ExpectColumnToExist", "column": "missing"},
]
PASSING = [
    {"type": "not_null", "column": "id"},
    {"type": "between", "column": "id", "min": 1, "max": 6},
    {"type": "in_set", "column": "n", "values": [5, 7, 9, 11]},
    {"type": "row_count_change", "max_change_pct": 50},
    {"expectation": "ExpectColumnMaxToBeBetween", "column": "n", "max_value": 11},
    {"expectation": "ExpectColumnMeanToBeBetween", "column": "n", "min_value": 5},
    {"expectation": "ExpectColumnToExist", "column": "cat"},
]
SLOW = [
    {"type": "unique", "column": "n"},  # a window condition: GX runs it
    {"expectation": "ExpectColumnValuesToMatchRegex", "column": "cat", "regex": "^[a-c]$"},
    {
        "expectation": "ExpectColumnValuesToBeBetween",
        "column": "x",
        "min_value": 0,
        "row_condition": 'col("n") > 5',
        "condition_parser": "great_expectations",
    },
]


@pytest.fixture(scope="module")
def frame(spark):  # type: ignore[no-untyped-def]
    return spark.createDataFrame(ROWS, "id long, x double, cat string, n int")


def expectations(specs: list[dict[str, Any]]) -> list[Any]:
    return [to_gx(ExpectationConfig.model_validate(s), 5) for s in specs]


def comparable(result: Any) -> dict[str, Any]:
    """A result as JSON, without the batch id GX's own run adds (ours has no batch)."""
    data = json.loads(json.dumps(result.to_json_dict(), default=str))
    data["expectation_config"]["kwargs"].pop("batch_id", None)
    data["expectation_config"].pop("id", None)
    return data


def test_catalogue_matches_the_installed_great_expectations() -> None:
    assert catalog.CATALOG_FILE.read_text() == catalog.render(catalog.build_catalog()), (
        "regenerate with: python -m batch_serving.quality.catalog"
    )


def jobs_run(spark, action):  # type: ignore[no-untyped-def]
    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup())
    value = action()
    return value, len(set(tracker.getJobIdsForGroup()) - before)


def test_passing_expectations_take_one_spark_job(spark, frame) -> None:  # type: ignore[no-untyped-def]
    _, one_aggregation = jobs_run(spark, lambda: frame.agg(F.count(F.lit(1))).collect())
    (ours, rest), jobs = jobs_run(spark, lambda: validate_in_one_pass(frame, expectations(PASSING)))
    assert rest == [] and jobs == one_aggregation  # (2 jobs with adaptive execution)
    assert all(r.success for r in ours.values()) and len(ours) == len(PASSING)
    _, gx_jobs = jobs_run(spark, lambda: validate_with_gx(frame, "t", expectations(PASSING)))
    assert gx_jobs > 3  # what the one pass saves: GX's own run of the same expectations


def test_one_pass_results_equal_gx_own_validation(spark, frame) -> None:  # type: ignore[no-untyped-def]
    (ours, rest), jobs = jobs_run(spark, lambda: validate_in_one_pass(frame, expectations(FAST)))
    assert rest == []
    # one aggregation, plus a `limit` query (1-2 jobs) per map expectation with unexpected values
    failing_maps = sum(1 for r in ours.values() if (r.result or {}).get("unexpected_count"))
    assert failing_maps == 7
    _, one_aggregation = jobs_run(spark, lambda: frame.agg(F.count(F.lit(1))).collect())
    assert one_aggregation + failing_maps <= jobs <= one_aggregation + 2 * failing_maps

    theirs = validate_with_gx(frame, "t", expectations(FAST))
    for i, expected in enumerate(theirs):
        assert comparable(ours[i]) == comparable(expected), FAST[i]
    between = ours[2].result  # x between 0 and 600: -1 and 700 (NaN as GX counts it)
    assert between["unexpected_count"] == 3  # NaN sorts above every number in Spark
    assert sorted(v for v in between["partial_unexpected_list"] if v == v) == [-1.0, 700.0]
    assert [r.success for r in ours.values()].count(False) == 10


def test_other_expectations_run_through_gx_and_keep_declared_order(frame) -> None:  # type: ignore[no-untyped-def]
    specs = [FAST[0], SLOW[0], FAST[2], SLOW[1], SLOW[2]]
    _, rest = validate_in_one_pass(frame, expectations(specs))
    assert rest == [1, 3, 4]
    gate = run_gate(frame, "input", tuple(ExpectationConfig.model_validate(s) for s in specs), None)
    types = [r["expectation_config"]["type"] for r in gate.raw["results"]]
    assert types == [
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_be_between",
    ]
    theirs = validate_with_gx(frame, "t", expectations(specs))
    for got, expected in zip(gate.raw["results"], theirs, strict=True):
        assert got["success"] == expected.success
        assert got["result"].get("unexpected_count") == expected.result.get("unexpected_count")
    assert not gate.success
    assert any("expect_column_values_to_match_regex(column=cat" in f for f in gate.failures)
    assert gate.raw["statistics"]["evaluated_expectations"] == 5


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"expectation": "ExpectColumnValuesToBeBetwen", "column": "x"},
            "unknown Great Expectations expectation 'ExpectColumnValuesToBeBetwen'; "
            "did you mean ExpectColumnValuesToBeBetween",
        ),
        (
            {"expectation": "expect_column_values_to_be_between", "column": "x", "min": 0},
            "ExpectColumnValuesToBeBetween has no argument(s) ['min']",
        ),
        (
            {"expectation": "ExpectColumnValuesToBeInSet", "column": "x"},
            "ExpectColumnValuesToBeInSet needs argument(s) ['value_set']",
        ),
        (
            {"type": "between", "expectation": "ExpectColumnToExist", "column": "x"},
            "set exactly one of `type`",
        ),
    ],
)
def test_wrong_class_or_argument_is_a_config_error_at_load(
    tmp_path, capsys, entry: dict[str, Any], message: str
) -> None:  # type: ignore[no-untyped-def]
    from batch_serving.cli import main

    source = yaml.safe_load((catalog.CATALOG_FILE.parents[3] / "conf/jobs/churn.yaml").read_text())
    source["validation"]["input_expectations"] = [entry]
    path = tmp_path / "conf" / "jobs" / "bad.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(source))
    code = main(["score", "--config", str(path), "--run-date", "2026-01-01"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "validation.input_expectations.0" in err and message in err


def test_wrong_argument_value_is_a_config_error_naming_the_expectation() -> None:
    entry = ExpectationConfig.model_validate(
        {"expectation": "ExpectColumnValuesToBeBetween", "column": "x", "mostly": "most"}
    )
    with pytest.raises(ConfigError, match=r"ExpectColumnValuesToBeBetween.*mostly"):
        to_gx(entry, None, "output")


@pytest.fixture
def setup(spark, tmp_path, register, warehouse, job_config):  # type: ignore[no-untyped-def]
    return Setup(spark, tmp_path, register, warehouse, job_config)


def test_any_gx_class_gates_a_run_with_gx_messages(setup, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = setup.rows.copy()
    bad.loc[bad["customer_id"] < 4, "contract"] = "lifetime"
    validation = {
        "input_expectations": [
            {
                "expectation": "expect_column_values_to_match_regex",
                "column": "contract",
                "regex": "^(month-to-month|one-year|two-year)$",
            },
            {
                "expectation": "ExpectColumnValuesToNotBeInSet",
                "column": "contract",
                "value_set": ["lifetime"],
                "blocking": False,
            },
        ]
    }
    code, out = setup.cli(bad, capsys, validation=validation)
    assert code == 4, out
    assert "expect_column_values_to_match_regex(column=contract" in out
    assert "4 of 400 rows unexpected" in out
    assert setup.unchanged()
    report = next((setup.tmp / "out" / "_runs").rglob("_validation.json"), None) or next(
        setup.tmp.rglob("_validation.json")
    )
    saved = json.loads(report.read_text())["input"]
    assert saved["success"] is False
    assert saved["warnings"] and "expect_column_values_to_not_be_in_set" in saved["warnings"][0]
    assert [r["result"]["unexpected_count"] for r in saved["gx"]["results"]] == [4, 4]
    assert str(RUN_DATE) in out
