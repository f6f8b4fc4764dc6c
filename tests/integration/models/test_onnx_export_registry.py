"""export-onnx registers into the job's registry, never MLflow's process default, and a failed
export leaves nothing behind (issue #31.4).

The session's ``tracking_uri`` fixture sets MLflow's global URI (and MLFLOW_TRACKING_URI) for
the whole test process, which is what hid the bug: the command runs here as a subprocess
with no MLFLOW_* variable, in an empty working directory, as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from conftest import RUN_DATE, customers, labelled
from mlflow import MlflowClient
from mlflow.entities import ViewType

from batch_serving.config import JobConfig
from batch_serving.demo import register_pipeline
from batch_serving.runs.export_onnx import export_onnx, source_model


@pytest.fixture
def source(tracking_uri: str, tmp_path: Path) -> str:
    """A registered demo LogReg pipeline (name unique per test), aliased champion."""
    name = f"export_reg_{tmp_path.name[-12:].replace('-', '_')}"
    version = register_pipeline(tracking_uri, name, labelled(1500, seed=8), "logreg")
    MlflowClient(tracking_uri).set_registered_model_alias(name, "champion", str(version))
    return name


@pytest.fixture
def job_file(
    source: str, warehouse: Callable[..., Path], job_config: Callable[..., JobConfig]
) -> Path:
    """The job's config file (its model.tracking_uri is the test registry) and its input."""
    root = warehouse(customers(800, seed=5))
    path = root.parent.parent / "job.json"
    path.write_text(json.dumps(job_config(source).model_dump(mode="json")))
    return path


def export_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``batch-serving export-onnx`` in a fresh process without any MLFLOW_* variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "batch_serving.cli", "export-onnx", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def export_runs(tracking_uri: str, source_name: str, view: int = ViewType.ACTIVE_ONLY) -> list:
    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, run_view_type=view, max_results=1000)
    return [r for r in runs if r.info.run_name == f"export-onnx-{source_name}-v1"]


def test_cli_registers_into_the_jobs_registry_and_leaves_no_file(
    source: str, job_file: Path, tracking_uri: str, tmp_path: Path
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = ["--model", f"models:/{source}@champion", "--config", str(job_file)]
    done = export_cli([*args, "--run-date", str(RUN_DATE), "--json"], cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout)
    assert record["registered"] == f"models:/{source}_onnx/1" and record["alias"] == "champion"

    mv = MlflowClient(tracking_uri).get_model_version_by_alias(f"{source}_onnx", "champion")
    assert str(mv.version) == "1" and mv.tags["source_model"] == source
    assert mv.tags["parity_rows"] == "800"
    (run,) = export_runs(tracking_uri, source)
    assert mv.run_id == run.info.run_id
    assert sorted(p.name for p in cwd.iterdir()) == []  # no ./mlflow.db, no ./mlruns


def test_cli_refused_by_the_gate_leaves_no_model_run_or_file(
    source: str, job_file: Path, tracking_uri: str, tmp_path: Path
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = ["--model", f"models:/{source}@champion", "--config", str(job_file)]
    # float32 probabilities differ by ~1e-7: a tolerance of 1e-12 refuses them
    done = export_cli([*args, "--run-date", str(RUN_DATE), "--tolerance", "1e-12"], cwd)
    assert done.returncode == 10, done.stderr[-2000:]
    assert "nothing registered" in done.stderr
    client = MlflowClient(tracking_uri)
    assert not client.search_registered_models(f"name = '{source}_onnx'")
    assert export_runs(tracking_uri, source, ViewType.ALL) == []
    assert sorted(p.name for p in cwd.iterdir()) == []


def test_a_registration_failing_midway_is_undone(
    source: str,
    job_file: Path,
    tracking_uri: str,
    job_config: Callable[..., JobConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The alias (the last step) fails: the version, the new registered model, the logged
    model and the run are removed; the process-global tracking URI is as it was."""
    cfg = job_config(source)
    before = mlflow.get_tracking_uri()

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("alias store down")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", refuse)
    partition = job_file.parent / "warehouse" / "features" / f"ds={RUN_DATE}"
    with pytest.raises(RuntimeError, match="alias store down"):
        model = source_model(f"models:/{source}@champion", tracking_uri, cfg)
        export_onnx(model, partition, cfg=cfg)
    monkeypatch.undo()

    client = MlflowClient(tracking_uri)
    assert not client.search_registered_models(f"name = '{source}_onnx'")
    assert export_runs(tracking_uri, source) == []
    (deleted,) = export_runs(tracking_uri, source, ViewType.DELETED_ONLY)
    assert deleted.info.lifecycle_stage == "deleted"
    logged = client.search_logged_models(
        [deleted.info.experiment_id], filter_string=f"source_run_id = '{deleted.info.run_id}'"
    )
    assert logged == []
    assert mlflow.get_tracking_uri() == before
