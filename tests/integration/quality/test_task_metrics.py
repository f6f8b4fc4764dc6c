"""Gate metrics counted inside the scoring tasks (``arrow_direct``): the same GX results as
GX's own validation, no Spark job for the gates, and the same outcome on both engines."""

from __future__ import annotations

import json
import logging
import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import RUN_DATE
from test_gates import BETWEEN_TENURE, Setup, runs_dir
from test_gx_gates import FAST, PASSING, ROWS, comparable, expectations

from batch_serving.config import ExpectationConfig
from batch_serving.quality.gates import finish_gate, plan_gate, validate_with_gx
from batch_serving.quality.metric_plan import Condition, MetricSpec
from batch_serving.quality.task_metrics import MetricCounts, supported
from batch_serving.runs.job import run_score

SCHEMA = pa.schema(
    [("id", pa.int64()), ("x", pa.float64()), ("cat", pa.string()), ("n", pa.int32())]
)


@pytest.fixture(scope="module")
def frame(spark):  # type: ignore[no-untyped-def]
    return spark.createDataFrame(ROWS, "id long, x double, cat string, n int")


def table() -> pa.Table:
    return pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in ROWS], SCHEMA)


def counted(specs: tuple[MetricSpec, ...], batches: list[pa.RecordBatch]) -> MetricCounts:
    """Each batch counted by its own "task", shipped through pickle, merged (as Spark does)."""
    total = MetricCounts.empty(specs)
    for batch in batches:
        partial = MetricCounts.empty(specs)
        partial.add(specs, batch)
        total = total.merge(pickle.loads(pickle.dumps(partial)), specs)
    return total


def never() -> Any:
    raise AssertionError("a gate answered by the tasks must not query Spark")


@pytest.mark.parametrize("chunk", [1, 4, 6])
@pytest.mark.parametrize("specs", [FAST, PASSING], ids=["failing", "passing"])
def test_task_counted_results_equal_gx_own_validation(frame, specs, chunk) -> None:  # type: ignore[no-untyped-def]
    configs = tuple(ExpectationConfig.model_validate(s) for s in specs)
    gate = plan_gate("t", configs, 5, SCHEMA)
    assert gate is not None and set(gate.in_task) == set(range(len(specs)))
    counts = counted(gate.metrics, table().to_batches(max_chunksize=chunk))
    ours = finish_gate(gate, counts, never).raw["results"]
    theirs = validate_with_gx(frame, "t", expectations(specs))
    for i, expected in enumerate(theirs):
        got = json.loads(json.dumps(ours[i], default=str))
        got["expectation_config"].pop("id", None)
        assert got == comparable(expected), specs[i]


def test_moments_and_extremes_equal_spark_on_many_rows(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    x = rng.normal(3.0, 2.0, 50_000)
    x[::997] = np.nan
    values = pa.array(x, mask=np.arange(len(x)) % 101 == 0)
    data = pa.table({"x": values, "k": pa.array(rng.integers(-5, 1000, len(x)))})
    path = tmp_path / "rows.parquet"
    import pyarrow.parquet as pq

    pq.write_table(data, path)
    df = spark.read.parquet(str(path))
    kinds = ("min", "max", "mean", "stddev")
    specs = (
        *(MetricSpec(kind, c) for c in ("x", "k") for kind in kinds),  # type: ignore[arg-type]
        MetricSpec("row_count"),
        MetricSpec("unexpected_count", "x", Condition("between", 0.0, 6.0)),
        MetricSpec("unexpected_count", "x", Condition("between", low=0.0)),  # NaN above all
        MetricSpec("unexpected_count", "k", Condition("not_in_set", values=(1, 2, 3))),
        MetricSpec("unexpected_count", "x", Condition("nonnull")),
    )
    assert all(supported(s, data.schema) for s in specs)
    got = counted(specs, data.to_batches(max_chunksize=6_000)).values(specs)
    from batch_serving.quality.onepass import aggregate

    (row,) = df.agg(*[aggregate(s).alias(f"m{i}") for i, s in enumerate(specs)]).collect()
    for i, spec in enumerate(specs):
        want = row[f"m{i}"]
        if isinstance(want, float) and np.isnan(want):
            assert np.isnan(got[i]), spec
        elif isinstance(want, float):
            assert got[i] == pytest.approx(want, rel=1e-12), spec
        else:
            assert got[i] == want and type(got[i]) is type(want), spec


def test_unsupported_metrics_fall_back_to_spark() -> None:
    schema = pa.schema([("s", pa.string()), ("d", pa.decimal128(10, 2)), ("t", pa.date32())])
    assert not supported(MetricSpec("min", "s"), schema)  # string order: Spark's, not ours
    assert not supported(MetricSpec("mean", "d"), schema)
    assert not supported(MetricSpec("unexpected_values", "t", Condition("null")), schema)
    assert not supported(
        MetricSpec("unexpected_count", "s", Condition("in_set", values=(1, "a"))), schema
    )
    assert supported(MetricSpec("unexpected_values", "t", Condition("nonnull")), schema)
    configs = (  # a set of mixed types and a window condition: answered by Spark / GX
        ExpectationConfig.model_validate({"type": "in_set", "column": "n", "values": ["5", 7]}),
        ExpectationConfig.model_validate({"type": "unique", "column": "n"}),
        ExpectationConfig.model_validate({"type": "not_null", "column": "x"}),
    )
    gate = plan_gate("t", configs, None, SCHEMA)
    assert gate is not None and set(gate.in_task) == {2}


@pytest.fixture
def setup(spark, tmp_path, register, warehouse, job_config):  # type: ignore[no-untyped-def]
    return Setup(spark, tmp_path, register, warehouse, job_config)


def test_both_engines_gate_alike_and_arrow_direct_queries_spark_for_neither_gate(
    setup, capsys, caplog
) -> None:  # type: ignore[no-untyped-def]
    bad = setup.rows.copy()
    bad.loc[bad["customer_id"] < 3, "tenure_months"] = 9999.0
    validation = {
        "input_expectations": [BETWEEN_TENURE, {"type": "not_null", "column": "customer_id"}],
        "output_expectations": [{"type": "between", "column": "score", "min": 0, "max": 1}],
    }
    saved = {}
    for engine in ("arrow_direct", "dataframe"):
        code, out = setup.cli(bad, capsys, validation=validation, engine=engine)
        assert code == 4, out
        assert "3 of 400 rows unexpected" in out
        assert setup.unchanged()
        reports = sorted(runs_dir(setup).rglob("_validation.json"), key=lambda p: p.stat().st_mtime)
        saved[engine] = json.loads(reports[-1].read_text())["input"]["gx"]["results"]
    assert [r["result"] for r in saved["arrow_direct"]] == [r["result"] for r in saved["dataframe"]]

    setup.warehouse(setup.rows)  # good rows again: both gates pass, counted while scoring
    caplog.set_level(logging.INFO, logger="batch_serving.quality.gates")
    cfg = setup.job_config(setup.name, validation=validation, engine="arrow_direct")
    result = run_score(setup.spark, cfg, RUN_DATE)
    assert result.manifest.validation["output"].success
    assert (
        "input gate: 2/2 expectations passed (2 counted while scoring, 0 by Spark)" in caplog.text
    )
    assert (
        "output gate: 1/1 expectations passed (1 counted while scoring, 0 by Spark)" in caplog.text
    )
