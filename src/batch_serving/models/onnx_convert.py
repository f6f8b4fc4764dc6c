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

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from batch_serving.errors import OnnxConversionError
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
    """Convert ``model``; ``auto`` tries float64 first. Numeric features travel as ONE
    ``[N, k]`` tensor (``_inputs``); raises ``OnnxConversionError`` saying what to change."""
    tried: dict[str, list[str]] = {}  # reason -> the float types that failed for it
    for candidate in ("float64", "float32") if dtype == "auto" else (dtype,):
        try:
            data = _convert(model, spec, column_types, candidate)
            OnnxModel(data).session  # noqa: B018 - onnxruntime must accept the graph
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc)
            tried.setdefault(reason, []).append(candidate)
            log.info("ONNX conversion in %s failed: %s", candidate, reason)
            continue
        return Converted(data, candidate, _reasons(tried))
    raise OnnxConversionError(
        f"skl2onnx cannot convert {_describe(model)} ({_reasons(tried)}): export a model "
        "whose every step skl2onnx supports (https://onnx.ai/sklearn-onnx/supported.html), "
        + ("try --dtype auto, " if dtype != "auto" else "")
        + "or keep scoring it with its sklearn runtime"
    )


def _reasons(tried: dict[str, list[str]]) -> str:
    return " | ".join(f"{', '.join(types)}: {reason}" for reason, types in tried.items())


def _describe(model: Any) -> str:
    """``Pipeline(StandardScaler, RandomForestClassifier)``, or the estimator's class name."""
    steps = getattr(model, "steps", None)
    if not steps:
        return type(model).__name__
    return f"{type(model).__name__}({', '.join(type(s).__name__ for _, s in steps)})"


def _convert(model: Any, spec: ModelSpec, column_types: dict[str, str], dtype: str) -> bytes:
    from skl2onnx import convert_sklearn

    _patch_tree_converters()
    meta = {META_KIND: spec.kind, META_CLASSES: json.dumps(list(spec.classes))}
    model, initial, matrix = _inputs(model, spec, column_types, dtype)
    if matrix:
        meta[META_MATRIX] = json.dumps(matrix)
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


def _inputs(
    model: Any, spec: ModelSpec, column_types: dict[str, str], dtype: str
) -> tuple[Any, list[tuple[str, Any]], list[str]]:
    """(model to convert, skl2onnx initial types, the matrix's column order or []).

    Numeric features only (a bare estimator or a pipeline fit on a numeric DataFrame or on a
    matrix): ONE ``[N, k]`` tensor in ``dtype``, columns in the order the model was fit (the
    adapter feeds them by name in that order, from the ONNX metadata). One input per column
    would not convert a bare estimator (it takes one input) and, in a pipeline, skl2onnx joins
    them with a ``FeatureVectorizer``, which outputs float32 whatever ``dtype`` is. A
    ColumnTransformer selecting by name gets positions in that order instead (on a copy).
    With string features (one-hot encoded categories): one ``[N, 1]`` input per column, as
    a ColumnTransformer selects them by input name (it joins numeric ones with a
    type-preserving Concat)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    numeric = DoubleTensorType if dtype == "float64" else FloatTensorType
    features = list(spec.features)
    if any(_is_string(column_types.get(f)) for f in features):
        return model, [(f, _column_type(column_types.get(f), numeric)) for f in features], []
    fitted = [str(c) for c in getattr(model, "feature_names_in_", [])]
    order = fitted if sorted(fitted) == sorted(features) else features
    return _by_position(model, order), [("X", numeric([None, len(order)]))], order


def _column_type(mlflow_type: str | None, numeric: Any) -> Any:
    from skl2onnx.common.data_types import StringTensorType

    return StringTensorType([None, 1]) if _is_string(mlflow_type) else numeric([None, 1])


def _by_position(model: Any, order: Sequence[str]) -> Any:
    """``model``, or a copy whose leading ColumnTransformers select columns by position in
    ``order``: skl2onnx resolves a column name only as the name of a graph input."""
    found = _leading_column_transformers(model)
    if not any(_named(cols) for ct in found for _, _, cols in ct.transformers_):
        return model
    model = copy.deepcopy(model)
    for ct in _leading_column_transformers(model):
        ct.transformers_ = [
            (name, step, _positions(cols, order)) for name, step, cols in ct.transformers_
        ]
    return model


def _leading_column_transformers(model: Any) -> list[Any]:
    """The ColumnTransformers that see the model's input (the model itself or the first
    step of a pipeline, recursively)."""
    from sklearn.compose import ColumnTransformer

    if isinstance(model, ColumnTransformer):
        return [model]
    steps = getattr(model, "steps", None)
    return _leading_column_transformers(steps[0][1]) if steps else []


def _named(columns: Any) -> bool:
    if isinstance(columns, str):
        return True
    return isinstance(columns, list | tuple | np.ndarray) and any(
        isinstance(c, str) for c in columns
    )


def _positions(columns: Any, order: Sequence[str]) -> Any:
    index = {name: i for i, name in enumerate(order)}
    if isinstance(columns, str):
        return [index[columns]]
    if _named(columns):
        return [index[c] if isinstance(c, str) else c for c in columns]
    return columns


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
