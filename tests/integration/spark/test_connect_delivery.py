"""The Connect delivery's shipped artifact, without Spark: one zip per model's files, named by
their digest (the workers' cache key), that loads back into the same model."""

from __future__ import annotations

import zipfile
from pathlib import Path

import builders
import numpy as np
import pytest
from conftest import customers, labelled

from batch_serving.config import ModelConfig
from batch_serving.errors import ModelLoadError
from batch_serving.models.artifacts import load_model_dir
from batch_serving.models.registry import resolve_model
from batch_serving.spark import delivery


def test_zip_is_named_by_the_model_files_and_loads_the_same_model(
    register, tracking_uri, tmp_path: Path
) -> None:
    model, oracle = builders.logreg_pipeline(labelled(300))
    other, _ = builders.logreg_pipeline(labelled(300, seed=9))
    rows = customers(50)
    name, _ = register(model, rows[builders.FEATURES])
    other_name, _ = register(other, rows[builders.FEATURES])
    ref = resolve_model(ModelConfig(name=name, alias="champion", tracking_uri=tracking_uri))
    other_ref = resolve_model(
        ModelConfig(name=other_name, alias="champion", tracking_uri=tracking_uri)
    )

    first, second = delivery._zip_model(ref), delivery._zip_model(ref)
    different = delivery._zip_model(other_ref)

    assert first[1] == second[1] != different[1]
    assert first[1].startswith("bs-model-") and first[1].endswith(".zip")
    with zipfile.ZipFile(first[0]) as archive:
        assert "MLmodel" in archive.namelist()
        archive.extractall(tmp_path / "model")
    loaded = load_model_dir(tmp_path / "model", ref.uri).obj
    got = loaded.predict_proba(rows[builders.FEATURES])[:, 1]
    assert np.max(np.abs(got - oracle(rows)["score"])) <= 1e-12


def test_a_missing_shipped_file_names_it(monkeypatch, tmp_path: Path) -> None:
    from pyspark import SparkFiles

    monkeypatch.setattr(SparkFiles, "get", lambda name: str(tmp_path / name))
    with pytest.raises(ModelLoadError, match=r"bs-model-abc\.zip not found"):
        delivery.load_shipped("bs-model-abc.zip", "models:/m/1")
