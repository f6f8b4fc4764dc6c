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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch_serving.config import JobConfig, ModelConfig
from batch_serving.errors import ConfigError, InputValidationError, ParityGateError
from batch_serving.models.adapters import OutputRequest
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
from batch_serving.models.uris import model_config
from batch_serving.scoring.casts import apply_casts, plan_casts
from batch_serving.tables.files import data_files

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


def parse_model_uri(uri: str, tracking_uri: str, cfg: JobConfig | None) -> ModelConfig:
    """``models:/name@alias`` or ``models:/name/N``; the job's positive label if same model."""
    same = cfg is not None and model_config(uri, tracking_uri).name == cfg.model.name
    if not same or cfg is None:
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
        if loaded.runtime != "sklearn":
            raise ConfigError(
                f"{ref.uri} is a {loaded.runtime} model; export-onnx converts sklearn"
            )
        if spec.kind == "multiclass":
            raise ConfigError(
                f"{ref.uri} is a multi-class model: export-onnx gates one score per row "
                "(binary classifiers and regressors)"
            )
        entity = [c for c in (cfg.entity_columns if cfg else []) if c]
        batch = read_partition(partition, entity, spec.features, max_rows)
        casts = plan_casts(
            batch.schema,
            entity,
            list(spec.features),
            dict(spec.input_types),
            spec.feed == "numpy",
            str(partition),
        )
        batch = apply_casts(batch, casts)
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
    import mlflow
    import mlflow.onnx
    import onnx
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    signature = Model.load(str(model_dir / "MLmodel")).signature
    client = MlflowClient(tracking_uri=ref.tracking_uri, registry_uri=ref.registry_uri)
    experiment_id = client.get_run(ref.run_id).info.experiment_id if ref.run_id else None
    name = ref.name + SUFFIX
    tags = {
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
    # Registered through the client: mlflow.set_registry_uri would change the registry of every
    # later fluent call in this process (and of its subprocesses, through the environment).
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(ref.tracking_uri)
    try:
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"export-onnx-{ref.name}-v{ref.version}"
        ) as run:
            mlflow.set_tags(tags)
            info = mlflow.onnx.log_model(
                onnx.load_from_string(data),
                name="model",
                signature=signature,
                save_as_external_data=False,
                # pinned: mlflow's requirement inference spawns a process importing the model
                pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={_ort_version()}"],
            )
    finally:
        mlflow.set_tracking_uri(previous)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    created = client.create_model_version(
        name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id
    )
    version = str(created.version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    alias = model.alias
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    log.info(
        "registered %s version %s (parity max |diff| %.3g)", name, version, report.max_abs_diff
    )
    return f"models:/{name}/{version}", alias


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
