"""Both engines in both formats on S3 (moto_server on loopback, one per test session).

arrow_direct reads and writes with pyarrow's S3 client; the dataframe engine with Spark's own
s3a connector (hadoop-aws from ``make jars``, the job's ``storage.s3`` as ``fs.s3a.*``
settings). Parquet commits with the pointer protocol, Delta with its log (delta-rs on the same
bucket). Each case: the scores equal the model's own ``predict_proba`` on the rows, a run
with new inputs replaces the date, a rerun of the same input commits the same rows once, and
no staging is left; Delta: each run is one table version and an earlier version's rows come
back (delta-rs, and Spark's Delta source over s3a).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import numpy as np
import pandas as pd
import pytest
from conftest import RUN_DATE, customers, labelled, register_model
from pyspark.sql import SparkSession
from test_s3 import keys, scores, write_input

from batch_serving import sample_data
from batch_serving.config import JobConfig, StorageConfig
from batch_serving.runs.job import RunResult, run_score
from batch_serving.storage import location, resolve
from batch_serving.tables.delta_commit import open_table
from batch_serving.tables.layout import predictions_layout

cloudpickle.register_pickle_by_value(builders)

ROWS = 150
CASES = [
    pytest.param("arrow_direct", "parquet", id="arrow_direct-parquet"),
    pytest.param("dataframe", "parquet", id="dataframe-parquet"),
    pytest.param("arrow_direct", "delta", id="arrow_direct-delta"),
    pytest.param("dataframe", "delta", id="dataframe-delta"),
]


@pytest.fixture(scope="module")
def model(tracking_uri: str) -> tuple[str, Callable[[pd.DataFrame], Any]]:
    """One registered model for the module, with its in-process oracle."""
    fitted, oracle = builders.logreg_pipeline(labelled(400))
    name = f"s3e_{uuid.uuid4().hex[:8]}"
    register_model(tracking_uri, fitted, customers(50)[builders.FEATURES], name=name)
    return name, oracle


def config(
    s3: Any, tmp_path: Path, model: str, tracking_uri: str, engine: str, fmt: str
) -> JobConfig:
    """A job whose input and output are in a fresh bucket."""
    bucket = f"bs-{uuid.uuid4().hex[:12]}"
    location(f"s3://{bucket}", StorageConfig.model_validate(s3.storage)).mkdir()
    return JobConfig.model_validate(
        {
            "job": "s3_engines",
            "model": {"name": model, "alias": "champion", "tracking_uri": tracking_uri},
            "input": {"path": f"s3://{bucket}/warehouse/features"},
            "output": {"root": f"s3://{bucket}/out", "format": fmt},
            "engine": engine,
            "entity_columns": [sample_data.ENTITY],
            "spark": {"master": "local[2]"},
            "catalog": {"enabled": False},
            "tracking": {"log_runs": False},
            "storage": {**s3.storage, "lease_dir": str(tmp_path / "leases")},
        }
    )


def expected(oracle: Callable[[pd.DataFrame], Any], rows: pd.DataFrame) -> pd.Series:
    score = pd.Series(oracle(rows)["score"], index=rows[sample_data.ENTITY].to_numpy())
    return score.sort_index()


def assert_scores(got: pd.Series, want: pd.Series) -> None:
    assert len(got) == len(want) == ROWS and got.index.equals(want.index)
    assert np.max(np.abs(got.to_numpy() - want.to_numpy())) <= 1e-12


@pytest.mark.slow
@pytest.mark.parametrize(("engine", "fmt"), CASES)
def test_both_engines_score_s3_in_both_formats(
    spark: SparkSession,
    s3: Any,
    tmp_path: Path,
    model: tuple[str, Callable[[pd.DataFrame], Any]],
    tracking_uri: str,
    engine: str,
    fmt: str,
) -> None:
    name, oracle = model
    cfg = config(s3, tmp_path, name, tracking_uri, engine, fmt)
    old, new = customers(ROWS, seed=3), customers(ROWS, seed=8)
    runs: list[RunResult] = []
    for rows in (old, new, new):  # a run, one with new inputs, a rerun of the same inputs
        write_input(cfg, rows, tmp_path)
        runs.append(run_score(spark, cfg, RUN_DATE))
        assert runs[-1].manifest.scoring.engine == engine
        assert runs[-1].committed.rows == ROWS
        assert_scores(scores(cfg), expected(oracle, rows))
    assert len({run.manifest.run_id for run in runs}) == 3

    root = resolve(cfg.output.root, cfg.storage)
    assert not [k for k in keys(root) if k.startswith("_staging/")]
    layout = predictions_layout(cfg.output.root, name, cfg.storage)  # format found, not given
    partition = layout.partition_dir(RUN_DATE)
    assert layout.protocol.name == ("delta" if fmt == "delta" else "pointer")
    assert ("_COMMITTED.json" in keys(partition)) == (fmt == "parquet")
    assert layout.current_run_id(RUN_DATE) == runs[-1].manifest.run_id
    if fmt == "parquet":
        return

    assert [run.committed.version for run in runs] == [0, 1, 2]
    table = layout.table_dir
    assert open_table(table).version() == 2
    for version, rows in ((0, old), (1, new), (2, new)):  # time travel through delta-rs
        frame = open_table(table, version).to_pyarrow_table().to_pandas()
        got = frame.set_index(sample_data.ENTITY)["score"].sort_index()
        assert_scores(got, expected(oracle, rows))
        assert set(frame["ds"].astype(str)) == {RUN_DATE.isoformat()}
    # ... and through Spark's Delta source over s3a (delta-spark + hadoop-aws jars)
    spark_old = spark.read.format("delta").option("versionAsOf", 0).load(table.spark_uri)
    got = spark_old.select(sample_data.ENTITY, "score").toPandas()
    assert_scores(got.set_index(sample_data.ENTITY)["score"].sort_index(), expected(oracle, old))
