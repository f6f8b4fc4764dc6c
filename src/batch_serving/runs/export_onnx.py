"""``export-onnx``: convert a registered sklearn model, gate it on a real partition, register.

Steps: resolve the source version once -> load it -> read the partition -> score it with the
source -> convert (float64 first) -> score it with onnxruntime -> parity report -> register
``<name>_onnx`` only if the gate passed.

Registration choice: a NEW registered model ``<name>_onnx`` (not an artifact of the source
run), so a job switches runtime by changing ``model.name`` and nothing else, and the registry
keeps the two histories apart. The version is logged in the source version's run and
experiment, its tags link the source (``source_model``, ``source_version``, ``source_uri``)
and record the gate's numbers (``parity_*``); when the source was resolved by alias the same
alias is set on the new version (``models:/churn_onnx@champion``).
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch_serving.config import JobConfig, ModelConfig
from batch_serving.errors import ConfigError, InputValidationError, ParityGateError
from batch_serving.models.adapters import ModelSpec, OutputRequest
from batch_serving.models.adapters.onnx import OnnxAdapter
from batch_serving.models.loading import load_and_describe
from batch_serving.models.onnx_convert import Dtype, column_types_of, convert
from batch_serving.models.parity import (
    DEFAULT_TOLERANCE,
    ParityReport,
    compare,
    scores,
    thresholds_from_rules,
)
from batch_serving.models.registry import resolve_model
from batch_serving.models.uris import model_config, parse_model_uri
from batch_serving.scoring.casts import apply_casts, plan_casts
from batch_serving.storage.files import data_files

log = logging.getLogger(__name__)

SUFFIX = "_onnx"


@dataclass(frozen=True)
class Exported:
    source: str
    report: ParityReport
    registered: str | None  # models:/<name>_onnx/<version>, None when the gate failed
    alias: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "registered": self.registered,
            "alias": self.alias,
            "parity": self.report.to_dict(),
        }

    def lines(self) -> list[str]:
        head = [f"source model : {self.source}"]
        if self.registered:
            tail = [
                f"registered   : {self.registered}" + (f" (@{self.alias})" if self.alias else "")
            ]
        else:
            tail = ["registered   : nothing (the parity gate failed)"]
        return head + self.report.lines() + tail


def source_model(uri: str, tracking_uri: str, cfg: JobConfig | None) -> ModelConfig:
    """The model to export: ``models:/name@alias`` or ``models:/name/N`` (parsed by
    ``models.uris``), with the job's registry, positive label and trusted types when it is
    the job's own model."""
    if cfg is None or parse_model_uri(uri).name != cfg.model.name:
        return model_config(uri, tracking_uri)
    return model_config(
        uri,
        tracking_uri,
        registry_uri=cfg.model.registry_uri,
        positive_label=cfg.model.positive_label,
        skops_trusted_types=cfg.model.skops_trusted_types,
    )


def export_onnx(
    model: ModelConfig,
    partition: Path,
    *,
    cfg: JobConfig | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    dtype: Dtype = "auto",
    max_rows: int | None = None,
    register: bool = True,
) -> Exported:
    """Convert, gate, register; raises ``ParityGateError`` (nothing registered) on failure."""
    ref = resolve_model(model)
    score_column = cfg.output.score_column if cfg else "score"
    request = OutputRequest(positive_label=model.positive_label, score_column=score_column)
    with tempfile.TemporaryDirectory(prefix="bs-export-") as tmp:
        spec, loaded, model_dir = load_and_describe(model, request, ref, tmp)
        _require_convertible(ref.uri, loaded.runtime, spec.kind)
        entity = [c for c in (cfg.entity_columns if cfg else []) if c]
        batch = _sample(partition, entity, spec, max_rows)
        expected = scores(spec, loaded.obj, batch)
        sample = [(f.name, str(f.type)) for f in batch.schema]
        converted = convert(loaded.obj, spec, column_types_of(spec, sample), dtype)
        onnx_model = converted.model()
        onnx_spec = OnnxAdapter().describe(onnx_model, loaded.inputs, request, ref.uri)
        actual = scores(onnx_spec, onnx_model, batch)
        ids = _ids(batch, entity)
        rules = _rules(cfg)
        report = compare(
            ids,
            expected,
            actual,
            thresholds_from_rules(rules, score_column),
            tolerance,
            converted.dtype,
            [f"float64 not possible ({converted.note})"] if converted.note else [],
        )
        if not report.passed:
            refused = ParityGateError(
                f"export-onnx refused {ref.uri}: {'; '.join(report.reasons())} "
                f"(over {report.rows} rows of {partition}); nothing registered"
            )
            refused.report = report
            raise refused
        if not register:
            return Exported(ref.uri, report, None)
        uri, alias = _register(ref, model, converted.data, model_dir, report, partition)
    return Exported(ref.uri, report, uri, alias)


def _require_convertible(uri: str, runtime: str, kind: str) -> None:
    """export-onnx converts sklearn models that give one score per row."""
    if runtime != "sklearn":
        raise ConfigError(f"{uri} is a {runtime} model; export-onnx converts sklearn")
    if kind == "multiclass":
        raise ConfigError(
            f"{uri} is a multi-class model: export-onnx gates one score per row "
            "(binary classifiers and regressors)"
        )


def _sample(
    partition: Path, entity: list[str], spec: ModelSpec, max_rows: int | None
) -> pa.RecordBatch:
    """The partition's rows the gate compares on, cast as a scoring run would cast them."""
    batch = read_partition(partition, entity, spec.features, max_rows)
    casts = plan_casts(
        batch.schema,
        entity,
        list(spec.features),
        dict(spec.input_types),
        spec.feed == "numpy",
        str(partition),
    )
    return apply_casts(batch, casts)


def read_partition(
    partition: Path, entity: list[str], features: tuple[str, ...], max_rows: int | None
) -> pa.RecordBatch:
    """The partition's entity and feature columns as one batch (first ``max_rows`` rows)."""
    files = data_files(partition)
    if not files:
        raise InputValidationError(f"no Parquet data files in {partition}")
    columns = list(dict.fromkeys([*entity, *features]))
    present = pq.read_schema(files[0]).names
    missing = [c for c in columns if c not in present]
    if missing:
        raise InputValidationError(f"missing columns {missing} in {partition}; present: {present}")
    table = pq.read_table([str(f) for f in files], columns=columns)
    if max_rows is not None:
        table = table.slice(0, max_rows)
    return table.combine_chunks().to_batches(max_chunksize=max(len(table), 1))[0]


def _ids(batch: pa.RecordBatch, entity: list[str]) -> list[Any]:
    if not entity:
        return list(range(batch.num_rows))
    if len(entity) == 1:
        return batch.column(entity[0]).to_pylist()
    parts = [batch.column(c).to_pylist() for c in entity]
    return ["|".join(str(v) for v in row) for row in zip(*parts, strict=True)]


def _rules(cfg: JobConfig | None) -> Any:
    if cfg is None or not cfg.rules:
        return None
    from batch_serving.scoring.rules import parse_rules

    return parse_rules(cfg.rules)


def _register(
    ref: Any,
    model: ModelConfig,
    data: bytes,
    model_dir: Path,
    report: ParityReport,
    partition: Path,
) -> tuple[str, str | None]:
    """Log the ONNX model in the source's experiment and register it, all in the job's
    tracking store and registry (never MLflow's process default); on any failure, undo."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=ref.tracking_uri, registry_uri=ref.registry_uri)
    made = _Made(client, ref.name + SUFFIX)
    tags = _tags(ref, report, partition)
    try:
        with _tracking_uri(ref.tracking_uri):
            made.run_id, made.model_id = _log(client, ref, data, model_dir, tags)
        version = made.register(client.get_logged_model(made.model_id).artifact_location)
        for key, value in tags.items():
            client.set_model_version_tag(made.name, version, key, value)
        if model.alias is not None:
            client.set_registered_model_alias(made.name, model.alias, version)
    except BaseException:
        made.undo()
        raise
    log.info(
        "registered %s version %s (parity max |diff| %.3g)", made.name, version, report.max_abs_diff
    )
    return f"models:/{made.name}/{version}", model.alias


def _tags(ref: Any, report: ParityReport, partition: Path) -> dict[str, str]:
    return {
        "source_model": ref.name,
        "source_version": str(ref.version),
        "source_uri": ref.uri,
        "onnx_input_dtype": report.onnx_dtype,
        "parity_rows": str(report.rows),
        "parity_max_abs_diff": f"{report.max_abs_diff:.6g}",
        "parity_tolerance": f"{report.tolerance:g}",
        "parity_flips": str(report.flipped),
        "parity_thresholds": ", ".join(report.thresholds),
        "parity_partition": str(partition),
        "parity_checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent logging (``mlflow.onnx.log_model`` has no client form) pointed at the
    job's store for the duration, then the previous global restored exactly (unset stays
    unset, MLFLOW_TRACKING_URI included): without this the model is logged into MLflow's
    default store (``./mlflow.db``) unless the environment happens to name the job's."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        yield


def _log(
    client: Any, ref: Any, data: bytes, model_dir: Path, tags: dict[str, str]
) -> tuple[str, str]:
    """(run id, logged model id) of the ONNX model logged in the source version's experiment."""
    import mlflow
    import mlflow.onnx
    import onnx
    from mlflow.models import Model

    signature = Model.load(str(model_dir / "MLmodel")).signature
    experiment_id = client.get_run(ref.run_id).info.experiment_id if ref.run_id else None
    run_name = f"export-onnx-{ref.name}-v{ref.version}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        try:
            mlflow.set_tags(tags)
            info = mlflow.onnx.log_model(
                onnx.load_from_string(data),
                name="model",
                signature=signature,
                save_as_external_data=False,
                # pinned: mlflow's requirement inference spawns a process importing the model
                pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={_ort_version()}"],
            )
        except BaseException:
            client.delete_run(run.info.run_id)  # the run is all there is to undo
            raise
    return run.info.run_id, str(info.model_id)


@dataclass
class _Made:
    """What one export created in the registry and tracking store, so a failure can undo it:
    a failed export leaves no run, logged model, registered model or version behind."""

    client: Any
    name: str
    run_id: str | None = None
    model_id: str | None = None
    version: str | None = None
    created_model: bool = False

    def register(self, source: str) -> str:
        """A new version of ``name`` (created if absent) from the logged model's files."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(self.name)
            self.created_model = True
        # the logged model's storage location, not its models:/m-... URI: MLflow resolves
        # that URI with a default MlflowClient(), i.e. in the process-global tracking store
        created = self.client.create_model_version(
            self.name, source, run_id=self.run_id, model_id=self.model_id
        )
        self.version = str(created.version)
        return self.version

    def undo(self) -> None:
        """Best effort, newest first; a failure here is logged, the export's error is raised."""
        c = self.client
        if self.created_model:
            self._try(f"registered model {self.name}", c.delete_registered_model, self.name)
        elif self.version is not None:
            what = f"{self.name} version {self.version}"
            self._try(what, c.delete_model_version, self.name, self.version)
        if self.model_id is not None:
            self._try(f"logged model {self.model_id}", c.delete_logged_model, self.model_id)
        if self.run_id is not None:
            self._try(f"run {self.run_id}", c.delete_run, self.run_id)

    @staticmethod
    def _try(what: str, step: Any, *args: str) -> None:
        try:
            step(*args)
        except Exception as exc:
            log.warning("export-onnx failed and could not remove %s: %s", what, exc)


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
