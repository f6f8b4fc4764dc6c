"""SQL tables in the Hive metastore, DuckDB reading the same files, MLflow run records."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import builders
import cloudpickle
import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import RUN_DATE, Scored, customers, labelled
from mlflow import MlflowClient

from batch_serving.runs.job import run_score
from batch_serving.tables.manifest import read_after_commit, read_manifest

cloudpickle.register_pickle_by_value(builders)


def test_committed_partitions_are_sql_tables(spark, scored: Scored) -> None:
    day0, day1 = scored.dates
    partitions = [r[0] for r in spark.sql("SHOW PARTITIONS predictions.served").collect()]
    assert partitions == [f"ds={day0}", f"ds={day1}"]
    got = spark.sql(
        f"SELECT customer_id, score FROM predictions.served WHERE ds = DATE'{day1}'"
    ).toPandas()
    assert len(got) == 500
    expected = pd.Series(scored.expected[day1])
    assert np.max(np.abs(got.set_index("customer_id")["score"].sort_index() - expected)) <= 1e-12
    # quarantine table: registered only once a quarantine partition holds rows
    assert not spark.catalog.tableExists("quarantine.served")


def test_rerun_is_idempotent_in_the_catalog(spark, register, warehouse, job_config) -> None:
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(200)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows)
    warehouse(customers(150, seed=9), RUN_DATE - dt.timedelta(days=1))
    cfg = job_config(name, catalog={"enabled": True})

    for day in (RUN_DATE, RUN_DATE - dt.timedelta(days=1), RUN_DATE):  # a rerun of RUN_DATE
        after = run_score(spark, cfg, day).after
        assert after.tables == [f"predictions.{name}"]

    counts = spark.sql(f"SELECT ds, count(*) AS n FROM predictions.{name} GROUP BY ds ORDER BY ds")
    assert [(str(r.ds), r.n) for r in counts.collect()] == [
        (str(RUN_DATE - dt.timedelta(days=1)), 150),
        (str(RUN_DATE), 200),
    ]


def test_duckdb_reads_the_same_rows_as_spark(spark, scored: Scored) -> None:
    table_dir = Path(scored.cfg.output.root) / "predictions" / "served"
    duck = duckdb.sql(
        f"SELECT customer_id, score, model_version, CAST(ds AS VARCHAR) AS ds "
        f"FROM read_parquet('{table_dir}/*/*.parquet', hive_partitioning = true) "
        "ORDER BY ds, customer_id"
    ).df()
    sparkdf = spark.sql(
        "SELECT customer_id, score, model_version, CAST(ds AS STRING) AS ds "
        "FROM predictions.served ORDER BY ds, customer_id"
    ).toPandas()
    assert len(duck) == 1000
    pd.testing.assert_frame_equal(duck, sparkdf, check_dtype=False)


def test_each_run_is_an_mlflow_run(scored: Scored) -> None:
    client = MlflowClient(tracking_uri=scored.cfg.model.tracking_uri)
    experiment = client.get_experiment_by_name("served-runs")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"params.run_date = '{scored.dates[1]}'"
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model_ref"] == "models:/served@champion"
    assert run.data.params["engine"] == "arrow_direct"
    metrics = run.data.metrics
    assert (metrics["rows_in"], metrics["rows_out"], metrics["rows_quarantined"]) == (500, 500, 0)
    scores = np.array(list(scored.expected[scored.dates[1]].values()))
    assert metrics["score_mean"] == pytest.approx(scores.mean(), abs=1e-9)
    assert metrics["score_p50"] == pytest.approx(np.median(scores), abs=0.02)
    assert metrics["duration_score_and_stage_s"] >= 0
    # partition -> run record -> MLflow run (the committed manifest is never rewritten: #17)
    output = Path(scored.cfg.output.root)
    manifest = read_manifest(output / "predictions" / "served" / f"ds={scored.dates[1]}")
    assert manifest is not None
    assert run.data.tags["batch_serving.run_id"] == manifest.run_id
    record = read_after_commit(output / "_runs" / "predictions" / "served" / manifest.run_id)
    assert record is not None and record.mlflow_run_id == run.info.run_id


def test_quarantine_table_holds_rows_that_could_not_be_scored(
    spark, register, warehouse, job_config
) -> None:
    model, _ = builders.logreg_pipeline(labelled(400))
    rows = customers(200)
    rows.loc[rows["customer_id"].isin([3, 8]), "monthly_charges"] = np.nan
    name, _ = register(model, customers(50)[builders.FEATURES])
    warehouse(rows)
    cfg = job_config(name, catalog={"enabled": True}, validation={"max_bad_rows": 5})

    result = run_score(spark, cfg, RUN_DATE)

    assert result.after.tables == [f"predictions.{name}", f"quarantine.{name}"]
    bad = spark.sql(f"SELECT customer_id, error_class FROM quarantine.{name} ORDER BY customer_id")
    assert [r.customer_id for r in bad.collect()] == [3, 8]
    assert spark.table(f"predictions.{name}").count() == 198
