"""Flavors whose library we import (LightGBM, XGBoost, CatBoost): one shared contract.

Scored through the generic pyfunc wrapper, a classifier of these flavors returns class labels
(0/1) where the job wants the positive class's probability: wrong numbers with exit 0. So each
flavor has its own adapter, a subclass of ``NativeAdapter``, which loads the library's own
object (a scikit-learn-API estimator or a native booster) and tells kind, class labels and
fitted feature names from it; the spec is then built like sklearn's (positive class by label).

Libraries that fit integer codes only (XGBoost, native boosters) know their classes as
0..k-1; the MLmodel's ``metadata: {class_labels: [...]}`` (``log_model(metadata=...)``) names
class i, so string labels such as ["churn", "stay"] work for them too.

Prediction is single-threaded (``num_threads=1`` and the like): Spark already runs one task
per core, so library threads only oversubscribe; tree sums do not depend on thread count.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.errors import ModelLoadError
from batch_serving.models.adapters.base import (
    Adapter,
    Feed,
    Kind,
    ModelInputSpec,
    ModelSpec,
    OutputRequest,
    classifier_or_regression_spec,
    declared_labels,
    empty_outputs,
    feature_matrix,
    from_probabilities,
    from_values,
    resolve_features,
)

CLASS_LABELS = "class_labels"  # MLmodel metadata key: the label of class i, for coded classes


@dataclass(frozen=True)
class NativeModel:
    """A flavor's native object and the class labels its MLmodel declares (picklable)."""

    obj: Any
    class_labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Traits:
    """What a native model says about itself: kind, class labels, feature names seen at fit."""

    kind: Kind
    labels: tuple[str, ...]
    fitted: tuple[str, ...] | None


class NativeAdapter(Adapter):
    """Load, describe and score a library's own model; subclasses say how for their library."""

    name: str

    def load(self, model_dir: Path, flavor_conf: dict[str, Any], label: str) -> NativeModel:
        try:
            obj = self.load_native(model_dir)
        except Exception as exc:
            raise ModelLoadError(f"{label}: cannot load {self.name} model: {exc}") from None
        return NativeModel(obj, metadata_class_labels(model_dir, label))

    def describe(
        self, model: Any, inputs: ModelInputSpec | None, request: OutputRequest, label: str
    ) -> ModelSpec:
        traits = self.traits(model.obj, label)
        labels = declared_labels(traits.labels, model.class_labels, label)
        cols = resolve_features(request.features, traits.fitted, inputs, label)
        # named at fit: fed by name (XGBoost checks names; CatBoost reads string columns)
        feed: Feed = "pandas" if traits.fitted is not None else "numpy"
        return classifier_or_regression_spec(
            self.name, traits.kind, labels, cols, feed, inputs, request, label
        )

    def predict(self, spec: ModelSpec, model: Any, batch: pa.RecordBatch) -> list[pa.Array]:
        if batch.num_rows == 0:
            return empty_outputs(spec)
        x = feature_matrix(spec, batch)
        if spec.kind == "regression":
            return from_values(self.values(model.obj, x), batch.num_rows)
        return from_probabilities(spec, self.probabilities(model.obj, x))

    @abstractmethod
    def load_native(self, model_dir: Path) -> Any:
        """The library's object, as its MLflow flavor loads it."""

    @abstractmethod
    def traits(self, obj: Any, label: str) -> Traits:
        """Kind, labels and fitted names; refuses (ModelLoadError) what it cannot score right."""

    @abstractmethod
    def probabilities(self, obj: Any, x: Any) -> Any:
        """An (n, k) matrix: column i is the probability of class i."""

    @abstractmethod
    def values(self, obj: Any, x: Any) -> Any:
        """One number per row (regression, ranking, counts)."""


def metadata_class_labels(model_dir: Path, label: str) -> tuple[str, ...] | None:
    """``class_labels`` from the MLmodel's metadata, if the model was logged with them."""
    from mlflow.models import Model

    metadata = Model.load(str(model_dir / "MLmodel")).metadata or {}
    declared = metadata.get(CLASS_LABELS)
    if declared is None:
        return None
    if not isinstance(declared, list) or not declared:
        raise ModelLoadError(
            f"{label}: MLmodel metadata {CLASS_LABELS} must be a list of labels, "
            f"one per class; got {declared!r}"
        )
    return tuple(str(c) for c in declared)


def with_negative_class(p: Any) -> Any:
    """(n, 2) from a binary objective's P(class 1), as the libraries' predict_proba build it."""
    p = np.asarray(p, dtype=np.float64)
    return np.column_stack([1.0 - p, p])


def objective_refused(runtime: str, objective: str, label: str, hint: str) -> ModelLoadError:
    """The error for a booster whose objective gives no probabilities and is no regression."""
    return ModelLoadError(
        f"{label}: a {runtime} booster with objective {objective!r} gives neither class "
        f"probabilities nor a regression value this runtime can score; {hint}"
    )


def unnamed(names: list[str] | tuple[str, ...] | None, generated: list[str]) -> bool:
    """True if ``names`` are the library's placeholders for a model fit on a plain matrix."""
    return names is None or list(names) == generated
