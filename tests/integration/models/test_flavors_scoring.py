"""LightGBM, XGBoost and CatBoost models logged with their own MLflow flavor, scored by the job
on both engines: a classifier's score is ``predict_proba`` of the configured positive class
(looked up by its string label), a regressor's prediction is ``predict``, a multi-class model
writes every class's probability; all equal to the in-process model to 1e-12.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import builders
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import RUN_DATE, customers, labelled

from batch_serving import sample_data
from batch_serving.runs.job import run_score

NUMERIC = builders.NUMERIC
FEATURES = builders.FEATURES
LABELS = ["churn", "stay"]
_names = itertools.count()


def register_flavor(
    tracking_uri: str,
    flavor: str,
    model: Any,
    sample: pd.DataFrame,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Log ``model`` with ``mlflow.<flavor>.log_model``, register it, alias it champion."""
    import importlib

    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    module = importlib.import_module(f"mlflow.{flavor}")
    name = f"flavor_{flavor}_{next(_names)}"
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        info = module.log_model(
            model,
            name="model",
            signature=infer_signature(sample),
            registered_model_name=name,
            metadata=metadata,
        )
    MlflowClient(tracking_uri).set_registered_model_alias(
        name, "champion", str(info.registered_model_version)
    )
    return name


def string_labels(train: pd.DataFrame) -> np.ndarray:
    return np.where(train["churned"] == 1, "churn", "stay")


# Each case: (train) -> (model, flavor, input columns, positive_label, MLmodel metadata, oracle)
Case = tuple[Any, str, list[str], str | None, dict[str, Any] | None, Callable[..., Any]]


def lgbm_classifier(train: pd.DataFrame) -> Case:
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1)
    model.fit(train[NUMERIC], string_labels(train))
    assert list(model.classes_) == LABELS  # "churn" is column 0: not "the second column"
    return (
        model,
        "lightgbm",
        NUMERIC,
        "churn",
        None,
        lambda f: {"score": model.predict_proba(f[NUMERIC])[:, 0]},
    )


def lgbm_booster(train: pd.DataFrame) -> Case:
    """A native Booster (objective binary) fit on codes; its labels come from the metadata."""
    import lightgbm as lgb

    codes = (string_labels(train) == "stay").astype(int)  # churn=0, stay=1
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(train[NUMERIC], codes), num_boost_round=8)
    return (
        booster,
        "lightgbm",
        NUMERIC,
        "churn",
        {"class_labels": LABELS},
        lambda f: {"score": 1.0 - booster.predict(f[NUMERIC])},
    )


def lgbm_multiclass(train: pd.DataFrame) -> Case:
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1)
    model.fit(train[NUMERIC], train["contract"])

    def oracle(f: pd.DataFrame) -> dict[str, np.ndarray]:
        proba = model.predict_proba(f[NUMERIC])
        out = {f"p_{c}": proba[:, i] for i, c in enumerate(model.classes_)}
        out["predicted_label"] = model.classes_[np.argmax(proba, axis=1)]
        return out

    return model, "lightgbm", NUMERIC, None, None, oracle


def xgb_classifier(train: pd.DataFrame) -> Case:
    """XGBoost fits codes only: the string labels are declared in the MLmodel metadata."""
    import xgboost as xgb

    codes = (string_labels(train) == "stay").astype(int)
    model = xgb.XGBClassifier(n_estimators=8, max_depth=3)
    model.fit(train[NUMERIC], codes)
    return (
        model,
        "xgboost",
        NUMERIC,
        "churn",
        {"class_labels": LABELS},
        lambda f: {"score": model.predict_proba(f[NUMERIC])[:, 0]},
    )


def xgb_regressor(train: pd.DataFrame) -> Case:
    import xgboost as xgb

    model = xgb.XGBRegressor(n_estimators=8, max_depth=3)
    model.fit(train[NUMERIC], train["monthly_charges"] * 0.1 + train["support_calls"])
    return (
        model,
        "xgboost",
        NUMERIC,
        None,
        None,
        lambda f: {"prediction": model.predict(f[NUMERIC])},
    )


def catboost_classifier(train: pd.DataFrame) -> Case:
    """String labels and two categorical (string) feature columns, fed by name."""
    import catboost as cb

    model = cb.CatBoostClassifier(iterations=8, depth=3, verbose=0, random_seed=0)
    model.fit(train[FEATURES], string_labels(train), cat_features=list(sample_data.CATEGORICAL))
    assert list(model.classes_) == LABELS
    return (
        model,
        "catboost",
        FEATURES,
        "churn",
        None,
        lambda f: {"score": model.predict_proba(f[FEATURES])[:, 0]},
    )


CASES = {
    f.__name__: f
    for f in (
        lgbm_classifier,
        lgbm_booster,
        lgbm_multiclass,
        xgb_classifier,
        xgb_regressor,
        catboost_classifier,
    )
}


def read_partition(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().sort_values("customer_id").reset_index(drop=True)


@pytest.mark.parametrize("engine", ["arrow_direct", "dataframe"])
@pytest.mark.parametrize("case", list(CASES))
def test_flavor_scores_equal_in_process_model(
    spark, tracking_uri, warehouse, job_config, case: str, engine: str
) -> None:
    model, flavor, inputs, positive, metadata, oracle = CASES[case](labelled(400))
    rows = customers(300)
    name = register_flavor(tracking_uri, flavor, model, rows[inputs], metadata)
    warehouse(rows)

    cfg = job_config(name, engine=engine, model={"positive_label": positive})
    result = run_score(spark, cfg, RUN_DATE)

    got = read_partition(result.committed.path)
    expected = oracle(rows.sort_values("customer_id").reset_index(drop=True))
    assert len(got) == len(rows) == result.manifest.output.rows
    assert result.manifest.scoring.engine == engine
    for column, values in expected.items():
        if column.startswith("p_"):
            actual = got["probabilities"].map(lambda kv, c=column[2:]: dict(kv)[c])
            assert np.max(np.abs(actual.to_numpy(np.float64) - values)) <= 1e-12
        elif column == "predicted_label":
            assert got[column].tolist() == list(values)
        else:
            assert np.max(np.abs(got[column].to_numpy(np.float64) - values)) <= 1e-12
            if column == "score":  # a probability, not a 0/1 label written as a score
                assert got[column].min() > 0.0 and got[column].max() < 1.0
                assert got[column].nunique() > 2
