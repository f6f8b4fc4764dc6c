"""Flavors we know and refuse, at load, on the driver, before any row is scored.

Falling back to the generic pyfunc runtime would score them wrongly or not at all, and a
scoring job that writes wrong numbers with exit 0 is worse than one that stops (exit 3)
saying which flavor it met and what to do instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import pyarrow as pa

from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters.base import Adapter, ModelInputSpec, ModelSpec, OutputRequest

SPARK_ML = (
    "Spark ML models are scored with model.transform; not supported by this runtime yet. "
    "Score it with model.transform (or mlflow.pyfunc.spark_udf) in your own Spark job, or log "
    "the model with a flavor this runtime scores (sklearn, lightgbm, xgboost, catboost, onnx)"
)


class RefusedAdapter(Adapter):
    """A flavor that cannot be scored right here: every entry point raises ModelLoadError."""

    def __init__(self, flavor: str, reason: str) -> None:
        self.name = flavor
        self.reason = reason

    def refuse(self, label: str) -> NoReturn:
        raise ModelLoadError(f"{label} has MLmodel flavor '{self.name}': {self.reason}")

    def load(self, model_dir: Path, flavor_conf: dict[str, Any], label: str) -> Any:
        self.refuse(label)

    def describe(
        self, model: Any, inputs: ModelInputSpec | None, request: OutputRequest, label: str
    ) -> ModelSpec:
        self.refuse(label)

    def predict(self, spec: ModelSpec, model: Any, batch: pa.RecordBatch) -> list[pa.Array]:
        self.refuse(spec.runtime)
