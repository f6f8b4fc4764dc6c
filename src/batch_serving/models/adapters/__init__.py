"""Model runtimes behind one interface; a new runtime (e.g. ONNX) is one new module here.

Each MLflow flavor we score has its own adapter; a Spark ML pipeline (``spark_ml.py``) is only
kept here and scored by Spark itself (the ``spark_ml`` engine), every core path refuses it; any
other flavor goes through the generic pyfunc runtime, which refuses a model whose signature
says it returns class labels.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from batch_serving.models.adapters.base import (
    Adapter,
    LoadedModel,
    ModelInputSpec,
    ModelSpec,
    OutputRequest,
)
from batch_serving.models.adapters.catboost import CatboostAdapter
from batch_serving.models.adapters.lightgbm import LightgbmAdapter
from batch_serving.models.adapters.onnx import OnnxAdapter
from batch_serving.models.adapters.pyfunc import PyfuncAdapter
from batch_serving.models.adapters.sklearn import SklearnAdapter
from batch_serving.models.adapters.spark_ml import FLAVOR as SPARK_RUNTIME
from batch_serving.models.adapters.spark_ml import SparkMLAdapter
from batch_serving.models.adapters.xgboost import XgboostAdapter

__all__ = [
    "SPARK_RUNTIME",
    "Adapter",
    "LoadedModel",
    "ModelInputSpec",
    "ModelSpec",
    "OutputRequest",
    "adapter_for",
    "describe",
    "predict",
    "runtime_of",
]

_RUNTIMES: dict[str, Adapter] = {
    "sklearn": SklearnAdapter(),
    "pyfunc": PyfuncAdapter(),
    "onnx": OnnxAdapter(),
    "lightgbm": LightgbmAdapter(),
    "xgboost": XgboostAdapter(),
    "catboost": CatboostAdapter(),
    SPARK_RUNTIME: SparkMLAdapter(),
}


def runtime_of(flavors: dict[str, Any]) -> str:
    """The runtime for an MLmodel's flavors: a dedicated one if we have it, else pyfunc."""
    for runtime in _RUNTIMES:
        if runtime != "pyfunc" and runtime in flavors:
            return runtime
    return "pyfunc"


def adapter_for(runtime: str, trusted_types: tuple[str, ...] = ()) -> Adapter:
    """The adapter of ``runtime``; skops trusted types only matter for loading sklearn."""
    if runtime == "sklearn" and trusted_types:
        return SklearnAdapter(trusted_types)
    return _RUNTIMES[runtime]


def describe(loaded: LoadedModel, request: OutputRequest, label: str) -> ModelSpec:
    """The model's ``ModelSpec``, decided once on the driver."""
    return adapter_for(loaded.runtime).describe(loaded.obj, loaded.inputs, request, label)


def predict(spec: ModelSpec, model: Any, batch: pa.RecordBatch) -> list[pa.Array]:
    """Output arrays of ``model`` for ``batch``, through the model's runtime adapter."""
    return _RUNTIMES[spec.runtime].predict(spec, model, batch)
