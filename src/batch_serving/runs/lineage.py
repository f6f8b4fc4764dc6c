"""Lineage of a run in MLflow: the input partition it read and the model versions it used.

* Input: a dataset input on the run, ``source`` = the partition's URI and a ``digest`` of the
  data files' names, sizes and modification times: it changes when the partition is rewritten,
  without reading a row.
* Models: each model version the run scored with is a *model input* of the run (MLflow 3's
  ``LoggedModelInput``, by the version's ``model_id``), so the logged model lists the run, and
  the version carries a ``batch_serving.scored_by.<job>`` tag naming the job's latest run
  (visible on the version's page). Tags on the run name every ``name/version`` used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from batch_serving.storage.files import data_files, is_local, local_path
from batch_serving.tables.manifest import RunManifest

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

DATASET_CONTEXT = "scoring"  # the mlflow.data.context tag of the input


@dataclass(frozen=True)
class UsedModel:
    key: str  # member key ("champion" for a single model)
    name: str
    version: int


def input_digest(partition: str) -> str:
    """sha256 (16 hex) of the data files' relative names, sizes and mtimes; no data read.

    A partition that is not on a local path is identified by its URI alone."""
    h = hashlib.sha256()
    if is_local(partition):
        root = local_path(partition)
        for found in data_files(root):
            f = found.local_path("the input digest")  # a local partition lists local files
            stat = f.stat()
            h.update(f"{f.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    else:
        h.update(partition.encode())
    return h.hexdigest()[:16]


def source_uri(partition: str) -> tuple[str, str]:
    """(source type, URI) of a partition path: ``local`` + ``file://...`` or the scheme."""
    if is_local(partition):
        return "local", local_path(partition).resolve().as_uri()
    return urlparse(partition).scheme or "path", partition


def used_models(manifest: RunManifest) -> list[UsedModel]:
    """Every model version the run scored with (members, or the single model)."""
    if manifest.members:
        return [UsedModel(m.key, m.name, int(m.version)) for m in manifest.members]
    model = manifest.model
    return [UsedModel("champion", model.name, int(model.version))]


def logged_model_id(model_id: str | None, source: str | None) -> str | None:
    """The version's logged model: its ``model_id``, or the ``models:/m-...`` of its source
    (versions registered by ``log_model(registered_model_name=...)`` leave model_id empty)."""
    if model_id:
        return model_id
    if source and source.startswith("models:/m-"):
        return source.removeprefix("models:/").split("/", 1)[0]
    return None


def log_lineage(
    client: MlflowClient, run_id: str, manifest: RunManifest, dataset_name: str, job: str
) -> None:
    """The run's dataset input and model inputs, and the versions' ``scored_by`` tags."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelInput

    source_type, uri = source_uri(manifest.input.path)
    dataset = Dataset(
        name=dataset_name,
        digest=input_digest(manifest.input.path),
        source_type=source_type,
        source=json.dumps({"uri": uri}),
        profile=json.dumps({"num_rows": manifest.input.rows}),
    )
    models: list[LoggedModelInput] = []
    for used in used_models(manifest):
        version = client.get_model_version(used.name, str(used.version))
        model_id = logged_model_id(version.model_id, version.source)
        if model_id:
            models.append(LoggedModelInput(model_id))
        else:  # registered from a run's artifacts without a logged model (MLflow 2 style)
            log.info("model %s v%s has no logged model id", used.name, used.version)
        client.set_model_version_tag(
            used.name, str(used.version), f"batch_serving.scored_by.{job}", run_id
        )
    client.log_inputs(
        run_id,
        datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", DATASET_CONTEXT)])],
        models=list({m.model_id: m for m in models}.values()),  # a version used twice
    )


def run_artifacts(partition: Path, extra: Sequence[Path]) -> list[Path]:
    """The manifest and gate reports of the committed partition, then the extra files given."""
    own = [partition / name for name in ("_manifest.json", "_validation.json", "_validation.html")]
    return [p for p in [*own, *extra] if p.is_file()]
