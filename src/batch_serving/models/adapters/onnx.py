"""ONNX runtime: an ``onnxruntime.InferenceSession`` behind the same contract as sklearn.

The loaded object (``OnnxModel``) is the model's bytes plus what ``export-onnx`` wrote into
the ONNX metadata (classes, kind); the session is created lazily, once per object, with
``intra_op_num_threads=1`` and ``inter_op_num_threads=1``: Spark already runs one task per
core, so more threads only oversubscribe (onnxruntime#9473). The object pickles without its
session, so broadcast delivery ships bytes and each Python worker builds one session through
the per-worker model cache.

Inputs are one ``[N, 1]`` tensor per feature column (what skl2onnx makes of a column
pipeline): numeric columns in the tensor's float type (float64 when the export kept parity
that way), string columns as object arrays. A model whose features are all numeric (fit on a
matrix or on a numeric DataFrame) has one ``[N, k]`` input instead, fed by column name in the
order of the ONNX metadata (``batch_serving.matrix_features``).
"""

from __future__ import annotations

import json
import operator
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters.base import (
    Adapter,
    Kind,
    ModelInputSpec,
    ModelSpec,
    OutputRequest,
    classifier_or_regression_spec,
    empty_outputs,
    from_probabilities,
    from_values,
    resolve_features,
)

META_CLASSES = "batch_serving.classes"
META_KIND = "batch_serving.kind"
META_MATRIX = "batch_serving.matrix_features"  # numeric features only: one [N, k] input
_NUMPY = {
    "tensor(double)": np.float64,
    "tensor(float)": np.float32,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class OnnxModel:
    """ONNX bytes and their session; pickles as bytes (sessions do not pickle)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._session: Any = None
        self._types: dict[str, Any] | None = None
        self._meta: dict[str, str] | None = None
        self._outputs: list[str] | None = None
        self._row_feed: Callable[[Mapping[str, Any]], dict[str, np.ndarray]] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["data"])  # type: ignore[misc]

    @property
    def session(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = new_session(self.data)
        return self._session

    @property
    def input_types(self) -> dict[str, Any]:
        """Input name -> numpy dtype (object for strings), in graph order."""
        if self._types is None:
            self._types = {i.name: _NUMPY.get(i.type, object) for i in self.session.get_inputs()}
        return self._types

    @property
    def metadata(self) -> dict[str, str]:
        if self._meta is None:
            self._meta = dict(self.session.get_modelmeta().custom_metadata_map)
        return self._meta

    @property
    def features(self) -> tuple[str, ...]:
        """Feature columns in input order: the matrix's columns, else the graph's inputs."""
        matrix = self.metadata.get(META_MATRIX)
        return tuple(json.loads(matrix)) if matrix else tuple(self.input_types)

    def run(self, columns: Mapping[str, Any]) -> list[Any]:
        """Run on whole columns (numpy or Arrow arrays, or lists), one per feature."""
        types = self.input_types
        if META_MATRIX not in self.metadata:
            return self.session.run(None, feed(types, columns))
        ((name, dtype),) = types.items()
        parts = feed({f: dtype for f in self.features}, columns)
        return self.session.run(None, {name: np.hstack(list(parts.values()))})

    def run_row(self, row: Mapping[str, Any], outputs: Sequence[str] | None = None) -> list[Any]:
        """Run on one row (feature name -> value): the tensors ``run`` would build for it,
        from a plan made once (input names, types, the matrix's column order), so a call is
        the session's own ~10 microseconds plus one small array per input. ``outputs``: the
        output names to fetch (None: all). A missing feature raises ``KeyError``."""
        if self._row_feed is None:
            self._row_feed = row_feed(self.input_types, self.metadata)
        return self.session.run(outputs, self._row_feed(row))

    @property
    def output_names(self) -> list[str]:
        """Output names in graph order (read once)."""
        if self._outputs is None:
            self._outputs = [o.name for o in self.session.get_outputs()]
        return self._outputs


def new_session(data: bytes) -> Any:
    """One single-threaded CPU session (see the module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def row_feed(
    types: Mapping[str, Any], metadata: Mapping[str, str]
) -> Callable[[Mapping[str, Any]], dict[str, np.ndarray]]:
    """One row's inputs as ``feed`` makes them for a one-row column: the matrix model's
    ``[1, k]`` tensor in its float type (an item getter in the metadata's column order, one
    numpy conversion: a None becomes NaN, as ``astype`` makes it), else one ``[1, 1]`` tensor
    per input."""
    matrix = metadata.get(META_MATRIX)
    if matrix:
        ((name, dtype),) = types.items()
        columns = json.loads(matrix)
        get = operator.itemgetter(*columns)
        if len(columns) == 1:
            return lambda row: {name: np.array([[get(row)]], dtype)}
        return lambda row: {name: np.array([get(row)], dtype)}
    plan = list(types.items())

    def per_input(row: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {n: np.asarray([row[n]]).astype(t).reshape(1, 1) for n, t in plan}

    return per_input


def feed(types: Mapping[str, Any], columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``[N, 1]`` tensors in each input's type; a null becomes NaN (numeric) or ``""``."""
    out: dict[str, np.ndarray] = {}
    for name, dtype in types.items():
        column = columns[name]
        if isinstance(column, pa.ChunkedArray | pa.Array):
            if dtype is object:
                values = np.asarray(column.fill_null("").to_numpy(zero_copy_only=False), object)
            else:
                values = column.to_numpy(zero_copy_only=False)
        else:
            values = np.asarray(column)
        if dtype is object:
            out[name] = values.astype(object).reshape(-1, 1)
        else:
            out[name] = values.astype(dtype, copy=False).reshape(-1, 1)
    return out


class OnnxAdapter(Adapter):
    name = "onnx"

    def load(self, model_dir: Path, flavor_conf: dict[str, Any], label: str) -> Any:
        path = model_dir / flavor_conf.get("data", "model.onnx")
        try:
            model = OnnxModel(path.read_bytes())
            model.session  # noqa: B018 - fail here, naming the model, not on a worker
        except Exception as exc:
            raise ModelLoadError(f"{label}: cannot load ONNX model {path}: {exc}") from None
        return model

    def describe(
        self, model: Any, inputs: ModelInputSpec | None, request: OutputRequest, label: str
    ) -> ModelSpec:
        cols = resolve_features(request.features, model.features, inputs, label)
        meta = model.metadata
        kind: Kind = meta.get(META_KIND, "regression")
        labels = tuple(json.loads(meta.get(META_CLASSES, "[]")))
        # feed "pandas": named, typed columns (strings allowed), not one float matrix
        return classifier_or_regression_spec(
            self.name, kind, labels, cols, "pandas", inputs, request, label
        )

    def predict(self, spec: ModelSpec, model: Any, batch: pa.RecordBatch) -> list[pa.Array]:
        if batch.num_rows == 0:
            return empty_outputs(spec)
        columns = {name: batch.column(name) for name in spec.features}
        outputs = model.run(columns)
        if spec.kind == "regression":
            return from_values(outputs[0], batch.num_rows)
        return from_probabilities(spec, outputs[-1])
