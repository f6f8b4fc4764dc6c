"""Great Expectations gates: a failing input gate stops the run (before scoring with the
dataframe engine, right after the scoring pass that counted its metrics with arrow_direct),
a failing output gate stops the commit; nothing is committed either way."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import RUN_DATE, customers
from test_bad_input import Setup

BETWEEN_TENURE = {"type": "between", "column": "tenure_months", "min": 0, "max": 600}


@pytest.fixture
def setup(spark, tmp_path, register, warehouse, job_config):  # type: ignore[no-untyped-def]
    return Setup(spark, tmp_path, register, warehouse, job_config)


def runs_dir(setup: Setup) -> Path:
    return Path(setup.job_config(setup.name).output.root) / "_runs" / "predictions" / setup.name


def test_input_gate_failure_commits_nothing(setup, capsys) -> None:
    bad = setup.rows.copy()
    bad.loc[bad["customer_id"] < 3, "tenure_months"] = 9999.0
    code, out = setup.cli(bad, capsys, validation={"input_expectations": [BETWEEN_TENURE]})
    assert code == 4, out
    assert "input validation failed" in out
    assert "expect_column_values_to_be_between(column=tenure_months" in out
    assert "3 of 400 rows unexpected" in out
    assert setup.unchanged()
    (report,) = runs_dir(setup).glob("*/_validation.json")
    saved = json.loads(report.read_text())
    assert saved["input"]["success"] is False
    assert (report.parent / "_validation.html").read_text().count("FAIL") >= 1
    docs = (report.parent / "_datadocs_input.html").read_text()  # GX's own Data Docs page
    assert "tenure_months" in docs and "3 unexpected values found" in docs
    assert "Failed" in docs and "9999" in docs


def test_output_gate_failure_discards_staged_output(setup, capsys) -> None:
    strict = {"type": "between", "column": "score", "min": 0, "max": 0.5}
    code, out = setup.cli(None, capsys, validation={"output_expectations": [strict]})
    assert code == 6
    assert "output validation failed" in out and "column=score" in out
    assert setup.unchanged()
    staging = Path(setup.job_config(setup.name).output.root) / "_staging"
    assert not list(staging.rglob("*.parquet"))


def test_passing_gates_write_reports_beside_manifest_and_check_row_counts(setup, capsys) -> None:
    validation = {
        "input_expectations": [
            BETWEEN_TENURE,
            {"type": "row_count_change", "max_change_pct": 50},
            {"type": "unique", "column": "customer_id", "blocking": False},
        ],
        "output_expectations": [{"type": "between", "column": "score", "min": 0, "max": 1}],
    }
    code, out = setup.cli(None, capsys, validation=validation)
    assert code == 0, out
    manifest = json.loads((setup.partition / "_manifest.json").read_text())
    assert manifest["validation"]["input"]["success"] is True
    assert manifest["validation"]["output"]["success"] is True
    assert (setup.partition / "_validation.html").is_file()
    assert pq.read_table(setup.partition).num_rows == 400  # reports are not read as data

    next_day = RUN_DATE + dt.timedelta(days=1)
    setup.warehouse(customers(100), next_day)  # 400 -> 100 rows: -75%
    path = setup.tmp / "job.yaml"
    from batch_serving.cli import main

    code = main(["score", "--config", str(path), "--run-date", str(next_day)])
    err = capsys.readouterr().err
    assert code == 4
    assert "expect_table_row_count_to_be_between(min_value=200, max_value=600): observed 100" in err
