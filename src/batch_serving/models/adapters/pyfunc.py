"""Generic MLflow pyfunc runtime: any flavor we have no dedicated adapter for.

Fed a pandas DataFrame of the feature columns; the result must be one number per row. A
classifier's pyfunc ``predict`` returns class labels, which would be written as scores with
exit 0; so a model whose signature says it returns labels (strings, integers, booleans) or
more than one value per row is refused on the driver, before scoring (ModelLoadError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
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
        check_outputs(getattr(model, "metadata", None), label)
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


LABEL_TYPES = {"string", "long", "integer", "boolean", "binary"}  # MLflow column types
LABEL_DTYPE_KINDS = "iubUSO"  # numpy kinds of tensor outputs: ints, bools, strings, objects


def check_outputs(meta: Any, label: str) -> None:
    """Refuse a model whose signature's outputs are not one number per row."""
    schema = meta.get_output_schema() if meta is not None else None
    if schema is None:
        return  # no output signature: nothing tells a classifier apart; scored as it returns
    problem = output_problem(schema)
    if problem is None:
        return
    flavors = sorted(getattr(meta, "flavors", {}) or {})
    raise ModelLoadError(
        f"{label} (MLmodel flavors {flavors}) is scored through the generic pyfunc runtime, "
        f"but its signature says predict returns {problem}, not one score per row. Log a "
        "classifier with its own flavor (sklearn, lightgbm, xgboost, catboost, onnx), or make "
        "predict return the positive class's probability as a double and declare a double "
        "output in the signature"
    )


def output_problem(schema: Any) -> str | None:
    """Why a signature's outputs are not one float per row, or None if they are."""
    specs = list(schema.inputs)
    if len(specs) != 1:
        names = [getattr(s, "name", None) for s in specs]
        return f"{len(specs)} outputs {names}"
    spec = specs[0]
    if schema.is_tensor_spec():
        dtype = np.dtype(spec.type)
        if len(spec.shape) > 1 and spec.shape[-1] != 1:
            return f"a tensor of shape {spec.shape}"
        if dtype.kind in LABEL_DTYPE_KINDS:
            return f"{dtype.name} values (class labels)"
        return None
    type_name = str(getattr(spec.type, "name", spec.type))
    if type_name in LABEL_TYPES:
        return f"{type_name} values (class labels)"
    return None
