"""export-onnx converts what the README says it supports (issue #31.5): bare estimators fit on
a pandas DataFrame, and numeric pipelines with float64 end to end (one ``[N, k]`` tensor, no
float32 FeatureVectorizer); an unconvertible model exits 10 saying what to change."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import customers, labelled
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from batch_serving import sample_data
from batch_serving.cli import main
from batch_serving.config import JobConfig
from batch_serving.demo import HGB_TRUSTED
from batch_serving.errors import OnnxConversionError
from batch_serving.models.adapters import OutputRequest, describe
from batch_serving.models.adapters.base import LoadedModel
from batch_serving.models.adapters.onnx import OnnxModel
from batch_serving.models.onnx_convert import convert
from batch_serving.runs.export_onnx import export_onnx, source_model

NUMERIC = list(sample_data.NUMERIC)
TREE_TRUSTED = ["sklearn.tree._tree.Tree"]


def fit(model: Any, rows: int = 3000) -> Any:
    """Fit on a pandas DataFrame of the numeric features (so the model has feature names)."""
    frame = labelled(rows, seed=21)
    return model.fit(frame[NUMERIC], frame["churned"])


@pytest.fixture
def partition(warehouse: Callable[..., Path]) -> Path:
    from conftest import RUN_DATE

    return warehouse(customers(2000, seed=5)) / f"ds={RUN_DATE}"


def graph_inputs(model: OnnxModel) -> list[tuple[str, str, list[Any]]]:
    return [(i.name, i.type, list(i.shape)) for i in model.session.get_inputs()]


@pytest.mark.parametrize(
    ("estimator", "trusted", "limit"),
    [
        (LogisticRegression(max_iter=2000), None, 1e-12),  # float64 linear algebra: exact
        (HistGradientBoostingClassifier(max_iter=60, random_state=0), HGB_TRUSTED, 1e-6),
    ],
    ids=["logreg", "hgb"],
)
def test_bare_estimator_fit_on_a_dataframe_exports_and_passes_parity(
    estimator: Any,
    trusted: list[str] | None,
    limit: float,
    register: Callable[..., tuple[str, int]],
    tracking_uri: str,
    partition: Path,
    job_config: Callable[..., JobConfig],
) -> None:
    model = fit(estimator)
    assert list(model.feature_names_in_) == NUMERIC  # fit on a DataFrame, not a matrix
    name, _ = register(model, customers(200)[NUMERIC], trusted=trusted)
    cfg = job_config(name)
    done = export_onnx(
        source_model(f"models:/{name}@champion", tracking_uri, cfg),
        partition,
        cfg=cfg,
        register=False,
    )
    report = done.report
    assert report.passed and report.rows == 2000
    assert report.onnx_dtype == "float64" and report.max_abs_diff <= limit
    assert all(f.rows == 0 for f in report.flips)


def test_scaler_forest_float64_is_float64_end_to_end(
    register: Callable[..., tuple[str, int]],
    tracking_uri: str,
    partition: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Pipeline(StandardScaler, RandomForest) fit on a DataFrame: with one input per column
    skl2onnx joined them in a float32 FeatureVectorizer (max diff 0.03, refused)."""
    model = fit(make_pipeline(StandardScaler(), RandomForestClassifier(40, max_depth=8)))
    name, version = register(model, customers(200)[NUMERIC], trusted=TREE_TRUSTED)
    argv = ["export-onnx", "--model", f"models:/{name}/{version}", "--tracking-uri", tracking_uri]
    flags = ["--dtype", "float64", "--tolerance", "1e-6", "--dry-run", "--json"]
    assert main([*argv, "--input", str(partition), *flags]) == 0
    report = json.loads(capsys.readouterr().out)["parity"]
    assert report["passed"] and report["onnx_dtype"] == "float64"
    assert report["max_abs_diff"] <= 1e-6 and report["rows"] == 2000


def test_one_float64_tensor_in_fit_order_and_no_feature_vectorizer() -> None:
    """The graph: one [N, 5] double input, columns in ``feature_names_in_`` order (also when
    the signature lists them in another order), and no float32 FeatureVectorizer."""
    model = fit(make_pipeline(StandardScaler(), RandomForestClassifier(10, max_depth=4)), 800)
    shuffled = OutputRequest(features=tuple(reversed(NUMERIC)))
    spec = describe(LoadedModel("sklearn", model, None), shuffled, "m")
    converted = convert(model, spec, {}, "float64")
    onnx_model = converted.model()
    assert graph_inputs(onnx_model) == [("X", "tensor(double)", [None, 5])]
    assert onnx_model.features == tuple(NUMERIC)
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(converted.data).graph.node}
    assert "FeatureVectorizer" not in ops
    rows = customers(500, seed=7)[NUMERIC]
    want = model.predict_proba(rows)[:, 1]
    got = onnx_model.run({c: rows[c].to_numpy() for c in NUMERIC})[-1][:, 1]
    assert np.abs(got - want).max() <= 1e-6


def test_an_unconvertible_model_raises_its_own_error_saying_what_to_change() -> None:
    model = fit(make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()), 300)
    assert isinstance(model, Pipeline)
    spec = describe(LoadedModel("sklearn", model, None), OutputRequest(), "m")
    with pytest.raises(OnnxConversionError) as refused:
        convert(model, spec, {})
    message = str(refused.value)
    assert "Pipeline(FunctionTransformer, LogisticRegression)" in message
    assert "float64, float32: FunctionTransformer is not supported" in message
    assert "skl2onnx supports" in message and "sklearn runtime" in message
    assert refused.value.exit_code == 10  # the export refused, like the parity gate; not 3


def test_mixed_string_features_keep_one_input_per_column() -> None:
    """Categorical strings cannot share a numeric tensor: the demo-style pipeline keeps its
    named [N, 1] inputs (its ColumnTransformer selects them by name)."""
    from batch_serving.demo import pipeline

    frame = labelled(600, seed=3)
    model = pipeline("hgb").fit(frame[list(sample_data.FEATURES)], frame["churned"])
    types = {c: "string" for c in sample_data.CATEGORICAL}
    spec = describe(LoadedModel("sklearn", model, None), OutputRequest(), "m")
    converted = convert(model, spec, types, "float64")
    names = [n for n, _, _ in graph_inputs(converted.model())]
    assert names == list(sample_data.FEATURES)
    rows = pd.DataFrame(customers(300, seed=2))[list(sample_data.FEATURES)]
    got = converted.model().run({c: rows[c].to_numpy() for c in rows.columns})[-1][:, 1]
    assert np.abs(got - model.predict_proba(rows)[:, 1]).max() <= 1e-6
