"""#23.2: ``output.format: delta`` on real runs: both engines write the same rows as the Parquet
format; a rerun is one new version with the same rows; time travel returns the earlier run's
rows (``VERSION AS OF`` through the SQL catalog); a commit that fails leaves the old version."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import builders
import pandas as pd
import pytest
from conftest import RUN_DATE, customers, labelled
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from batch_serving.errors import StorageError
from batch_serving.runs.job import run_score
from batch_serving.tables import delta_commit
from batch_serving.tables.manifest import read_manifest

VOLATILE = ("scored_at", "run_id")  # differ from run to run by design


def rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Comparable rows: no per-run columns, ``ds`` as text, a fixed order."""
    frame = frame.drop(columns=[c for c in VOLATILE if c in frame.columns])
    if "ds" in frame.columns:
        frame = frame.assign(ds=frame["ds"].astype(str))
    return frame.sort_values("customer_id").reset_index(drop=True)


@pytest.fixture
def model(register: Callable[..., tuple[str, int]], warehouse: Callable[..., Path]) -> str:
    fitted, _ = builders.logreg_pipeline(labelled(300))
    data = customers(120, seed=5)
    name, _ = register(fitted, data[builders.FEATURES])
    warehouse(data)
    return name


def test_both_engines_commit_the_parquet_runs_rows_and_a_rerun_is_one_new_version(
    spark: SparkSession, job_config: Callable[..., Any], model: str, tmp_path: Path
) -> None:
    parquet = run_score(spark, job_config(model, engine="arrow_direct"), RUN_DATE)
    expected = rows(pd.read_parquet(str(parquet.committed.path)))
    for engine in ("arrow_direct", "dataframe"):
        root = tmp_path / f"delta_{engine}"
        cfg = job_config(model, engine=engine, output={"root": str(root), "format": "delta"})
        first = run_score(spark, cfg, RUN_DATE)
        table = str(root / "predictions" / model)
        assert first.committed.version == 0 and first.committed.rows == len(expected) == 120
        got = spark.read.format("delta").load(table).toPandas()
        pd.testing.assert_frame_equal(rows(got.drop(columns="ds")), expected, rtol=1e-12)
        assert set(got["ds"].astype(str)) == {RUN_DATE.isoformat()}

        again = run_score(spark, cfg, RUN_DATE)
        assert again.committed.version == 1 and DeltaTable(table).version() == 1
        now = spark.read.format("delta").load(table).toPandas()
        before = spark.read.format("delta").option("versionAsOf", 0).load(table).toPandas()
        pd.testing.assert_frame_equal(rows(now), rows(got), rtol=1e-12)
        pd.testing.assert_frame_equal(rows(before), rows(got))
        manifest = read_manifest(again.committed.path)
        assert manifest is not None and manifest.run_id == again.manifest.run_id


def test_time_travel_through_the_sql_catalog_returns_the_earlier_runs_rows(
    spark: SparkSession,
    job_config: Callable[..., Any],
    model: str,
    warehouse: Callable[..., Path],
    tmp_path: Path,
) -> None:
    db = f"dp_{uuid.uuid4().hex[:8]}"
    catalog = {"enabled": True, "predictions_database": db, "quarantine_database": f"{db}_q"}
    cfg = job_config(
        model, output={"root": str(tmp_path / "out"), "format": "delta"}, catalog=catalog
    )
    run_score(spark, cfg, RUN_DATE)
    later = RUN_DATE + dt.timedelta(days=1)
    warehouse(customers(50, seed=8), later)
    second = run_score(spark, cfg, later)
    assert second.committed.version == 1 and f"{db}.{model}" in second.after.tables
    count = "SELECT count(*) FROM {db}.{model} {travel}"
    assert spark.sql(count.format(db=db, model=model, travel="")).first()[0] == 170
    assert spark.sql(count.format(db=db, model=model, travel="VERSION AS OF 0")).first()[0] == 120
    latest = spark.sql(
        f"SELECT count(*) FROM {db}.{model} VERSION AS OF 1 WHERE ds = DATE'{later}'"
    ).first()[0]
    assert latest == 50


def test_a_commit_that_fails_after_staging_leaves_the_previous_version_whole(
    spark: SparkSession, job_config: Callable[..., Any], model: str, tmp_path: Path
) -> None:
    root = tmp_path / "out"
    cfg = job_config(model, output={"root": str(root), "format": "delta"})
    first = run_score(spark, cfg, RUN_DATE)
    table = root / "predictions" / model
    refused = StorageError(f"Delta commit of {table} ds={RUN_DATE} failed: conflict")
    with (
        mock.patch.object(delta_commit, "commit_files", side_effect=refused),
        pytest.raises(StorageError, match=r"Delta commit of .*predictions"),
    ):
        run_score(spark, cfg, RUN_DATE)
    assert DeltaTable(str(table)).version() == 0
    runs = sorted(p.name for p in (table / f"ds={RUN_DATE}" / "_runs").iterdir())
    assert runs == [first.manifest.run_id]  # the failed run's staging is gone
    got = spark.read.format("delta").load(str(table)).toPandas()
    committed = pd.read_parquet(str(first.committed.path))
    pd.testing.assert_frame_equal(rows(got.drop(columns="ds")), rows(committed))
