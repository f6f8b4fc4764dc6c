"""Pure unit tests of the scoring adapter (no Spark): kind detection and positive class."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from batch_serving.errors import ConfigError
from batch_serving.models.adapters import build_spec, predict_batch
from batch_serving.models.artifacts import LoadedModel, ModelInputSpec

X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.5], [0.5, 2.0], [2.5, 2.5]])
INPUTS = ModelInputSpec((("a", "double"), ("b", "double")))


def batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(X[:, 0]), pa.array(X[:, 1])], names=["a", "b"])


def classifier(labels: list) -> LogisticRegression:
    y = [labels[i % len(labels)] for i in range(len(X))]
    return LogisticRegression().fit(X, y)


def test_binary_default_positive_is_label_1_not_a_column_position() -> None:
    model = classifier([1, 0])
    spec = build_spec(LoadedModel("sklearn", model, INPUTS), None, None, "score", "m")
    assert (spec.kind, spec.positive_label, spec.feed) == ("binary", "1", "numpy")
    (scores,) = predict_batch(spec, model, batch())
    np.testing.assert_array_equal(scores.to_numpy(), model.predict_proba(X)[:, 1])


def test_string_labels_require_an_explicit_positive_label() -> None:
    model = classifier(["stay", "churn"])
    loaded = LoadedModel("sklearn", model, INPUTS)
    with pytest.raises(ConfigError, match=r"classes \['churn', 'stay'\]; set model.positive_label"):
        build_spec(loaded, None, None, "score", "m")
    spec = build_spec(loaded, None, "churn", "score", "m")
    assert spec.positive_index == 0
    with pytest.raises(ConfigError, match="'maybe' is not a class"):
        build_spec(loaded, None, "maybe", "score", "m")


def test_multiclass_outputs_a_map_and_the_argmax_label() -> None:
    model = classifier(["a", "b", "c"])
    spec = build_spec(LoadedModel("sklearn", model, INPUTS), None, None, "score", "m")
    probabilities, labels = predict_batch(spec, model, batch())
    proba = model.predict_proba(X)
    assert [dict(row) for row in probabilities.to_pylist()][2] == dict(
        zip(["a", "b", "c"], proba[2], strict=True)
    )
    assert labels.to_pylist() == list(model.predict(X))


def test_regressor_and_empty_batch() -> None:
    model = LinearRegression().fit(X, X[:, 0] * 2)
    spec = build_spec(LoadedModel("sklearn", model, INPUTS), None, None, "score", "m")
    assert spec.kind == "regression"
    np.testing.assert_array_equal(
        predict_batch(spec, model, batch())[0].to_numpy(), model.predict(X)
    )
    (empty,) = predict_batch(spec, model, batch().slice(0, 0))
    assert len(empty) == 0 and empty.type == pa.float64()


def test_features_without_signature_must_be_configured() -> None:
    model = LinearRegression().fit(X, X[:, 0])
    with pytest.raises(ConfigError, match="no column signature; list the feature columns"):
        build_spec(LoadedModel("sklearn", model, None), None, None, "score", "m")
    spec = build_spec(LoadedModel("sklearn", model, None), ["b", "a"], None, "score", "m")
    assert spec.features == ("b", "a")
