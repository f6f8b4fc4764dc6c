"""Lineage in MLflow: a run records its input partition (source + digest), the model versions
it used (model inputs and version tags), the manifest, gate reports and extra artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import builders
import pytest
from conftest import RUN_DATE, customers, labelled
from mlflow import MlflowClient

from batch_serving.runs.job import run_score
from batch_serving.runs.lineage import input_digest
from batch_serving.runs.mlflow_record import log_run


@pytest.fixture
def scored_run(spark, register, warehouse, job_config):  # type: ignore[no-untyped-def]
    rows = customers(300)
    champion, _ = builders.logreg_pipeline(labelled(400))
    challenger, _ = builders.logreg_pipeline(labelled(400, seed=9))
    name, v1 = register(champion, rows[builders.FEATURES])
    _, v2 = register(challenger, rows[builders.FEATURES], name=name, alias="challenger")
    warehouse(rows)
    cfg = job_config(
        name,
        members={"challenger": {"name": name, "alias": "challenger", "role": "shadow"}},
        tracking={"log_runs": True, "experiment": "lineage-{job}"},
        validation={"input_expectations": [{"type": "not_null", "column": "customer_id"}]},
    )
    result = run_score(spark, cfg, RUN_DATE)
    assert result.after.mlflow_run_id
    return cfg, result, name, (v1, v2)


def artifact_names(client: MlflowClient, run_id: str) -> set[str]:
    return {Path(f.path).name for f in client.list_artifacts(run_id, "batch_serving")}


def test_run_logs_input_models_and_artifacts(scored_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg, result, name, versions = scored_run
    client = MlflowClient(tracking_uri=cfg.model.tracking_uri)
    run = client.get_run(result.after.mlflow_run_id)

    # the input partition: its URI and a digest of file names/sizes/mtimes
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    partition = Path(result.manifest.input.path)
    assert json.loads(dataset.source) == {"uri": partition.resolve().as_uri()}
    assert dataset.source_type == "local" and dataset.name == "features"
    assert dataset.digest == input_digest(str(partition)) and len(dataset.digest) == 16
    assert json.loads(dataset.profile) == {"num_rows": 300}
    assert {(t.key, t.value) for t in dataset_input.tags} == {("mlflow.data.context", "scoring")}

    # both model versions: model inputs of the run, and the run named on each version
    inputs = {m.model_id: client.get_logged_model(m.model_id) for m in run.inputs.model_inputs}
    source_runs = {logged.source_run_id for logged in inputs.values()}
    assert len(inputs) == 2
    for version in versions:
        mv = client.get_model_version(name, str(version))
        assert mv.run_id in source_runs  # the logged model this version was registered from
        assert mv.tags[f"batch_serving.scored_by.{cfg.job}"] == run.info.run_id

    # manifest and gate reports as artifacts; the manifest is the committed one
    assert artifact_names(client, run.info.run_id) == {
        "_manifest.json",
        "_validation.json",
        "_validation.html",
    }
    local = client.download_artifacts(run.info.run_id, "batch_serving/_manifest.json", tmp_path)
    assert json.loads(Path(local).read_text())["run_id"] == result.manifest.run_id
    assert run.data.metrics["gate_input_success"] == 1.0
    assert run.data.metrics["gate_input_checked"] == 1.0


def test_extra_artifacts_and_a_changed_input_digest(scored_run, tmp_path, warehouse) -> None:  # type: ignore[no-untyped-def]
    cfg, result, _, _ = scored_run
    client = MlflowClient(tracking_uri=cfg.model.tracking_uri)
    profile = tmp_path / "drift_profile.json"
    profile.write_text('{"score": {"psi": 0.01}}')
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    before = input_digest(result.manifest.input.path)

    run_id = log_run(cfg, result.manifest, result.committed.path, artifacts=[profile, report])

    assert run_id is not None
    assert {"drift_profile.json", "report.html", "_manifest.json"} <= artifact_names(client, run_id)
    warehouse(customers(310))  # the partition is rewritten: another digest, no data read
    assert input_digest(result.manifest.input.path) != before
