"""Model builders for tests: each returns (fitted model, oracle) where the oracle computes the
expected output columns in-process from an input frame, exactly as a user would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from batch_serving import sample_data

NUMERIC = list(sample_data.NUMERIC)
FEATURES = list(sample_data.FEATURES)
HGB_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
TREE_TRUSTED = ["sklearn.tree._tree.Tree"]

Oracle = Callable[[pd.DataFrame], dict[str, np.ndarray]]


def hgb_on_numpy(train: pd.DataFrame) -> tuple[Any, Oracle]:
    """HGB fit on a numpy array (no feature names): must be fed numpy in signature order."""
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0)
    model.fit(train[NUMERIC].to_numpy(dtype=np.float64), train["churned"])
    return model, lambda f: {"score": model.predict_proba(f[NUMERIC].to_numpy(np.float64))[:, 1]}


def logreg_pipeline(train: pd.DataFrame) -> tuple[Any, Oracle]:
    """StandardScaler + OneHotEncoder + LogisticRegression fit on a DataFrame."""
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(sample_data.CATEGORICAL)),
        ]
    )
    model = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=300))])
    model.fit(train[FEATURES], train["churned"])
    return model, lambda f: {"score": model.predict_proba(f[FEATURES])[:, 1]}


def forest_regressor(train: pd.DataFrame) -> tuple[Any, Oracle]:
    model = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0)
    model.fit(train[NUMERIC], train["monthly_charges"] * 0.1 + train["support_calls"])
    return model, lambda f: {"prediction": model.predict(f[NUMERIC])}


def multiclass(train: pd.DataFrame) -> tuple[Any, Oracle]:
    """Three string classes: predicts the contract type from the numeric features."""
    model = Pipeline([("s", StandardScaler()), ("clf", LogisticRegression(max_iter=300))])
    model.fit(train[NUMERIC], train["contract"])

    def oracle(f: pd.DataFrame) -> dict[str, np.ndarray]:
        proba = model.predict_proba(f[NUMERIC])
        out = {f"p_{c}": proba[:, i] for i, c in enumerate(model.classes_)}
        out["predicted_label"] = model.classes_[np.argmax(proba, axis=1)]
        return out

    return model, oracle


class LinearScore(mlflow.pyfunc.PythonModel):
    """A custom (non-sklearn) pyfunc model: a fixed linear formula."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return 0.5 * model_input["tenure_months"] + 2.0 * model_input["support_calls"]


def custom_pyfunc(train: pd.DataFrame) -> tuple[Any, Oracle]:
    model = LinearScore()
    return model, lambda f: {
        "prediction": (0.5 * f["tenure_months"] + 2.0 * f["support_calls"]).to_numpy(np.float64)
    }


class FailsOnSomeRows(LinearScore):
    """Injected fault: raises in the middle of the job, after other tasks wrote files."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        if (model_input["customer_id"] > 550).any():
            raise RuntimeError("injected failure while scoring")
        return super().predict(context, model_input, params)


class SlowScore(LinearScore):
    """A model slow enough (per batch) that a second run of the same date starts while the
    first one is still scoring; ``scale`` tells the versions' outputs apart."""

    def __init__(self, scale: float = 1.0, seconds: float = 2.0, hold: str | None = None) -> None:
        self.scale, self.seconds, self.hold = scale, seconds, hold

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        import os
        import time

        time.sleep(self.seconds)
        deadline = time.monotonic() + 300
        while self.hold and os.path.exists(self.hold) and time.monotonic() < deadline:
            time.sleep(0.05)  # a test holds this run mid-scoring until it has seen the race
        return self.scale * super().predict(context, model_input, params)


def on_champion_score(train: pd.DataFrame, champion: Any) -> tuple[Any, Oracle]:
    """A pipeline's second stage: a classifier of (champion score, tenure), fit on a frame."""
    frame = pd.DataFrame(
        {
            "champion_score": champion.predict_proba(train[FEATURES])[:, 1],
            "tenure_months": train["tenure_months"],
        }
    )
    model = LogisticRegression(max_iter=300).fit(frame, train["churned"])

    def oracle(f: pd.DataFrame) -> dict[str, np.ndarray]:
        stage = pd.DataFrame(
            {
                "champion_score": champion.predict_proba(f[FEATURES])[:, 1],
                "tenure_months": f["tenure_months"],
            }
        )
        return {"score": model.predict_proba(stage)[:, 1]}

    return model, oracle


class RejectsManyCalls(LinearScore):
    """Injected fault for one member: refuses rows with more than 3 support calls."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        if (model_input["support_calls"] > 3).any():
            raise ValueError("too many support calls")
        return super().predict(context, model_input, params)


def forest_classifier(train: pd.DataFrame) -> tuple[Any, Oracle]:
    """A different kind of challenger: a small random forest on the same features."""
    from sklearn.ensemble import RandomForestClassifier

    pre = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), list(sample_data.CATEGORICAL))],
        remainder="passthrough",
    )
    model = Pipeline(
        [("pre", pre), ("clf", RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0))]
    )
    model.fit(train[FEATURES], train["churned"])
    return model, lambda f: {"score": model.predict_proba(f[FEATURES])[:, 1]}
