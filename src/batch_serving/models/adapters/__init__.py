"""Model runtimes behind one interface; a new runtime (e.g. ONNX) is one new module here."""

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
from batch_serving.models.adapters.onnx import OnnxAdapter
from batch_serving.models.adapters.pyfunc import PyfuncAdapter
from batch_serving.models.adapters.sklearn import SklearnAdapter

__all__ = [
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
}


def runtime_of(flavors: dict[str, Any]) -> str:
    """The runtime for an MLmodel's flavors: a dedicated one if we have it, else pyfunc."""
    for runtime in ("sklearn", "onnx"):
        if runtime in flavors:
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
