"""Pure unit tests of the scoring adapter (no Spark): kind detection and positive class."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from batch_serving.errors import ConfigError
from batch_serving.models.adapters import (
    LoadedModel,
    ModelInputSpec,
    OutputRequest,
    describe,
    predict,
)

X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.5], [0.5, 2.0], [2.5, 2.5]])
INPUTS = ModelInputSpec((("a", "double"), ("b", "double")))


def batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(X[:, 0]), pa.array(X[:, 1])], names=["a", "b"])


def spec_of(loaded: LoadedModel, positive=None, features=None):  # type: ignore[no-untyped-def]
    return describe(loaded, OutputRequest(features=features, positive_label=positive), "m")


def classifier(labels: list) -> LogisticRegression:
    y = [labels[i % len(labels)] for i in range(len(X))]
    return LogisticRegression().fit(X, y)


def test_binary_default_positive_is_label_1_not_a_column_position() -> None:
    model = classifier([1, 0])
    spec = spec_of(LoadedModel("sklearn", model, INPUTS))
    assert (spec.kind, spec.positive_label, spec.feed) == ("binary", "1", "numpy")
    (scores,) = predict(spec, model, batch())
    np.testing.assert_array_equal(scores.to_numpy(), model.predict_proba(X)[:, 1])


def test_string_labels_require_an_explicit_positive_label() -> None:
    model = classifier(["stay", "churn"])
    loaded = LoadedModel("sklearn", model, INPUTS)
    with pytest.raises(ConfigError, match=r"classes \['churn', 'stay'\]; set model.positive_label"):
        spec_of(loaded)
    spec = spec_of(loaded, positive="churn")
    assert spec.positive_index == 0
    with pytest.raises(ConfigError, match="'maybe' is not a class"):
        spec_of(loaded, positive="maybe")


def test_multiclass_outputs_a_map_and_the_argmax_label() -> None:
    model = classifier(["a", "b", "c"])
    spec = spec_of(LoadedModel("sklearn", model, INPUTS))
    probabilities, labels = predict(spec, model, batch())
    proba = model.predict_proba(X)
    assert [dict(row) for row in probabilities.to_pylist()][2] == dict(
        zip(["a", "b", "c"], proba[2], strict=True)
    )
    assert labels.to_pylist() == list(model.predict(X))


def test_regressor_and_empty_batch() -> None:
    model = LinearRegression().fit(X, X[:, 0] * 2)
    spec = spec_of(LoadedModel("sklearn", model, INPUTS))
    assert spec.kind == "regression"
    np.testing.assert_array_equal(predict(spec, model, batch())[0].to_numpy(), model.predict(X))
    (empty,) = predict(spec, model, batch().slice(0, 0))
    assert len(empty) == 0 and empty.type == pa.float64()


def test_features_without_signature_must_be_configured() -> None:
    model = LinearRegression().fit(X, X[:, 0])
    with pytest.raises(ConfigError, match="no column signature; list the feature columns"):
        spec_of(LoadedModel("sklearn", model, None))
    spec = spec_of(LoadedModel("sklearn", model, None), features=("b", "a"))
    assert spec.features == ("b", "a")


def test_members_reading_the_same_columns_share_one_read_only_matrix() -> None:
    """Members of one plan build the float matrix once per batch; it is read-only, so one
    model cannot change what the next one sees (a scaler with copy=False copies instead)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from batch_serving.models.adapters.base import feature_matrix

    in_place = make_pipeline(StandardScaler(copy=False), LogisticRegression())
    in_place.fit(X.copy(), [0, 1, 0, 1, 0, 1])
    plain = classifier([0, 1])
    specs = [spec_of(LoadedModel("sklearn", m, INPUTS)) for m in (in_place, plain)]
    data = batch()
    first = feature_matrix(specs[0], data)
    assert feature_matrix(specs[1], data) is first and not first.flags.writeable
    (scaled,) = predict(specs[0], in_place, data)  # the shared matrix, scaled "in place"
    (scores,) = predict(specs[1], plain, data)  # ... and the same matrix again
    np.testing.assert_array_equal(first, X)
    np.testing.assert_array_equal(scaled.to_numpy(), in_place.predict_proba(X.copy())[:, 1])
    np.testing.assert_array_equal(scores.to_numpy(), plain.predict_proba(X)[:, 1])
    assert feature_matrix(specs[0], batch()) is not first  # another batch: built again
