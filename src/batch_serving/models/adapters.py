"""Turn a loaded model into output columns for one Arrow batch.

``build_spec`` runs once on the driver and decides everything that depends on the model
(kind, feature order, positive class, output schema); ``predict_batch`` runs on workers and
is a pure function of (spec, model, batch). The positive class of a binary classifier is
looked up in ``classes_`` by label, never taken as "the first (or second) column".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from batch_serving.errors import ConfigError
from batch_serving.models.artifacts import LoadedModel

Kind = Literal["binary", "multiclass", "regression", "pyfunc"]
Feed = Literal["numpy", "pandas"]

PROBABILITIES = "probabilities"
PREDICTED_LABEL = "predicted_label"
PREDICTION = "prediction"


@dataclass(frozen=True)
class ScoringSpec:
    """Everything a worker needs besides the model itself; small and picklable."""

    kind: Kind
    features: tuple[str, ...]
    feed: Feed
    classes: tuple[str, ...] = ()
    positive_index: int | None = None
    positive_label: str | None = None
    score_column: str = "score"

    def output_fields(self) -> list[pa.Field]:
        """Arrow fields appended after the entity columns."""
        if self.kind == "binary":
            return [pa.field(self.score_column, pa.float64())]
        if self.kind == "multiclass":
            return [
                pa.field(PROBABILITIES, pa.map_(pa.string(), pa.float64())),
                pa.field(PREDICTED_LABEL, pa.string()),
            ]
        return [pa.field(PREDICTION, pa.float64())]


def build_spec(
    loaded: LoadedModel,
    features: Sequence[str] | None,
    positive_label: str | int | bool | None,
    score_column: str,
    label: str,
) -> ScoringSpec:
    """Decide kind, feature order and positive class; ``label`` names the model in errors."""
    model = loaded.obj
    if loaded.flavor == "pyfunc":
        cols = _resolve_features(features, None, loaded, label)
        return ScoringSpec("pyfunc", cols, "pandas", score_column=score_column)
    fitted_names = getattr(model, "feature_names_in_", None)
    fitted = tuple(str(c) for c in fitted_names) if fitted_names is not None else None
    cols = _resolve_features(features, fitted, loaded, label)
    feed: Feed = "pandas" if fitted is not None else "numpy"
    classes = getattr(model, "classes_", None)
    if classes is None or not hasattr(model, "predict_proba"):
        return ScoringSpec("regression", cols, feed, score_column=score_column)
    labels = tuple(str(c) for c in np.asarray(classes).tolist())
    if len(labels) > 2:
        return ScoringSpec("multiclass", cols, feed, classes=labels, score_column=score_column)
    index = _positive_index(labels, positive_label, label)
    return ScoringSpec(
        "binary",
        cols,
        feed,
        classes=labels,
        positive_index=index,
        positive_label=labels[index],
        score_column=score_column,
    )


def predict_batch(spec: ScoringSpec, model: Any, batch: pa.RecordBatch) -> list[pa.Array]:
    """Score one batch that contains (at least) the feature columns."""
    n = batch.num_rows
    if n == 0:
        return [pa.array([], type=f.type) for f in spec.output_fields()]
    x = _features(spec, batch)
    if spec.kind == "binary":
        proba = np.asarray(model.predict_proba(x))
        return [pa.array(proba[:, spec.positive_index], type=pa.float64())]
    if spec.kind == "multiclass":
        proba = np.asarray(model.predict_proba(x), dtype=np.float64)
        k = len(spec.classes)
        keys = pa.array(np.tile(np.asarray(spec.classes, dtype=object), n), type=pa.string())
        offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
        probabilities = pa.MapArray.from_arrays(offsets, keys, pa.array(proba.reshape(-1)))
        labels = np.asarray(spec.classes, dtype=object)[np.argmax(proba, axis=1)]
        return [probabilities, pa.array(labels, type=pa.string())]
    raw = model.predict(x)
    values = np.asarray(raw.to_numpy() if hasattr(raw, "to_numpy") else raw, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape != (n,):
        raise ValueError(f"model returned shape {values.shape}; expected one value per row ({n})")
    return [pa.array(values, type=pa.float64())]


def _features(spec: ScoringSpec, batch: pa.RecordBatch) -> Any:
    selected = batch.select(list(spec.features))
    if spec.feed == "pandas":
        return selected.to_pandas()
    x = np.empty((selected.num_rows, selected.num_columns), dtype=np.float64)
    for j, column in enumerate(selected.columns):
        x[:, j] = column.to_numpy(zero_copy_only=False)
    return x


def _resolve_features(
    configured: Sequence[str] | None,
    fitted: tuple[str, ...] | None,
    loaded: LoadedModel,
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
    if loaded.inputs is not None:
        return fitted if fitted is not None else loaded.inputs.names
    if fitted is not None:
        return fitted
    raise ConfigError(
        f"features: from_signature, but {label} has no column signature; "
        "list the feature columns under `features:` in the job config"
    )


def _positive_index(labels: tuple[str, ...], positive: str | int | bool | None, label: str) -> int:
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
