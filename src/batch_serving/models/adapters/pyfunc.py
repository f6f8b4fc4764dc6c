"""Generic MLflow pyfunc runtime: any flavor we have no dedicated adapter for.

Fed a pandas DataFrame of the feature columns; the result must be one number per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters.base import (
    Adapter,
    ModelInputSpec,
    ModelSpec,
    OutputRequest,
    empty_outputs,
    feature_matrix,
    from_values,
    resolve_features,
)


class PyfuncAdapter(Adapter):
    name = "pyfunc"

    def load(self, model_dir: Path, flavor_conf: dict[str, Any], label: str) -> Any:
        import mlflow.pyfunc

        try:
            return mlflow.pyfunc.load_model(str(model_dir))
        except Exception as exc:
            raise ModelLoadError(f"{label}: cannot load pyfunc model: {exc}") from None

    def describe(
        self, model: Any, inputs: ModelInputSpec | None, request: OutputRequest, label: str
    ) -> ModelSpec:
        cols = resolve_features(request.features, None, inputs, label)
        return ModelSpec(
            runtime=self.name,
            kind="pyfunc",
            features=cols,
            feed="pandas",
            score_column=request.score_column,
            input_types=inputs.columns if inputs else (),
        )

    def predict(self, spec: ModelSpec, model: Any, batch: pa.RecordBatch) -> list[pa.Array]:
        if batch.num_rows == 0:
            return empty_outputs(spec)
        return from_values(model.predict(feature_matrix(spec, batch)), batch.num_rows)
