"""sklearn -> ONNX with skl2onnx, in the float type that keeps the model's decisions.

Why float64 first: a tree compares a feature with a threshold. skl2onnx's float32 graph rounds
both, and a feature computed before the tree (a StandardScaler) rounds differently from
sklearn's float64, so rows near a threshold take the other branch (sklearn-onnx#1192; we
measured |dp| up to 4e-2 and decision flips for Scaler+RandomForest). skl2onnx 1.20 also writes
float32 thresholds into the tree node even for a float64 graph (``op_version=1``), which is
worse (double input vs float32-rounded threshold: |dp| 8e-2 for the demo HGB). We re-register
the tree-classifier converters to emit ai.onnx.ml opset 3 ``*_as_tensor`` float64 attributes:
thresholds are then exactly sklearn's. Some converters have no float64 path in onnxruntime
(LogisticRegression's probability ``Normalizer`` is float-only): those fall back to float32,
and the parity gate decides whether that is good enough.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters.base import ModelSpec
from batch_serving.models.adapters.onnx import META_CLASSES, META_KIND, META_MATRIX, OnnxModel

log = logging.getLogger(__name__)

Dtype = Literal["auto", "float64", "float32"]
_TREE_CLASSIFIERS = (
    "SklearnHistGradientBoostingClassifier",
    "SklearnRandomForestClassifier",
    "SklearnExtraTreesClassifier",
)
_AS_TENSOR = ("nodes_values", "class_weights", "target_weights", "base_values", "nodes_hitrates")
_STRING_TYPES = ("string", "str", "object")
_patched = False


@dataclass(frozen=True)
class Converted:
    """The ONNX bytes, the float type of its numeric inputs, and why a fallback happened."""

    data: bytes
    dtype: str
    note: str = ""

    def model(self) -> OnnxModel:
        return OnnxModel(self.data)


def convert(
    model: Any, spec: ModelSpec, column_types: dict[str, str], dtype: Dtype = "auto"
) -> Converted:
    """Convert ``model`` with one ``[N, 1]`` input per feature; ``auto`` tries float64 first."""
    tried: list[str] = []
    for candidate in ("float64", "float32") if dtype == "auto" else (dtype,):
        try:
            data = _convert(model, spec, column_types, candidate)
            OnnxModel(data).session  # noqa: B018 - onnxruntime must accept the graph
        except Exception as exc:
            tried.append(f"{candidate}: {str(exc).strip().splitlines()[0][:200]}")
            log.info("ONNX conversion in %s failed: %s", candidate, tried[-1])
            continue
        return Converted(data, candidate, "; ".join(tried))
    raise ModelLoadError(f"skl2onnx cannot convert {type(model).__name__}: {' | '.join(tried)}")


def _convert(model: Any, spec: ModelSpec, column_types: dict[str, str], dtype: str) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    _patch_tree_converters()
    numeric = DoubleTensorType if dtype == "float64" else FloatTensorType
    meta = {META_KIND: spec.kind, META_CLASSES: json.dumps(list(spec.classes))}
    if spec.feed == "numpy":  # fit on a matrix: one [N, k] input, columns in feature order
        initial = [("X", numeric([None, len(spec.features)]))]
        meta[META_MATRIX] = json.dumps(list(spec.features))
    else:
        initial = [
            (
                f,
                StringTensorType([None, 1])
                if _is_string(column_types.get(f))
                else numeric([None, 1]),
            )
            for f in spec.features
        ]
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    options = {id(final): {"zipmap": False}} if spec.kind in ("binary", "multiclass") else None
    onx = convert_sklearn(
        model,
        initial_types=initial,
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    _cast_tree_outputs(onx)
    _set_metadata(onx, meta)
    return bytes(onx.SerializeToString())


def _is_string(mlflow_type: str | None) -> bool:
    return mlflow_type is not None and mlflow_type.lower() in _STRING_TYPES


def _cast_tree_outputs(onx: Any) -> None:
    """A tree node's outputs are float32 in onnxruntime; where skl2onnx declared the graph's
    output float64 (a bare tree model in a float64 graph), insert the Cast it left out."""
    from onnx import TensorProto, helper

    graph = onx.graph
    declared = {v.name: v.type.tensor_type.elem_type for v in [*graph.output, *graph.value_info]}
    casts: list[tuple[int, Any]] = []
    for position, node in enumerate(graph.node):
        if node.domain != "ai.onnx.ml" or not node.op_type.startswith("TreeEnsemble"):
            continue
        for k, name in enumerate(node.output):
            if k == 0 and node.op_type == "TreeEnsembleClassifier":
                continue  # the label output
            if declared.get(name) != TensorProto.DOUBLE:
                continue
            node.output[k] = f"{name}_float32"
            cast = helper.make_node("Cast", [node.output[k]], [name], to=TensorProto.DOUBLE)
            casts.append((position + 1, cast))
    for position, cast in reversed(casts):
        graph.node.insert(position, cast)


def _set_metadata(onx: Any, values: dict[str, str]) -> None:
    for key, value in values.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value


def column_types_of(spec: ModelSpec, sample: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Signature types, else the Arrow types of the sample (``string`` for text columns)."""
    types = dict(spec.input_types)
    for name, arrow_type in sample:
        types.setdefault(name, "string" if arrow_type in ("string", "large_string") else "double")
    return types


def _patch_tree_converters() -> None:
    """Tree classifiers with float64 thresholds in a float64 graph (see the module docstring)."""
    global _patched
    if _patched:
        return
    from onnx import numpy_helper
    from skl2onnx.common._registration import _converter_pool, register_converter
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
    )

    class _Float64Trees:
        """The converter's container, with tree attributes written as float64 tensors."""

        def __init__(self, container: Any) -> None:
            self._container = container

        def __getattr__(self, name: str) -> Any:
            return getattr(self._container, name)

        def add_node(self, op_type: str, *args: Any, **attrs: Any) -> Any:
            if attrs.get("op_domain") == "ai.onnx.ml" and op_type.startswith("TreeEnsemble"):
                for key in _AS_TENSOR:
                    value = attrs.get(key)
                    if isinstance(value, np.ndarray) and value.dtype == np.float64:
                        tensor = numpy_helper.from_array(attrs.pop(key), name=key)
                        attrs[f"{key}_as_tensor"] = tensor
            return self._container.add_node(op_type, *args, **attrs)

    def classifier(scope: Any, operator: Any, container: Any) -> Any:
        return convert_sklearn_random_forest_classifier(
            scope, operator, _Float64Trees(container), op_version=3
        )

    for alias in _TREE_CLASSIFIERS:
        allowed = _converter_pool[alias].get_allowed_options()
        register_converter(alias, classifier, overwrite=True, options=allowed)
    _patched = True
