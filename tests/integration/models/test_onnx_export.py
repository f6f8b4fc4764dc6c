"""export-onnx: conversion of the demo models and a tree ensemble behind the parity gate.

The gate's numbers are asserted (not only "passed"), a float32 export of a Scaler+RandomForest
that flips decisions is refused with exit 10 and leaves the registry without ``<name>_onnx``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import RUN_DATE, customers, labelled
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from batch_serving import sample_data
from batch_serving.cli import main
from batch_serving.config import JobConfig
from batch_serving.demo import register_pipeline
from batch_serving.models.adapters.onnx import OnnxModel
from batch_serving.runs.export_onnx import export_onnx, source_model

TREE_TRUSTED = ["sklearn.tree._tree.Tree"]
RULES = [
    {"when": "score >= 0.7", "action": "call"},
    {"when": "score > 0.4", "action": "offer"},
    {"otherwise": "none"},
]


def scaled_forest() -> Pipeline:
    cat, num = list(sample_data.CATEGORICAL), list(sample_data.NUMERIC)
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), cat), ("num", StandardScaler(), num)]
    )
    model = Pipeline(
        [("pre", pre), ("clf", RandomForestClassifier(40, max_depth=8, random_state=0))]
    )
    frame = labelled(4000, seed=21)
    return model.fit(frame[list(sample_data.FEATURES)], frame["churned"])


@pytest.fixture
def partition(warehouse: Callable[..., Path]) -> Path:
    root = warehouse(customers(3000, seed=5))
    return root / f"ds={RUN_DATE}"


@pytest.mark.parametrize("estimator", ["hgb", "logreg"])
def test_demo_models_pass_the_gate_and_register(
    estimator: str,
    tracking_uri: str,
    partition: Path,
    job_config: Callable[..., JobConfig],
) -> None:
    name = f"demo_{estimator}_{id(partition) % 10_000}"
    version = register_pipeline(tracking_uri, name, labelled(3000, seed=8), estimator)
    MlflowClient(tracking_uri).set_registered_model_alias(name, "champion", str(version))
    cfg = job_config(name, rules=RULES, model={"positive_label": 1})
    done = export_onnx(
        source_model(f"models:/{name}@champion", tracking_uri, cfg), partition, cfg=cfg
    )
    report = done.report
    assert report.passed and report.rows == 3000
    # onnxruntime outputs float32 probabilities: ~1e-7 is the floor; no threshold flips
    assert report.max_abs_diff < 1e-6
    assert report.onnx_dtype == ("float64" if estimator == "hgb" else "float32")
    assert report.thresholds == ["score >= 0.5", "score >= 0.7", "score > 0.4"]
    assert all(f.rows == 0 for f in report.flips)
    assert len(report.worst_rows) == 5 and {"id", "source", "onnx", "diff"} <= set(
        report.worst_rows[0]
    )
    assert report.worst_rows[0]["diff"] == pytest.approx(report.max_abs_diff)

    client = MlflowClient(tracking_uri)
    mv = client.get_model_version_by_alias(f"{name}_onnx", "champion")
    assert done.registered == f"models:/{name}_onnx/{mv.version}"
    assert mv.tags["source_model"] == name and mv.tags["source_version"] == str(version)
    assert float(mv.tags["parity_max_abs_diff"]) == pytest.approx(report.max_abs_diff, rel=1e-5)
    assert mv.tags["parity_flips"] == "0"


@pytest.mark.slow
def test_tree_ensemble_float64_passes_float32_flips_and_is_refused(
    register: Callable[..., tuple[str, int]],
    tracking_uri: str,
    partition: Path,
    job_config: Callable[..., JobConfig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = scaled_forest()
    sample = customers(200)[list(sample_data.FEATURES)]
    name, _ = register(model, sample, trusted=TREE_TRUSTED)
    cfg = job_config(name, rules=RULES)
    ok = export_onnx(
        source_model(f"models:/{name}@champion", tracking_uri, cfg),
        partition,
        cfg=cfg,
        register=False,
    )
    assert ok.report.passed and ok.report.onnx_dtype == "float64"
    assert ok.report.max_abs_diff < 1e-6

    # float32: |diff| well above float32 rounding, but the tolerance alone is waived (1.0):
    # put a rule's threshold between the two scores of the worst row -> refused for the flip
    loose = export_onnx(
        source_model(f"models:/{name}@champion", tracking_uri, cfg),
        partition,
        cfg=cfg,
        dtype="float32",
        tolerance=1.0,
        register=False,
    )
    assert loose.report.passed and loose.report.max_abs_diff > 1e-3  # sklearn-onnx#1192
    worst = loose.report.worst_rows[0]
    cut = round((worst["source"] + worst["onnx"]) / 2, 12)
    rules = [{"when": f"score >= {cut!r}", "action": "call"}, {"otherwise": "none"}]
    config = partition.parent.parent / "job.json"
    config.write_text(json.dumps(job_config(name, rules=rules).model_dump(mode="json")))
    argv = ["export-onnx", "--model", f"models:/{name}@champion", "--config", str(config)]
    code = main(
        [*argv, "--input", str(partition), "--dtype", "float32", "--tolerance", "1", "--json"]
    )
    assert code == 10
    report = json.loads(capsys.readouterr().out)["parity"]
    assert not report["passed"] and report["max_abs_diff"] < 1.0
    (flip,) = [f for f in report["flips"] if f["rows"]]
    assert flip["threshold"] == f"score >= {cut:g}"
    assert worst["id"] in [e["id"] for e in flip["examples"]] or flip["rows"] > 5
    names = [m.name for m in MlflowClient(tracking_uri).search_registered_models()]
    assert f"{name}_onnx" not in names


@pytest.mark.slow
def test_cli_text_report_and_registered_model_loads(
    tracking_uri: str,
    partition: Path,
    job_config: Callable[..., JobConfig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "demo_cli_logreg"
    version = register_pipeline(tracking_uri, name, labelled(2000, seed=9), "logreg")
    MlflowClient(tracking_uri).set_registered_model_alias(name, "champion", str(version))
    argv = ["export-onnx", "--model", f"models:/{name}/{version}", "--tracking-uri", tracking_uri]
    assert main([*argv, "--input", str(partition)]) == 0
    out = capsys.readouterr().out
    assert "parity gate  : PASSED" in out and "rows compared: 3000" in out
    assert f"registered   : models:/{name}_onnx/1" in out
    from batch_serving.models.artifacts import load_model_dir
    from batch_serving.models.registry import resolve_model

    ref = resolve_model(source_model(f"models:/{name}_onnx/1", tracking_uri, None))
    import tempfile

    from batch_serving.models.artifacts import download_model

    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_model_dir(download_model(ref, tmp), ref.uri)
    assert loaded.runtime == "onnx" and isinstance(loaded.obj, OnnxModel)
    assert loaded.inputs is not None and "contract" in loaded.inputs.names


def test_models_fit_on_a_matrix_convert_to_one_float64_input() -> None:
    """Bare estimators fit on numpy: one [N, k] input in the spec's feature order; float64
    keeps LogReg exact and HGB at float32-output precision (its tree outputs are float32)."""
    import pyarrow as pa
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from batch_serving.models.adapters import OutputRequest, describe
    from batch_serving.models.adapters.base import LoadedModel
    from batch_serving.models.onnx_convert import convert
    from batch_serving.models.parity import scores

    names = [f"f{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 6))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int)
    batch = pa.RecordBatch.from_arrays([pa.array(x[:, i]) for i in range(6)], names=names)
    request = OutputRequest(features=tuple(names))
    for model, limit in ((LogisticRegression(), 1e-15), (HistGradientBoostingClassifier(), 1e-6)):
        model.fit(x, y)
        spec = describe(LoadedModel("sklearn", model, None), request, "m")
        converted = convert(model, spec, {})
        assert converted.dtype == "float64"
        onnx_model = converted.model()
        onnx_spec = describe(LoadedModel("onnx", onnx_model, None), request, "m")
        assert onnx_spec.features == tuple(names) and onnx_spec.positive_label == "1"
        got = scores(onnx_spec, onnx_model, batch)
        assert np.abs(got - model.predict_proba(x)[:, 1]).max() <= limit


def test_a_multiclass_model_is_refused_by_name(
    register: Callable[..., tuple[str, int]],
    partition: Path,
    capsys: pytest.CaptureFixture[str],
    tracking_uri: str,
) -> None:
    import builders

    train = labelled(300)
    model, _ = builders.multiclass(train)
    name, version = register(model, train[builders.NUMERIC])
    uri = f"models:/{name}/{version}"
    argv = ["export-onnx", "--model", uri, "--tracking-uri", tracking_uri, "--input"]
    assert main([*argv, str(partition)]) == 2
    assert f"{uri} is a multi-class model" in capsys.readouterr().err
    assert not MlflowClient(tracking_uri).search_registered_models(f"name = '{name}_onnx'")
