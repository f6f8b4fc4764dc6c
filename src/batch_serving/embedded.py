"""Embedded scoring: the model inside the caller's process, no Spark, no server.

    from batch_serving.embedded import load
    model = load("models:/churn_onnx@champion", tracking_uri="sqlite:///mlruns/mlflow.db")
    model.predict({"tenure_months": 3, "contract": "month-to-month", ...})   # -> array([0.71])

``load`` takes a registry URI, an MLflow model directory (any runtime we have an adapter for)
or a bare ``.onnx`` file. ``predict(rows)`` takes one dict, a list of dicts, a pandas
DataFrame or an Arrow table/batch and returns a float64 numpy array: the positive class's
probability for a binary classifier (found by label, as in the batch job), the value for a
regressor, one row of class probabilities per input row for a multi-class model. For an ONNX
model, dicts go straight into onnxruntime tensors (no pandas, no Arrow): a single-row call
costs tens of microseconds, where an sklearn pipeline costs milliseconds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.errors import InputValidationError
from batch_serving.models.adapters import LoadedModel, ModelSpec, OutputRequest, describe, predict
from batch_serving.models.adapters.onnx import OnnxModel

__all__ = ["EmbeddedModel", "load"]


@dataclass
class EmbeddedModel:
    """A loaded model and its spec; ``predict`` is safe to call from several threads."""

    spec: ModelSpec
    model: Any
    label: str

    @property
    def features(self) -> tuple[str, ...]:
        return self.spec.features

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def predict(self, rows: Any) -> np.ndarray:
        """Scores for ``rows`` (see the module docstring for the accepted shapes)."""
        if isinstance(self.model, OnnxModel):
            return self._predict_onnx(_columns(rows, self.spec.features))
        outputs = predict(self.spec, self.model, _batch(rows, self.spec.features))
        return _values(self.spec, outputs)

    def _predict_onnx(self, columns: dict[str, Any]) -> np.ndarray:
        out = self.model.run(columns)
        if self.spec.kind == "regression":
            return np.asarray(out[0], dtype=np.float64).reshape(-1)
        proba = np.asarray(out[-1], dtype=np.float64)
        if self.spec.kind == "binary":
            return proba[:, self.spec.positive_index]
        return proba


def load(
    model_uri_or_path: str | Path,
    *,
    tracking_uri: str | None = None,
    positive_label: str | int | bool | None = None,
) -> EmbeddedModel:
    """Load once, at application start; ``tracking_uri`` for ``models:/`` URIs."""
    text = str(model_uri_or_path)
    request = OutputRequest(positive_label=positive_label)
    if text.startswith("models:/"):
        loaded = _from_registry(text, tracking_uri)
    else:
        path = Path(text)
        if path.is_file() and path.suffix == ".onnx":
            loaded = LoadedModel("onnx", OnnxModel(path.read_bytes()), None)
        else:
            from batch_serving.models.artifacts import load_model_dir

            loaded = load_model_dir(path, text)
    return EmbeddedModel(describe(loaded, request, text), loaded.obj, text)


def _from_registry(uri: str, tracking_uri: str | None) -> LoadedModel:
    import mlflow.artifacts

    from batch_serving.models.artifacts import load_model_dir

    with tempfile.TemporaryDirectory(prefix="bs-embedded-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri
        )
        return load_model_dir(Path(local), uri)


def _columns(rows: Any, features: Sequence[str]) -> dict[str, Any]:
    """Feature name -> column (list, numpy or Arrow), without building a frame."""
    if isinstance(rows, Mapping):
        return {f: [_field(rows, f, 0)] for f in features}
    if isinstance(rows, pa.Table | pa.RecordBatch):
        _check(rows.schema.names, features)
        return {f: rows.column(f) for f in features}
    if hasattr(rows, "columns") and hasattr(rows, "to_numpy"):  # pandas
        _check(list(rows.columns), features)
        return {f: rows[f].to_numpy() for f in features}
    if isinstance(rows, Sequence) and all(isinstance(r, Mapping) for r in rows):
        return {f: [_field(r, f, i) for i, r in enumerate(rows)] for f in features}
    raise TypeError(f"rows must be a dict, a list of dicts, a DataFrame or Arrow; got {type(rows)}")


def _batch(rows: Any, features: Sequence[str]) -> pa.RecordBatch:
    columns = _columns(rows, features)
    table = pa.table({f: _arrow(v) for f, v in columns.items()})
    return table.combine_chunks().to_batches(max_chunksize=max(len(table), 1))[0]


def _arrow(values: Any) -> pa.Array | pa.ChunkedArray:
    return values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)


def _field(row: Mapping[str, Any], name: str, index: int) -> Any:
    try:
        return row[name]
    except KeyError:
        raise InputValidationError(
            f"row {index} has no feature {name!r}; present: {sorted(row)}"
        ) from None


def _check(present: Sequence[str], features: Sequence[str]) -> None:
    missing = [f for f in features if f not in present]
    if missing:
        raise InputValidationError(f"missing features {missing}; present: {list(present)}")


def _values(spec: ModelSpec, outputs: list[pa.Array]) -> np.ndarray:
    if spec.kind == "multiclass":
        n, k = len(outputs[0]), len(spec.classes)
        flat = outputs[0].values.to_numpy(zero_copy_only=False)
        return np.asarray(flat, dtype=np.float64).reshape(n, k)
    return np.asarray(outputs[0].to_numpy(zero_copy_only=False), dtype=np.float64)
