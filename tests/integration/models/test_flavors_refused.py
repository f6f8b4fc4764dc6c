"""Models that cannot be scored right are refused before scoring (ModelLoadError, exit 3), with
a message naming the flavor (or class, objective) and what to do; nothing is written.

Unit cases load a saved model directory with ``load_model_dir`` and describe it (no Spark);
the Spark ML (no prediction stage) and pyfunc-labels cases run the ``score`` command end to end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import RUN_DATE, customers, labelled

from batch_serving.cli import main
from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters import OutputRequest, describe
from batch_serving.models.artifacts import load_model_dir

NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]


def train() -> tuple[pd.DataFrame, np.ndarray]:
    frame = labelled(200)
    return frame[NUMERIC], frame["churned"].to_numpy()


def describe_saved(path: Path, positive: str | None = None) -> Any:
    loaded = load_model_dir(path, "models:/m@champion")
    return describe(loaded, OutputRequest(positive_label=positive), "models:/m@champion")


def test_sklearn_classifier_without_predict_proba_is_refused(tmp_path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.svm import LinearSVC

    x, y = train()
    mlflow.sklearn.save_model(LinearSVC().fit(x, y), tmp_path / "m", signature=infer_signature(x))
    with pytest.raises(ModelLoadError) as err:
        describe_saved(tmp_path / "m")
    message = str(err.value)
    assert "LinearSVC" in message and "without predict_proba" in message
    assert "CalibratedClassifierCV" in message
    assert ModelLoadError.exit_code == 3


def test_xgboost_booster_with_margin_objective_is_refused(tmp_path) -> None:
    import mlflow.xgboost
    import xgboost as xgb

    x, y = train()
    booster = xgb.train({"objective": "binary:logitraw"}, xgb.DMatrix(x, y), num_boost_round=3)
    mlflow.xgboost.save_model(booster, tmp_path / "m")
    with pytest.raises(ModelLoadError, match=r"objective 'binary:logitraw'.*binary:logistic"):
        describe_saved(tmp_path / "m")


def test_lightgbm_booster_with_custom_objective_is_refused(tmp_path) -> None:
    import lightgbm as lgb
    import mlflow.lightgbm

    x, y = train()

    def logloss(preds: np.ndarray, data: Any) -> tuple[np.ndarray, np.ndarray]:
        p = 1.0 / (1.0 + np.exp(-preds))
        return p - data.get_label(), p * (1.0 - p)

    params = {"objective": logloss, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=3)
    mlflow.lightgbm.save_model(booster, tmp_path / "m")
    with pytest.raises(ModelLoadError, match=r"lightgbm booster with objective .*binary"):
        describe_saved(tmp_path / "m")


def test_declared_class_labels_must_fit_the_model(tmp_path) -> None:
    import mlflow.xgboost
    import xgboost as xgb

    x, y = train()
    model = xgb.XGBClassifier(n_estimators=3).fit(x, y)
    mlflow.xgboost.save_model(model, tmp_path / "m", metadata={"class_labels": ["a", "b", "c"]})
    with pytest.raises(ModelLoadError, match=r"class_labels \['a', 'b', 'c'\].*\['0', '1'\]"):
        describe_saved(tmp_path / "m")


def test_xgboost_codes_without_declared_labels_take_integer_positive_label(tmp_path) -> None:
    import mlflow.xgboost
    import xgboost as xgb

    x, y = train()
    mlflow.xgboost.save_model(xgb.XGBClassifier(n_estimators=3).fit(x, y), tmp_path / "m")
    spec = describe_saved(tmp_path / "m")  # no positive_label: class "1" by default
    assert (spec.kind, spec.classes, spec.positive_label) == ("binary", ("0", "1"), "1")


class Labels(mlflow.pyfunc.PythonModel):
    """A custom pyfunc classifier whose predict returns labels (what the signature says)."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return (model_input["support_calls"] > 2).astype(np.int64).to_numpy()


class Probability(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return (model_input["support_calls"] / 10.0).to_numpy(np.float64)


def save_pyfunc(path: Path, model: Any, output: Any) -> None:
    from mlflow.models import infer_signature

    x, _ = train()
    mlflow.pyfunc.save_model(path, python_model=model, signature=infer_signature(x, output(x)))


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        (lambda x: (x["support_calls"] > 2).astype(np.int64), "long values (class labels)"),
        (lambda x: np.where(x["support_calls"] > 2, "churn", "stay"), "str values"),
        (lambda x: pd.DataFrame({"p0": x["support_calls"] * 0.1, "p1": 0.5}), "2 outputs"),
    ],
)
def test_pyfunc_whose_signature_returns_labels_is_refused(tmp_path, output, problem) -> None:
    save_pyfunc(tmp_path / "m", Labels(), output)
    with pytest.raises(ModelLoadError) as err:
        describe_saved(tmp_path / "m")
    message = str(err.value)
    assert problem in message and "python_function" in message
    assert "positive class's probability as a double" in message


def test_pyfunc_returning_doubles_is_still_scored_as_prediction(tmp_path) -> None:
    save_pyfunc(tmp_path / "m", Probability(), lambda x: x["support_calls"] / 10.0)
    spec = describe_saved(tmp_path / "m")
    assert (spec.runtime, spec.kind) == ("pyfunc", "pyfunc")


def run_cli(tmp_path: Path, job_config, warehouse, name: str, capsys) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    warehouse(customers(50))
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_config(name).model_dump(mode="json")))
    code = main(["score", "--config", str(path), "--run-date", str(RUN_DATE)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def register(tracking_uri: str, name: str, log: Any) -> None:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        info = log(name)
    version = getattr(info, "registered_model_version", None) or info.version
    MlflowClient(tracking_uri).set_registered_model_alias(name, "champion", str(version))


def save_spark_ml(path: Path) -> None:
    """A Spark ML PipelineModel laid out as ``mlflow.spark.save_model`` lays it out (sparkml/
    plus an MLmodel with the spark and python_function flavors). mlflow.spark's own save
    copies through Hadoop's LocalFileSystem, which our session replaces by RawLocalFileSystem."""
    import pyspark
    from mlflow.models import Model
    from mlflow.pyfunc import add_to_model
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import VectorAssembler

    pipeline = PipelineModel(stages=[VectorAssembler(inputCols=NUMERIC, outputCol="features")])
    pipeline.write().overwrite().save(str(path / "sparkml"))
    meta = Model()
    meta.add_flavor("spark", pyspark_version=pyspark.__version__, model_data="sparkml")
    add_to_model(meta, loader_module="mlflow.spark", data="sparkml")
    meta.save(str(path / "MLmodel"))


def test_spark_ml_pipeline_without_a_prediction_stage_exits_3(
    spark, tmp_path, tracking_uri, warehouse, job_config, capsys
) -> None:
    import mlflow

    save_spark_ml(tmp_path / "spark_model")

    def log(name: str) -> Any:
        mlflow.log_artifacts(str(tmp_path / "spark_model"), "model")
        return mlflow.register_model(f"runs:/{mlflow.active_run().info.run_id}/model", name)

    register(tracking_uri, "flavor_spark_ml", log)
    code, out = run_cli(tmp_path, job_config, warehouse, "flavor_spark_ml", capsys)
    assert code == 3
    assert "flavor_spark_ml" in out and "['VectorAssembler'] has no prediction stage" in out
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_pyfunc_labels_exit_3_before_scoring(
    spark, tmp_path, tracking_uri, warehouse, job_config, capsys
) -> None:
    from mlflow.models import infer_signature

    x, _ = train()
    model = Labels()
    signature = infer_signature(x, model.predict(None, x))
    register(
        tracking_uri,
        "flavor_pyfunc_labels",
        lambda name: mlflow.pyfunc.log_model(
            name="model", python_model=model, signature=signature, registered_model_name=name
        ),
    )
    code, out = run_cli(tmp_path, job_config, warehouse, "flavor_pyfunc_labels", capsys)
    assert code == 3
    assert "flavor_pyfunc_labels" in out and "int64 values (class labels)" in out
    assert not list((tmp_path / "out").rglob("*.parquet"))
