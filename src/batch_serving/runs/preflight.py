"""Pre- and post-flight checks that orchestrators run as their own tasks (no Spark needed).

``check_input`` fails fast, before a Spark job is even submitted, on what would fail the run
anyway: a missing or unreadable partition, an unreachable registry or unknown alias, columns
the model needs that the input lacks, an empty partition. (Value-level gates, the Great
Expectations suites, run inside the score job on the data it actually scores.)
``check_output`` confirms that the date's predictions partition is committed, reconciled and
passed its gates: exactly what ``publish`` requires.
"""

from __future__ import annotations

import datetime as dt

from batch_serving.config import JobConfig
from batch_serving.errors import MissingColumnsError
from batch_serving.models.adapters import build_spec
from batch_serving.models.artifacts import fetch_and_load
from batch_serving.models.registry import resolve_model
from batch_serving.quality.checks import check_not_empty
from batch_serving.serving.publish import check_publishable
from batch_serving.spark.engines.arrow_direct import inspect_input
from batch_serving.spark.reader import missing_partition, partition_exists, partition_path
from batch_serving.tables import commit as storage


def check_input(cfg: JobConfig, run_date: dt.date) -> list[str]:
    if not partition_exists(cfg.input, run_date):
        raise missing_partition(cfg.input, run_date)
    where = partition_path(cfg.input, run_date)
    ref = resolve_model(cfg.model)
    loaded = fetch_and_load(ref, cfg.model.skops_trusted_types)
    features = None if cfg.features == "from_signature" else cfg.features
    spec = build_spec(loaded, features, cfg.model.positive_label, cfg.output.score_column, ref.uri)
    found = inspect_input(where)
    needed = [*cfg.entity_columns, *spec.features]
    missing = [c for c in needed if c not in found.schema.names]
    if missing:
        raise MissingColumnsError(missing, found.schema.names, where)
    check_not_empty(found.rows, cfg.validation.allow_empty, where)
    return [
        f"input ok: {where}",
        f"  rows     : {found.rows} in {len(found.files)} files",
        f"  model    : {cfg.model.selector} -> {ref.uri} ({spec.kind}, {len(spec.features)} "
        "features, all present)",
    ]


def check_output(cfg: JobConfig, run_date: dt.date) -> list[str]:
    path = storage.predictions_layout(cfg.output.root, cfg.model.name).partition_dir(run_date)
    manifest = check_publishable(path)
    gates = ", ".join(f"{k} passed" for k in manifest.get("validation", {})) or "no gates"
    return [
        f"output ok: {path}",
        f"  rows     : {manifest['output']['rows']} (input {manifest['input']['rows']}, "
        f"quarantined {manifest['quarantine']['rows']}); {gates}",
        f"  run      : {manifest['run_id']}, model v{manifest['model']['version']}",
    ]
