"""``check-input`` (the DAG's ``validate_input`` task) checks a Spark ML model's input as the
run would: the columns its scoring stages read, described by the ``spark_ml`` engine itself.
A partition with them passes (exit 0); one without a column the pipeline reads exits 4 naming
it; a label indexed by a StringIndexer at fit time is not required in the input, and its
labels are the classes ``positive_label`` names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, RUN_DATE, customers, labelled
from test_flavors_spark_ml import NUMERIC, assembler, fit, log_spark_model

from batch_serving.errors import ConfigError, InputValidationError
from batch_serving.runs.preflight import check_input


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return labelled(300, seed=5)


@pytest.fixture
def logistic(spark, tracking_uri, train, tmp_path) -> str:  # type: ignore[no-untyped-def]
    from pyspark.ml.classification import LogisticRegression

    train = train.assign(churned=train["churned"].astype(float))
    model = fit(spark, [assembler(), LogisticRegression(labelCol="churned")], train)
    return log_spark_model(tracking_uri, model, train[NUMERIC], tmp_path)


def check_input_command(tmp_path: Path, cfg) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """``batch-serving check-input`` in its own process, as the DAG runs it (its own JVM)."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    command = ["check-input", "--config", str(path), "--run-date", str(RUN_DATE), "--json"]
    return subprocess.run(
        [sys.executable, "-m", "batch_serving.cli", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_a_good_partition_passes_with_the_pipeline_columns_as_features(
    spark, warehouse, job_config, logistic
) -> None:
    warehouse(customers(40))

    found = check_input(job_config(logistic), RUN_DATE)

    (model,) = found.models
    assert (found.rows, model.kind) == (40, "binary")
    assert model.features == tuple(NUMERIC)  # the VectorAssembler's inputCols, in order


def test_a_partition_without_a_pipeline_column_exits_4_naming_it(
    tmp_path, warehouse, job_config, logistic
) -> None:
    warehouse(customers(40).drop(columns=["support_calls"]))

    done = check_input_command(tmp_path, job_config(logistic))

    assert done.returncode == 4, done.stderr
    assert "support_calls" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_same_command_passes_a_good_partition(
    tmp_path, warehouse, job_config, logistic
) -> None:
    warehouse(customers(40))

    done = check_input_command(tmp_path, job_config(logistic))

    assert done.returncode == 0, done.stderr
    (model,) = json.loads(done.stdout)["models"]
    assert (model["kind"], model["features"]) == ("binary", NUMERIC)


def test_the_label_a_string_indexer_indexed_at_fit_time_is_not_required(
    spark, tmp_path, tracking_uri, warehouse, job_config, train
) -> None:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer

    train = train.assign(label=np.where(train["churned"] == 1, "churn", "stay"))
    indexer = StringIndexer(inputCol="label", outputCol="y", stringOrderType="alphabetAsc")
    model = fit(spark, [indexer, assembler(), LogisticRegression(labelCol="y")], train)
    name = log_spark_model(tracking_uri, model, train[NUMERIC], tmp_path)
    rows = customers(30)
    assert "label" not in rows.columns
    warehouse(rows)
    cfg = job_config(name, model={"positive_label": "churn"})

    (checked,) = check_input(cfg, RUN_DATE).models

    assert checked.features == tuple(NUMERIC)
    with pytest.raises(ConfigError, match=r"positive_label 'other' is not a class.*'churn'"):
        check_input(job_config(name, model={"positive_label": "other"}), RUN_DATE)
    warehouse(rows.drop(columns=["tenure_months"]))
    with pytest.raises(InputValidationError, match="tenure_months") as err:
        check_input(cfg, RUN_DATE)
    assert err.value.exit_code == 4


def test_an_engine_that_cannot_score_it_exits_2_as_the_run_does(
    warehouse, job_config, logistic
) -> None:
    warehouse(customers(10))

    with pytest.raises(ConfigError, match=r"engine: arrow_direct cannot score .*flavor 'spark'"):
        check_input(job_config(logistic, engine="arrow_direct"), RUN_DATE)
