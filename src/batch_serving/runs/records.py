"""The run manifest, built from what the steps returned (see ``tables.manifest``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batch_serving import __version__
from batch_serving.models.registry import ModelRef
from batch_serving.quality.gates import GateRunner
from batch_serving.runs.context import RunContext
from batch_serving.runs.models import PreparedModels
from batch_serving.runs.outcome import StagedOutcome
from batch_serving.scoring.cascade_check import StageEvidence
from batch_serving.scoring.plan import Member, ScoringPlan
from batch_serving.spark.delivery import DeliveryPlan
from batch_serving.storage import AnyPath, resolve
from batch_serving.tables.manifest import (
    GateSummary,
    InputFile,
    InputSection,
    MemberSection,
    ModelSection,
    OutputSection,
    QuarantineSection,
    RunManifest,
    ScoringSection,
)


def build_manifest(
    run: RunContext,
    plan: ScoringPlan,
    models: PreparedModels,
    engine: str,
    outcome: StagedOutcome,
    gates: GateRunner,
    spark_version: str,
) -> RunManifest:
    """``outcome``: the counts, shadow comparisons, cascade stages and input files taken
    before the commit (``runs.outcome``)."""
    cfg, served, counts = run.cfg, plan.served, outcome.counts
    ref, delivery = served.ref, models.deliveries[0]
    return RunManifest(
        job=cfg.job,
        run_id=run.run_id,
        run_date=run.run_date.isoformat(),
        started_at=run.started.isoformat(),
        config_digest=cfg.digest(),
        model=ModelSection(
            **_pinned(ref), artifact_uri=ref.artifact_uri, registry_uri=ref.registry_uri
        ),
        scoring=_scoring(plan, delivery, engine, outcome.cascade),
        input=InputSection(
            path=run.where, rows=counts.input_rows, files=_stamped(run, outcome.input_files)
        ),
        staging_removed=list(run.staging_removed),
        quarantine=QuarantineSection(
            path=str(run.quarantine.partition_dir(run.run_date)),
            rows=counts.bad_rows,
            max_bad_rows=cfg.validation.max_bad_rows,
        ),
        output=OutputSection(
            path=str(run.predictions.partition_dir(run.run_date)),
            rows=counts.output_rows,
            files=counts.output_files,
        ),
        versions={"batch_serving": __version__, "spark": spark_version},
        validation={
            g.name: GateSummary(success=g.success, checked=g.checked, warnings=g.warnings)
            for g in gates.results
        },
        durations_s=dict(run.timer.durations),
        members=[_member(m, d) for m, d in zip(plan.members, models.deliveries, strict=True)]
        if plan.multi
        else [],
        ensemble=plan.ensemble.describe() if plan.ensemble is not None else None,
        rules=plan.rules.describe() if plan.rules is not None else [],
        comparison={key: summary.to_dict() for key, summary in outcome.comparison.items()},
    )


def _stamped(run: RunContext, files: Sequence[AnyPath]) -> list[InputFile] | None:
    """Name, size and mtime of each file read: publish builds the feature snapshot from these
    files only and refuses if one changed since."""
    if not files:
        return None
    partition = resolve(run.where, run.cfg.storage)
    return [InputFile.of(partition, f) for f in files]


def _scoring(
    plan: ScoringPlan, delivery: DeliveryPlan, engine: str, cascade: Sequence[StageEvidence]
) -> ScoringSection:
    """How the served model scored: its kind and features, the output, the delivery, and a
    cascade's rows per stage."""
    spec = plan.served.spec
    return ScoringSection(
        engine=engine,
        kind=spec.kind,
        features=list(spec.features),
        classes=list(spec.classes),
        positive_label=spec.positive_label,
        output_columns=plan.output_columns,
        member_columns=plan.member_columns,
        delivery=delivery.strategy,
        artifact_mb=round(delivery.artifact_mb, 3),
        model_loads=delivery.handle.loads.value,
        python_workers=len(delivery.handle.workers.value),
        cascade=list(cascade),
    )


def _member(member: Member, delivery: DeliveryPlan) -> MemberSection:
    return MemberSection(
        **_pinned(member.ref),
        key=member.key,
        role=member.role,
        kind=member.spec.kind,
        inputs=list(member.sources) if member.sources is not None else None,
        delivery=delivery.strategy,
        model_loads=delivery.handle.loads.value,
        python_workers=len(delivery.handle.workers.value),
    )


def _pinned(ref: ModelRef) -> dict[str, Any]:
    """What every record says about a pinned model version."""
    return {
        "name": ref.name,
        "version": ref.version,
        "alias": ref.alias,
        "run_id": ref.run_id,
        "uri": ref.uri,
    }
