"""The scoring plan: which models score, what each outputs, and THE output schemas.

Built once on the driver from the resolved models and the input's Arrow schema (which also
plans the feature casts, so a missing column or an impossible type fails before scoring).
Small and picklable: engines ship it to every task; a stream or the API builds it once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import pyarrow as pa

from batch_serving.models.adapters import ModelSpec
from batch_serving.models.registry import ModelRef
from batch_serving.scoring.casts import Cast, plan_casts

ERROR_CLASS, ERROR_MESSAGE = "error_class", "error_message"
ERROR_FIELDS = (pa.field(ERROR_CLASS, pa.string()), pa.field(ERROR_MESSAGE, pa.string()))
SCORED_AT = pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False)
MODEL_FIELDS = (
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.int32(), nullable=False),
)
# lineage of a predictions row: which model version (and its MLflow run) scored it, and when
LINEAGE_FIELDS = (*MODEL_FIELDS, pa.field("model_run_id", pa.string()), SCORED_AT)
# lineage of a quarantined row: which model version and which scoring run rejected it
QUARANTINE_LINEAGE = (*MODEL_FIELDS, pa.field("run_id", pa.string(), nullable=False), SCORED_AT)


@dataclass(frozen=True)
class Member:
    """One model of the plan: its pinned registry version and its spec."""

    key: str
    ref: ModelRef
    spec: ModelSpec


@dataclass(frozen=True)
class ScoringPlan:
    entity_fields: tuple[pa.Field, ...]
    members: tuple[Member, ...]
    casts: Mapping[str, Cast]
    run_id: str
    scored_at: dt.datetime
    where: str = field(default="", compare=False)

    @property
    def served(self) -> Member:
        """The member whose output is the served result."""
        return self.members[0]

    @property
    def entity_columns(self) -> list[str]:
        return [f.name for f in self.entity_fields]

    @property
    def input_columns(self) -> list[str]:
        """What an engine must read: entity columns, then every member's features."""
        features = [c for m in self.members for c in m.spec.features]
        return list(dict.fromkeys([*self.entity_columns, *features]))

    @property
    def output_columns(self) -> list[str]:
        """Value columns of a predictions row (what publish serves)."""
        return [f.name for f in self.served.spec.output_fields()]

    @cached_property
    def output_schema(self) -> pa.Schema:
        """Predictions rows: entity ids, model outputs, lineage."""
        return pa.schema([*self.entity_fields, *self.served.spec.output_fields(), *LINEAGE_FIELDS])

    @cached_property
    def quarantine_schema(self) -> pa.Schema:
        """Rows that could not be scored: entity ids, why, and which model/run saw them."""
        return pa.schema([*self.entity_fields, *ERROR_FIELDS, *QUARANTINE_LINEAGE])

    @cached_property
    def tagged_schema(self) -> pa.Schema:
        """Both kinds of row in one nullable schema (error_class set on quarantined rows), for
        engines that score in one pass and split afterwards."""
        fields = {f.name: f for f in [*self.output_schema, *self.quarantine_schema]}
        return pa.schema([f.with_nullable(True) for f in fields.values()])


def build_plan(
    members: Sequence[Member],
    entity_columns: Sequence[str],
    input_schema: pa.Schema,
    run_id: str,
    scored_at: dt.datetime,
    where: str,
) -> ScoringPlan:
    """Plan the casts from the input's Arrow types; raises naming a missing or bad column."""
    casts: dict[str, Cast] = {}
    for member in members:
        spec = member.spec
        casts |= plan_casts(
            input_schema,
            entity_columns,
            spec.features,
            dict(spec.input_types),
            spec.feed == "numpy",
            where,
        )
    return ScoringPlan(
        entity_fields=tuple(input_schema.field(c) for c in entity_columns),
        members=tuple(members),
        casts=casts,
        run_id=run_id,
        scored_at=scored_at,
        where=where,
    )
