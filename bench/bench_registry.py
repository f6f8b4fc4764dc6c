"""Registering a bench's model: logged in its experiment, registered, aliased ``@champion``."""

from __future__ import annotations

from typing import Any

import pandas as pd


def register_champion(
    tracking_uri: str, experiment: str, name: str, model: Any, sample: pd.DataFrame
) -> str:
    """``model`` (fitted) as the next version of ``name``, with the signature of ``sample``'s
    first 50 rows, aliased ``@champion``; returns ``name``."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(sample.head(50)),
            registered_model_name=name,
        )
    MlflowClient(tracking_uri).set_registered_model_alias(
        name, "champion", str(info.registered_model_version)
    )
    return name
