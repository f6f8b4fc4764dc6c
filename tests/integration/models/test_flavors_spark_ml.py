"""Spark ML pipelines with the ``spark`` flavor (``mlflow.spark``'s layout) are scored by Spark
itself (engine ``spark_ml``): every written score equals ``model.transform`` of the same rows
(1e-12), the positive class's probability found by label (a StringIndexer's labels, else the
class index), a regressor's ``prediction``; rows the pipeline cannot take are quarantined.
Everything that scores through the Arrow core refuses such a model before scoring, naming the
flavor."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import RUN_DATE, customers, labelled

from batch_serving import sample_data
from batch_serving.cli import main
from batch_serving.errors import ModelLoadError
from batch_serving.runs.job import run_score

NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]
ID = sample_data.ENTITY
_names = itertools.count()


def log_spark_model(tracking_uri: str, model: Any, sample: pd.DataFrame, tmp: Path) -> str:
    """Log ``model`` as ``mlflow.spark.log_model`` lays it out (``sparkml/`` + an MLmodel with
    the spark and python_function flavors and a signature), register it, alias it champion.
    mlflow.spark's own save copies through Hadoop's LocalFileSystem, which the session's
    RawLocalFileSystem is not (ClassCastException), so the pipeline is written by Spark here."""
    import mlflow
    import pyspark
    from mlflow import MlflowClient
    from mlflow.models import Model, infer_signature
    from mlflow.pyfunc import add_to_model

    name = f"spark_ml_{next(_names)}"
    local = tmp / name
    model.write().overwrite().save(str(local / "sparkml"))
    meta = Model(signature=infer_signature(sample))
    meta.add_flavor(
        "spark",
        pyspark_version=pyspark.__version__,
        model_data="sparkml",
        model_class="pyspark.ml.pipeline.PipelineModel",
    )
    add_to_model(meta, loader_module="mlflow.spark", data="sparkml")
    meta.save(str(local / "MLmodel"))
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(local), "model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name).version
    MlflowClient(tracking_uri).set_registered_model_alias(name, "champion", str(version))
    return name


def fit(spark, stages: list[Any], train: pd.DataFrame) -> Any:  # type: ignore[no-untyped-def]
    from pyspark.ml import Pipeline

    return Pipeline(stages=stages).fit(spark.createDataFrame(train))


def assembler() -> Any:
    from pyspark.ml.feature import VectorAssembler

    return VectorAssembler(inputCols=NUMERIC, outputCol="features")


def committed(tmp_path: Path, name: str) -> pd.DataFrame:
    files = sorted((tmp_path / "out").rglob(f"predictions/{name}/ds={RUN_DATE}/*.parquet"))
    assert files, f"no committed predictions for {name}"
    return pd.concat([pq.read_table(f).to_pandas() for f in files]).set_index(ID).sort_index()


def expected(spark, model: Any, rows: pd.DataFrame, column: str, index: int | None) -> pd.Series:  # type: ignore[no-untyped-def]
    """The oracle: ``model.transform`` of the same rows, in Spark, by customer id."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    out = model.transform(spark.createDataFrame(rows[[ID, *NUMERIC]]))
    value = F.col(column) if index is None else vector_to_array(F.col(column))[index]
    frame = out.select(F.col(ID), value.alias("want")).toPandas()
    return frame.set_index(ID).sort_index()["want"]


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return labelled(300, seed=5)


def test_logistic_regression_scores_equal_transform_and_bad_rows_are_quarantined(
    spark, tmp_path, tracking_uri, warehouse, job_config, train
) -> None:
    from pyspark.ml.classification import LogisticRegression

    train = train.assign(churned=train["churned"].astype(float))
    model = fit(spark, [assembler(), LogisticRegression(labelCol="churned")], train)
    name = log_spark_model(tracking_uri, model, train[NUMERIC], tmp_path)
    rows = customers(240)
    rows["monthly_charges"] = rows["monthly_charges"].astype(float)
    rows.loc[rows[ID] == 7, "monthly_charges"] = np.nan
    rows.loc[rows[ID] == 11, "tenure_months"] = None  # a null in an int column (float NaN)
    warehouse(rows)

    result = run_score(spark, job_config(name, validation={"max_bad_rows": 2}), RUN_DATE)

    got = committed(tmp_path, name)
    assert len(got) == 238 and not {7, 11} & set(got.index)
    clean = rows[~rows[ID].isin([7, 11])].astype({"tenure_months": "int64"})
    want = expected(spark, model, clean, "probability", 1)  # class 1.0 is index 1
    np.testing.assert_allclose(got["score"].to_numpy(), want.to_numpy(), rtol=0, atol=1e-12)
    assert set(got["model_name"]) == {name} and set(got["model_version"]) == {1}
    manifest = result.manifest
    assert manifest.scoring.engine == "spark_ml"
    assert manifest.scoring.delivery == "driver"
    assert (manifest.output.rows, manifest.quarantine.rows) == (238, 2)
    bad = pd.concat(
        pq.read_table(f).to_pandas() for f in (tmp_path / "out").rglob("quarantine/**/*.parquet")
    ).set_index(ID)
    assert sorted(bad.index) == [7, 11]
    assert set(bad["error_class"]) == {"InvalidFeature"}
    assert "monthly_charges" in bad.loc[7, "error_message"]


def test_string_labels_from_the_indexer_pick_the_positive_class_by_label(
    spark, tmp_path, tracking_uri, warehouse, job_config, train
) -> None:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer

    train = train.assign(label=np.where(train["churned"] == 1, "churn", "stay"))
    indexer = StringIndexer(inputCol="label", outputCol="y", stringOrderType="alphabetAsc")
    lr = LogisticRegression(labelCol="y")
    model = fit(spark, [indexer, assembler(), lr], train)
    assert list(model.stages[0].labelsArray[0]) == ["churn", "stay"]  # "churn" is index 0
    name = log_spark_model(tracking_uri, model, train[NUMERIC], tmp_path)
    rows = customers(200)
    warehouse(rows)

    run_score(spark, job_config(name, model={"positive_label": "churn"}), RUN_DATE)

    got = committed(tmp_path, name)
    scoring = model.stages[1:]  # the label indexer needs the label, which rows do not have
    from pyspark.ml import PipelineModel

    want = expected(spark, PipelineModel(stages=scoring), rows, "probability", 0)
    assert len(got) == 200
    np.testing.assert_allclose(got["score"].to_numpy(), want.to_numpy(), rtol=0, atol=1e-12)


def test_linear_regression_writes_its_prediction(
    spark, tmp_path, tracking_uri, warehouse, job_config, train
) -> None:
    from pyspark.ml.regression import LinearRegression

    model = fit(spark, [assembler(), LinearRegression(labelCol="total_charges")], train)
    name = log_spark_model(tracking_uri, model, train[NUMERIC], tmp_path)
    rows = customers(150)
    warehouse(rows)

    run_score(spark, job_config(name), RUN_DATE)

    got = committed(tmp_path, name)
    want = expected(spark, model, rows, "prediction", None)
    assert list(got.columns[:1]) == ["prediction"]
    np.testing.assert_allclose(got["prediction"].to_numpy(), want.to_numpy(), rtol=0, atol=1e-12)


@pytest.fixture
def spark_model_name(spark, tracking_uri, train, tmp_path) -> str:  # type: ignore[no-untyped-def]
    from pyspark.ml.classification import LogisticRegression

    train = train.assign(churned=train["churned"].astype(float))
    model = fit(spark, [assembler(), LogisticRegression(labelCol="churned")], train)
    return log_spark_model(tracking_uri, model, train[NUMERIC], tmp_path)


def run_cli(tmp_path: Path, cfg: Any, capsys: Any) -> tuple[int, str]:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_a_spark_ml_member_of_a_multi_model_job_exits_3_naming_the_flavor(
    spark, tmp_path, warehouse, job_config, register, spark_model_name, capsys
) -> None:
    from sklearn.linear_model import LogisticRegression

    frame = labelled(200)
    sk_name, _ = register(
        LogisticRegression().fit(frame[NUMERIC], frame["churned"]), frame[NUMERIC]
    )
    warehouse(customers(50))
    cfg = job_config(sk_name, members={"other": {"name": spark_model_name, "alias": "champion"}})
    code, out = run_cli(tmp_path, cfg, capsys)
    assert code == 3, out
    assert "flavor 'spark'" in out and spark_model_name in out
    assert "single-model job" in out
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_arrow_direct_asked_explicitly_exits_2_naming_the_flavor(
    spark, tmp_path, warehouse, job_config, spark_model_name, capsys
) -> None:
    warehouse(customers(50))
    code, out = run_cli(tmp_path, job_config(spark_model_name, engine="arrow_direct"), capsys)
    assert code == 2, out
    assert "engine: arrow_direct" in out and "flavor 'spark'" in out
    assert "engine: auto" in out
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_core_paths_refuse_it_before_scoring(
    spark, tracking_uri, job_config, spark_model_name, tmp_path
) -> None:
    """The stream's models (``prepare_models`` the core's way), the lookup API's live path and
    the notebook API (``load_and_describe``) and the embedded scorer (``embedded.load``)."""
    from batch_serving import embedded
    from batch_serving.models.loading import load_and_describe, output_request
    from batch_serving.runs.models import prepare_models, resolve_members

    cfg = job_config(spark_model_name)
    resolved = resolve_members(cfg)
    with pytest.raises(ModelLoadError, match=r"flavor 'spark'.*the stream"):
        prepare_models(spark, cfg, resolved)
    ref = resolved[0][1]
    with pytest.raises(ModelLoadError, match=r"flavor 'spark'.*lookup API's live path"):
        load_and_describe(cfg.model, output_request(cfg, cfg.model), ref, str(tmp_path))
    uri = f"models:/{spark_model_name}@champion"
    with pytest.raises(ModelLoadError, match=r"flavor 'spark'.*embedded scorer") as err:
        embedded.load(uri, tracking_uri=tracking_uri)
    assert err.value.exit_code == 3
