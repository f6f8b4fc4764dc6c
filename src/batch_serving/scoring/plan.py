"""The scoring plan: which models score, what each outputs, and THE output schemas.

Built once on the driver from the resolved models and the input's Arrow schema (which also
plans the feature casts, so a missing column or an impossible type fails before scoring).
Small and picklable: engines ship it to every task; a stream or the API builds it once.

A single-model plan writes the served model's output columns. A multi-model plan (members,
an ensemble or rules; see ``config.members``) writes the served result (ensemble or champion
score, the action) at the top and one struct column per member.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import pyarrow as pa

from batch_serving.models.adapters import ModelSpec
from batch_serving.models.registry import ModelRef
from batch_serving.scoring.casts import Cast, log_ignored, plan_casts

if TYPE_CHECKING:
    from batch_serving.config import JobConfig
    from batch_serving.scoring.cascade import Cascade
    from batch_serving.scoring.ensemble import Ensemble
    from batch_serving.scoring.rules import RuleSet

ERROR_CLASS, ERROR_MESSAGE, ERROR_MEMBER = "error_class", "error_message", "error_member"
ERROR_FIELDS = (pa.field(ERROR_CLASS, pa.string()), pa.field(ERROR_MESSAGE, pa.string()))
ACTION = pa.field("action", pa.string())
SCORED_AT = pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False)
MODEL_FIELDS = (
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.int32(), nullable=False),
)
MODEL_RUN = pa.field("model_run_id", pa.string())
# lineage of a predictions row: which model version (and its MLflow run) scored it, and when
LINEAGE_FIELDS = (*MODEL_FIELDS, MODEL_RUN, SCORED_AT)
# lineage of a quarantined row: which model version and which scoring run rejected it
QUARANTINE_LINEAGE = (*MODEL_FIELDS, pa.field("run_id", pa.string(), nullable=False), SCORED_AT)


@dataclass(frozen=True)
class Member:
    """One model of the plan: its pinned registry version, its spec, its role, and (for a
    pipeline member) where each of its features comes from."""

    key: str
    ref: ModelRef
    spec: ModelSpec
    role: str = "champion"  # champion | member | shadow
    sources: tuple[str, ...] | None = None

    @property
    def shadow(self) -> bool:
        return self.role == "shadow"

    def sources_by_feature(self) -> list[tuple[str, str]]:
        """(feature, source) pairs; a source is an input column or ``<member>.<output>``."""
        return list(zip(self.spec.features, self.sources or self.spec.features, strict=True))


@dataclass(frozen=True)
class ScoringPlan:
    entity_fields: tuple[pa.Field, ...]
    members: tuple[Member, ...]
    casts: Mapping[str, Cast]
    run_id: str
    scored_at: dt.datetime
    where: str = field(default="", compare=False)
    multi: bool = False
    ensemble: Ensemble | None = None
    rules: RuleSet | None = None
    score_column: str = "score"
    cascade: Cascade | None = None

    @property
    def served(self) -> Member:
        """The champion: its lineage is the row's, its output is served unless an ensemble is."""
        return self.members[0]

    @property
    def entity_columns(self) -> list[str]:
        return [f.name for f in self.entity_fields]

    @property
    def input_columns(self) -> list[str]:
        """What an engine must read: entity columns, then every input column a member reads."""
        sources = [s for m in self.members for _, s in m.sources_by_feature() if "." not in s]
        return list(dict.fromkeys([*self.entity_columns, *sources]))

    @property
    def served_fields(self) -> list[pa.Field]:
        """The served result: ensemble score, the answering cascade stage's outputs and
        ``answered_by``, or the champion's outputs; then the action."""
        if self.ensemble is not None:
            fields = [pa.field(self.score_column, pa.float64())]
        elif self.cascade is not None:
            from batch_serving.scoring.cascade import ANSWERED_BY_FIELD

            first = next(m for m in self.members if m.key == self.cascade.members[0])
            fields = [*first.spec.output_fields(), ANSWERED_BY_FIELD]
        else:
            fields = self.served.spec.output_fields()
        return [*fields, ACTION] if self.rules is not None else fields

    @property
    def output_columns(self) -> list[str]:
        """Value columns of a predictions row that publish serves by default."""
        return [f.name for f in self.served_fields]

    @property
    def member_columns(self) -> list[str]:
        """One struct column per member (multi-model plans), served on request."""
        return [m.key for m in self.members] if self.multi else []

    def member_type(self, member: Member) -> pa.StructType:
        """A member's struct: its outputs, its would-be action (shadows), its lineage."""
        fields = member.spec.output_fields()
        if member.shadow and self.rules is not None:
            fields = [*fields, ACTION]
        return pa.struct([*fields, *(f.with_nullable(True) for f in MODEL_FIELDS), MODEL_RUN])

    @cached_property
    def output_schema(self) -> pa.Schema:
        """Predictions rows: entity ids, served outputs, member structs, lineage."""
        structs = [pa.field(m.key, self.member_type(m)) for m in self.members] if self.multi else []
        return pa.schema([*self.entity_fields, *self.served_fields, *structs, *LINEAGE_FIELDS])

    @cached_property
    def quarantine_schema(self) -> pa.Schema:
        """Rows that could not be scored: entity ids, why (and which member), lineage."""
        member = [pa.field(ERROR_MEMBER, pa.string())] if self.multi else []
        return pa.schema([*self.entity_fields, *ERROR_FIELDS, *member, *QUARANTINE_LINEAGE])

    @cached_property
    def tagged_schema(self) -> pa.Schema:
        """Both kinds of row in one nullable schema (error_class set on quarantined rows), for
        engines that score in one pass and split afterwards."""
        fields = {f.name: f for f in [*self.output_schema, *self.quarantine_schema]}
        return pa.schema([f.with_nullable(True) for f in fields.values()])


@dataclass(frozen=True)
class ScoringSettings:
    """How a job's members combine into what is served: multi-model or not, the ensemble, the
    cascade, the rules and the score column's name.

    The one value every plan builder takes (the batch run, check-input, the stream, the live
    path, the notebook), derived once from the job file (``for_job``) or from what a feature
    manifest pinned, so no builder can leave a setting out."""

    multi: bool = False
    ensemble: Ensemble | None = None
    rules: RuleSet | None = None
    score_column: str = "score"
    cascade: Cascade | None = None

    @classmethod
    def for_job(cls, cfg: JobConfig) -> ScoringSettings:
        """The job file's settings (ensemble, cascade and rules checked as at load)."""
        from batch_serving.scoring.cascade import from_config as cascade_from_config
        from batch_serving.scoring.ensemble import from_config
        from batch_serving.scoring.rules import parse_rules

        return cls(
            multi=cfg.multi_model,
            ensemble=from_config(cfg.ensemble),
            rules=parse_rules(cfg.rules) if cfg.rules else None,
            score_column=cfg.output.score_column,
            cascade=cascade_from_config(cfg),
        )


SINGLE = ScoringSettings()


def build_plan(
    members: Sequence[Member],
    entity_columns: Sequence[str],
    input_schema: pa.Schema,
    run_id: str,
    scored_at: dt.datetime,
    where: str,
    settings: ScoringSettings = SINGLE,
) -> ScoringPlan:
    """Plan the casts from the input's Arrow types; raises naming a missing or bad column,
    an unknown member output, or a rule on a name no member outputs."""
    casts: dict[str, Cast] = {}
    for member in members:
        spec, types = member.spec, dict(member.spec.input_types)
        pairs = [(f, s) for f, s in member.sources_by_feature() if "." not in s]
        casts |= plan_casts(
            input_schema,
            entity_columns,
            [s for _, s in pairs],
            {s: types[f] for f, s in pairs if f in types},
            spec.feed == "numpy",
            where,
        )
    plan = ScoringPlan(
        entity_fields=tuple(input_schema.field(c) for c in entity_columns),
        members=tuple(members),
        casts=casts,
        run_id=run_id,
        scored_at=scored_at,
        where=where,
        multi=settings.multi,
        ensemble=settings.ensemble,
        rules=settings.rules,
        score_column=settings.score_column,
        cascade=settings.cascade,
    )
    log_ignored(input_schema, plan.input_columns, where)
    if settings.multi:
        from batch_serving.scoring.members import check_plan

        check_plan(plan)
    return plan


def plan_for_job(
    cfg: JobConfig,
    members: Sequence[Member],
    input_schema: pa.Schema,
    run_id: str,
    scored_at: dt.datetime,
    where: str,
) -> ScoringPlan:
    """``build_plan`` with the job's settings: what a run scores with, and what check-input
    checks against."""
    return build_plan(
        members,
        cfg.entity_columns,
        input_schema,
        run_id,
        scored_at,
        where,
        ScoringSettings.for_job(cfg),
    )
