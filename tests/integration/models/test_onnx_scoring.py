"""The ONNX runtime in the batch engines and embedded in-process.

One exported model (the demo HGB pipeline, float64 ONNX) serves every test here: Spark batch
scores equal in-process onnxruntime to 1e-12 and the sklearn oracle within the gate's 1e-6.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import RUN_DATE, customers, labelled
from mlflow import MlflowClient
from pyspark.sql import SparkSession

from batch_serving import sample_data
from batch_serving.config import JobConfig
from batch_serving.demo import register_pipeline
from batch_serving.embedded import load
from batch_serving.errors import InputValidationError
from batch_serving.models import cache as model_cache
from batch_serving.models.adapters.onnx import OnnxModel
from batch_serving.runs.export_onnx import export_onnx, source_model
from batch_serving.tables.layout import predictions_layout

_names = itertools.count()


@dataclass(frozen=True)
class Exported:
    name: str  # the sklearn source; the ONNX model is f"{name}_onnx"
    tracking_uri: str
    sklearn: object


@pytest.fixture(scope="module")
def exported(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    import mlflow.sklearn

    name = f"onnxsrc{next(_names)}"
    version = register_pipeline(tracking_uri, name, labelled(3000, seed=8), "hgb")
    MlflowClient(tracking_uri).set_registered_model_alias(name, "champion", str(version))
    root = tmp_path_factory.mktemp("export")
    sample_data.write_partition(root, RUN_DATE, customers(1500, seed=6), files=1)
    model = source_model(f"models:/{name}@champion", tracking_uri, None)
    done = export_onnx(model, root / f"ds={RUN_DATE}")
    assert done.registered is not None and done.report.onnx_dtype == "float64"
    source = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    return Exported(name, tracking_uri, source)


@pytest.mark.slow
def test_spark_batch_with_onnx_equals_in_process_and_sklearn(
    spark: SparkSession,
    exported: Exported,
    warehouse: Callable[..., Path],
    job_config: Callable[..., JobConfig],
) -> None:
    from batch_serving.runs.job import run_score

    rows = customers(900, seed=44)
    warehouse(rows)
    cfg = job_config(f"{exported.name}_onnx", model={"positive_label": 1})
    result = run_score(spark, cfg, RUN_DATE)
    assert result.manifest.output.rows == 900
    part = predictions_layout(cfg.output.root, cfg.model.name).partition_dir(RUN_DATE)
    got = pq.read_table(part).to_pandas().set_index("customer_id").sort_index()
    assert set(got["model_name"]) == {f"{exported.name}_onnx"}

    embedded = load(f"models:/{exported.name}_onnx@champion", tracking_uri=exported.tracking_uri)
    ordered = rows.set_index("customer_id").sort_index()
    in_process = embedded.predict(ordered.reset_index())
    np.testing.assert_allclose(got["score"].to_numpy(), in_process, rtol=0, atol=1e-12)
    oracle = exported.sklearn.predict_proba(ordered[list(sample_data.FEATURES)])[:, 1]  # type: ignore[attr-defined]
    np.testing.assert_allclose(got["score"].to_numpy(), oracle, rtol=0, atol=1e-6)
    assert np.abs(got["score"].to_numpy() - oracle).max() > 0  # float32 outputs: not the same code


def test_embedded_accepts_dicts_frames_and_arrow(exported: Exported, tmp_path: Path) -> None:
    import pyarrow as pa

    uri = f"models:/{exported.name}_onnx@champion"
    model = load(uri, tracking_uri=exported.tracking_uri)
    assert model.spec.runtime == "onnx" and model.classes == ("0", "1")
    frame = customers(50, seed=2)
    records = frame.to_dict("records")
    by_frame = model.predict(frame)
    np.testing.assert_array_equal(model.predict(records), by_frame)
    np.testing.assert_array_equal(model.predict(pa.Table.from_pandas(frame)), by_frame)
    np.testing.assert_array_equal(model.predict(records[7]), by_frame[7:8])
    oracle = exported.sklearn.predict_proba(frame[list(sample_data.FEATURES)])[:, 1]  # type: ignore[attr-defined]
    np.testing.assert_allclose(by_frame, oracle, atol=1e-6)

    # a bare .onnx file works too (no registry), and the sklearn source through the same API
    onnx_file = tmp_path / "churn.onnx"
    onnx_file.write_bytes(model.model.data)
    bare = load(onnx_file, positive_label=1)
    np.testing.assert_array_equal(bare.predict(frame), by_frame)
    source = load(f"models:/{exported.name}@champion", tracking_uri=exported.tracking_uri)
    assert source.spec.runtime == "sklearn"
    np.testing.assert_allclose(source.predict(records), oracle, atol=1e-15)

    with pytest.raises(InputValidationError, match="no feature 'contract'"):
        model.predict({k: v for k, v in records[0].items() if k != "contract"})


def test_onnx_model_pickles_without_its_session(exported: Exported) -> None:
    import cloudpickle

    model = load(f"models:/{exported.name}_onnx@champion", tracking_uri=exported.tracking_uri)
    onnx_model = model.model
    assert isinstance(onnx_model, OnnxModel)
    payload = cloudpickle.dumps(onnx_model)
    assert len(payload) < len(onnx_model.data) + 1000  # bytes only, no session state
    clone = cloudpickle.loads(payload)
    options = clone.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    model_cache.clear()
