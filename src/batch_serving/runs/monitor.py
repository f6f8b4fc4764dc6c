"""Drift in the run: fix the bins before scoring, turn the tasks' counts into drift after.

``plan_monitoring`` runs on the driver between validation and scoring (references and bins);
the engine counts while it scores; ``finish_monitoring`` merges, compares with the reference,
checks the drift gates (warnings are logged; blocking is publish's job) and writes the profile
beside the staged manifest (``_profile.json``, the next run's reference) and in the run's
directory (``profile.json``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from batch_serving.monitoring.drift import ColumnDrift, compare
from batch_serving.monitoring.gates import GateOutcome, evaluate
from batch_serving.monitoring.profile import (
    PROFILE_NAME,
    Profile,
    ProfileObserver,
    ProfilePartial,
    ProfileSpec,
)
from batch_serving.monitoring.reference import (
    Monitored,
    build_spec,
    describe,
    model_profile,
    previous_profile,
    reference_profiles,
    source_of,
)
from batch_serving.runs.context import RunContext
from batch_serving.scoring.members import score_field
from batch_serving.scoring.plan import ScoringPlan
from batch_serving.spark.engines import Engine, InputData
from batch_serving.storage import local_only

log = logging.getLogger(__name__)

RUN_PROFILE = "profile.json"  # in the run's directory (_runs/.../<run_id>/), for MLflow


@dataclass(frozen=True)
class Monitoring:
    spec: ProfileSpec
    references: tuple[Profile, ...]

    def observer(self) -> ProfileObserver:
        """What the scoring tasks count for drift."""
        return ProfileObserver(self.spec)


@dataclass(frozen=True)
class Drift:
    profile: Profile
    columns: list[ColumnDrift]
    outcome: GateOutcome
    section: dict[str, Any]  # the manifest's ``drift``


def monitored_columns(plan: ScoringPlan, schema: pa.Schema) -> list[Monitored]:
    """The served score(s), each member's score (multi-model plans; the champion's only when an
    ensemble is served, otherwise it IS the served score), then every input feature."""
    served_binary = plan.served.spec.kind == "binary"
    binary_members = all(m.spec.kind == "binary" for m in plan.members)
    columns = [
        Monitored(
            f.name,
            "score",
            f.type,
            served_binary if plan.ensemble is None else binary_members,
        )
        for f in plan.served_fields
        if pa.types.is_floating(f.type)
    ]
    if plan.multi:
        for member in plan.members:
            if member is plan.served and plan.ensemble is None:
                continue
            name = score_field(member)
            if name is not None:
                probability = member.spec.kind == "binary"
                columns.append(
                    Monitored(f"{member.key}.{name}", "member_score", pa.float64(), probability)
                )
    entities = set(plan.entity_columns)
    for name in plan.input_columns:
        if name not in entities and name in schema.names and binnable(schema.field(name).type):
            columns.append(Monitored(name, "feature", schema.field(name).type))
    return columns


def binnable(dtype: pa.DataType) -> bool:
    """Numbers, booleans and strings; nested or temporal features are not profiled."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
    )


def plan_monitoring(
    spark: SparkSession, run: RunContext, engine: Engine, data: InputData, plan: ScoringPlan
) -> Monitoring:
    cfg = run.cfg.monitoring
    served = plan.served.ref

    def from_model() -> Profile | None:
        found = model_profile(run.cfg.model.tracking_uri, served.run_id)
        return source_of(found, {"kind": "model", "model_run_id": served.run_id}) if found else None

    def from_previous() -> Profile | None:
        return previous_profile(local_only(run.predictions.table_dir, "drift"), run.run_date)

    def sample(columns: list[str]) -> pa.Table:
        if data.files:
            with pq.ParquetFile(data.files[0]) as source:
                batches = source.iter_batches(cfg.sample_rows, columns=columns)
                return pa.Table.from_batches([next(batches)])
        frame = engine.frame(spark, data).select(*columns).limit(cfg.sample_rows)
        return frame.toArrow()

    references = reference_profiles(cfg.reference, from_model, from_previous)
    columns = monitored_columns(plan, data.schema)
    spec = build_spec(columns, references, sample, cfg.bins, cfg.top_k, cfg.bin_sample)
    log.info(
        "drift: %d columns profiled; reference %s",
        len(spec.columns),
        [describe(r) for r in references] or "none (first run: this run becomes the reference)",
    )
    return Monitoring(spec, tuple(references))


def finish_monitoring(
    monitoring: Monitoring, partial: ProfilePartial | None, run: RunContext
) -> Drift:
    """Merged counts -> profile, drift against the reference, gate outcome; both files written."""
    partial = partial if partial is not None else monitoring.spec.partial()
    ref = run.cfg.model
    profile = Profile(
        monitoring.spec,
        partial.columns,
        {
            "kind": "run",
            "run_id": run.run_id,
            "run_date": run.run_date.isoformat(),
            "job": run.cfg.job,
            "model": ref.name,
        },
    )
    columns = compare(profile, monitoring.references)
    by_name = {c.name: c.to_dict() for c in columns}
    outcome = evaluate(run.cfg.monitoring.gates, by_name)
    for warning in [*outcome.warnings, *outcome.blocking]:
        log.warning("drift: %s", warning)
    profile.write(
        local_only(run.staging.predictions, "drift") / PROFILE_NAME,
        local_only(run.predictions.run_dir(run.run_id), "drift") / RUN_PROFILE,
    )
    section = {
        "profile": PROFILE_NAME,
        "references": [describe(r) for r in monitoring.references],
        "columns": by_name,
        "profiled": [c.name for c in monitoring.spec.columns],
        "gate": outcome.to_dict(),
    }
    return Drift(profile, columns, outcome, section)
