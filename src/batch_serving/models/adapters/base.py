"""The seam between a model runtime and the scoring core (after SeldonIO/MLServer's ``MLModel``).

A runtime (sklearn, generic pyfunc, later ONNX) is one ``Adapter``: it loads its artifact,
describes the loaded model once on the driver as a small picklable ``ModelSpec`` (kind, feature
order, positive class, output fields), and turns one Arrow batch into output arrays on a worker.
Nothing here imports pyspark: the batch engines, a stream and the API all call the same code.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from batch_serving.errors import ConfigError, ModelLoadError

Kind = Literal["binary", "multiclass", "regression", "pyfunc"]
Feed = Literal["numpy", "pandas"]

PROBABILITIES = "probabilities"
PREDICTED_LABEL = "predicted_label"
PREDICTION = "prediction"


@dataclass(frozen=True)
class ModelInputSpec:
    """The model signature's inputs: column names and MLflow type names, in order."""

    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model object, which runtime loaded it, and its signature's input columns."""

    runtime: str
    obj: Any
    inputs: ModelInputSpec | None


@dataclass(frozen=True)
class OutputRequest:
    """What the job asks of a model: feature list (or None: from the model), positive class."""

    features: tuple[str, ...] | None = None
    positive_label: str | int | bool | None = None
    score_column: str = "score"


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker needs besides the model object itself; small and picklable."""

    runtime: str
    kind: Kind
    features: tuple[str, ...]
    feed: Feed
    classes: tuple[str, ...] = ()
    positive_index: int | None = None
    positive_label: str | None = None
    score_column: str = "score"
    input_types: tuple[tuple[str, str], ...] = ()  # signature types, for cast planning

    def output_fields(self) -> list[pa.Field]:
        """Arrow fields this model adds after the entity columns."""
        if self.kind == "binary":
            return [pa.field(self.score_column, pa.float64())]
        if self.kind == "multiclass":
            return [
                pa.field(PROBABILITIES, pa.map_(pa.string(), pa.float64())),
                pa.field(PREDICTED_LABEL, pa.string()),
            ]
        return [pa.field(PREDICTION, pa.float64())]


class Adapter(ABC):
    """One model runtime. Stateless: the model object travels separately (broadcast/cache)."""

    name: str

    @abstractmethod
    def load(self, model_dir: Path, flavor_conf: dict[str, Any], label: str) -> Any:
        """Load the artifact in ``model_dir``; ``label`` names the model in errors."""

    @abstractmethod
    def describe(
        self, model: Any, inputs: ModelInputSpec | None, request: OutputRequest, label: str
    ) -> ModelSpec:
        """Decide kind, feature order and positive class, once, on the driver."""

    @abstractmethod
    def predict(self, spec: ModelSpec, model: Any, batch: pa.RecordBatch) -> list[pa.Array]:
        """Output arrays (``spec.output_fields()``) for a batch holding the feature columns."""


def feature_matrix(spec: ModelSpec, batch: pa.RecordBatch) -> Any:
    """Features as the model was fit: a DataFrame (named columns) or a float64 matrix.

    A float64 matrix is shared by the models that read the same columns of the same batch
    (members of one plan): it is built once and handed out read-only, so one model cannot
    change what the next sees. A DataFrame is built per call (models may add columns)."""
    selected = batch.select(list(spec.features))
    if spec.feed == "pandas":
        return selected.to_pandas()
    last = getattr(_shared, "last", None)
    if last is not None and last[0] is batch and last[1] == spec.features:
        return last[2]
    x = np.empty((selected.num_rows, selected.num_columns), dtype=np.float64)
    for j, column in enumerate(selected.columns):
        x[:, j] = column.to_numpy(zero_copy_only=False)
    x.flags.writeable = False
    _shared.last = (batch, spec.features, x)  # holds the batch: its id cannot be reused
    return x


_shared = threading.local()  # per thread: the API scores requests on several threads


def from_probabilities(spec: ModelSpec, proba: Any) -> list[pa.Array]:
    """Binary: the positive class's column, looked up by label; multi-class: map + label."""
    matrix = np.asarray(proba, dtype=np.float64)
    if spec.kind == "binary":
        return [pa.array(matrix[:, spec.positive_index], type=pa.float64())]
    n, k = matrix.shape[0], len(spec.classes)
    keys = pa.array(np.tile(np.asarray(spec.classes, dtype=object), n), type=pa.string())
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    probabilities = pa.MapArray.from_arrays(offsets, keys, pa.array(matrix.reshape(-1)))
    labels = np.asarray(spec.classes, dtype=object)[np.argmax(matrix, axis=1)]
    return [probabilities, pa.array(labels, type=pa.string())]


def from_values(raw: Any, n: int) -> list[pa.Array]:
    """Regression / generic predictions: exactly one float per row."""
    values = np.asarray(raw.to_numpy() if hasattr(raw, "to_numpy") else raw, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape != (n,):
        raise ValueError(f"model returned shape {values.shape}; expected one value per row ({n})")
    return [pa.array(values, type=pa.float64())]


def empty_outputs(spec: ModelSpec) -> list[pa.Array]:
    return [pa.array([], type=f.type) for f in spec.output_fields()]


def resolve_features(
    configured: Sequence[str] | None,
    fitted: tuple[str, ...] | None,
    inputs: ModelInputSpec | None,
    label: str,
) -> tuple[str, ...]:
    """Configured list > signature > names seen at fit; a model fit on a frame keeps its order."""
    if configured is not None:
        cols = tuple(configured)
        if fitted is not None:
            if set(cols) != set(fitted):
                raise ConfigError(
                    f"features {list(cols)} do not match the columns {list(fitted)} "
                    f"that {label} was fit on"
                )
            return fitted
        return cols
    if inputs is not None:
        return fitted if fitted is not None else inputs.names
    if fitted is not None:
        return fitted
    raise ConfigError(
        f"features: from_signature, but {label} has no column signature; "
        "list the feature columns under `features:` in the job config"
    )


def positive_index(labels: tuple[str, ...], positive: str | int | bool | None, label: str) -> int:
    """Index of the positive class by its label (never "the second column")."""
    if positive is None:
        for default in ("1", "True", "1.0"):
            if default in labels:
                return labels.index(default)
        raise ConfigError(
            f"{label} is a binary classifier with classes {list(labels)}; set "
            "model.positive_label to the class whose probability is the score"
        )
    wanted = str(positive)
    if wanted not in labels:
        raise ConfigError(
            f"model.positive_label {wanted!r} is not a class of {label}; classes: {list(labels)}"
        )
    return labels.index(wanted)


def estimator_kind(model: Any, runtime: str, label: str) -> tuple[Kind, tuple[str, ...]]:
    """Kind and class labels of a scikit-learn-API model (sklearn, LGBM*, XGB*, CatBoost*).

    A model with classes is a classifier and is scored by ``predict_proba``; one without it
    (LinearSVC, SVC(probability=False), a generic CatBoost) is refused here, on the driver:
    its ``predict`` gives class labels, and labels written as scores are wrong numbers."""
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) == 0:
        return "regression", ()
    labels = tuple(str(c) for c in np.asarray(classes).tolist())
    if not hasattr(model, "predict_proba"):
        raise ModelLoadError(
            f"{label} is a {runtime} classifier ({type(model).__name__}, classes {list(labels)}) "
            "without predict_proba: its predictions are class labels, not scores. Log a "
            "classifier that has predict_proba (e.g. SVC(probability=True), or wrap it in "
            "sklearn.calibration.CalibratedClassifierCV)"
        )
    return ("multiclass" if len(labels) > 2 else "binary"), labels


def declared_labels(
    labels: tuple[str, ...], declared: tuple[str, ...] | None, label: str
) -> tuple[str, ...]:
    """The class labels to score by: the model's own, or those its MLmodel metadata declares.

    Libraries that only fit integer codes (XGBoost, native boosters) know their classes as
    0..k-1; ``class_labels`` in the MLmodel metadata names class i. Declared labels may only
    rename codes: labels that contradict the model's own names are refused."""
    if declared is None:
        return labels
    codes = tuple(str(i) for i in range(len(labels)))
    if len(declared) != len(labels) or labels not in (codes, declared):
        raise ModelLoadError(
            f"{label}: MLmodel metadata class_labels {list(declared)} do not fit the model's "
            f"classes {list(labels)}; list one label per class, in the order of the codes "
            f"{list(codes)}"
        )
    return declared


def classifier_or_regression_spec(
    runtime: str,
    kind: Kind,
    labels: tuple[str, ...],
    features: tuple[str, ...],
    feed: Feed,
    inputs: ModelInputSpec | None,
    request: OutputRequest,
    label: str,
) -> ModelSpec:
    """The spec once a runtime has told kind and class labels: binary scores its positive class
    (resolved by label), multi-class keeps every class, any other kind is a regression."""
    common: dict[str, Any] = {
        "runtime": runtime,
        "features": features,
        "feed": feed,
        "score_column": request.score_column,
        "input_types": inputs.columns if inputs else (),
    }
    if kind == "binary":
        index = positive_index(labels, request.positive_label, label)
        return ModelSpec(
            kind="binary",
            classes=labels,
            positive_index=index,
            positive_label=labels[index],
            **common,
        )
    if kind == "multiclass":
        return ModelSpec(kind="multiclass", classes=labels, **common)
    return ModelSpec(kind="regression", **common)
