"""Several models in one pass (issue #11): members beside the champion, an ensemble, rules.

The champion stays ``model:`` (so a single-model job file is unchanged and ``--model-alias``
still overrides it); ``members:`` adds models that inherit the champion's registry settings:

    members:
      challenger: {name: churn, alias: challenger, role: shadow}
      tenure_adj: {name: churn_tenure, alias: champion, inputs: [champion.score, tenure_months]}
    ensemble: {members: [champion, tenure_adj], method: weighted_mean, weights: [0.7, 0.3]}
    rules:
      - {when: "ensemble.score >= 0.85", action: block}
      - {otherwise: allow}

``inputs`` lists, in the order of the member model's features, where each comes from: an input
column, or ``<member>.<output>`` of a member scored before it (a pipeline).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from batch_serving.config.ensemble import Method
from batch_serving.config.sections import Frozen, ModelConfig

CHAMPION = "champion"
ENSEMBLE = "ensemble"
RESERVED = (CHAMPION, ENSEMBLE, "score", "action", "input")
MEMBER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Role = Literal["member", "shadow"]


class MemberConfig(Frozen):
    """One more registered model; unset registry fields inherit from ``model:``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    """Registered model name in the MLflow registry."""
    alias: str | None = None
    """Registry alias to resolve (set exactly one of `alias` and `version`)."""
    version: int | None = Field(default=None, ge=1)
    """Registry version to score with (set exactly one of `alias` and `version`)."""
    role: Role = "member"
    """`member` (may feed the served result) or `shadow` (scored and compared, never served)."""
    inputs: tuple[str, ...] | None = Field(default=None, min_length=1)
    """Where each feature comes from, in the model's feature order: an input column or
    `<member>.<output>` of a member scored before; `null`: the input columns of its features."""
    tracking_uri: str | None = None
    """MLflow tracking URI; `null` inherits `model.tracking_uri`."""
    registry_uri: str | None = None
    """MLflow registry URI; `null` inherits `model.registry_uri`."""
    positive_label: str | int | bool | None = None
    """Binary classifiers: the class whose probability is the member's score."""
    skops_trusted_types: tuple[str, ...] = ()
    """Extra skops types to trust when loading; empty inherits `model.skops_trusted_types`."""

    @model_validator(mode="after")
    def _alias_xor_version(self) -> MemberConfig:
        if (self.alias is None) == (self.version is None):
            raise ValueError("set exactly one of alias or version")
        return self

    def as_model(self, champion: ModelConfig) -> ModelConfig:
        """The member as a ``ModelConfig``, registry settings inherited from the champion."""
        return ModelConfig(
            name=self.name,
            alias=self.alias,
            version=self.version,
            tracking_uri=self.tracking_uri or champion.tracking_uri,
            registry_uri=self.registry_uri or champion.registry_uri,
            positive_label=self.positive_label,
            skops_trusted_types=self.skops_trusted_types or champion.skops_trusted_types,
        )


class EnsembleConfig(Frozen):
    """How the served score combines members' scores (see ``scoring.ensemble``)."""

    members: tuple[str, ...]
    """Keys of the combined members (`champion` included if it takes part), at least 2."""
    method: Method
    """`mean`, `weighted_mean`, `max`, or `vote` (the share of members scoring >= threshold)."""
    weights: tuple[float, ...] | None = None
    """`weighted_mean`: one weight per member, normalized by their sum."""
    threshold: float = 0.5
    """`vote`: the score at or above which a member votes yes."""


@dataclass(frozen=True)
class MemberModel:
    """One model of the job, champion included, as the run resolves and scores it."""

    key: str
    model: ModelConfig
    role: str  # champion | member | shadow
    inputs: tuple[str, ...] | None = None


def member_models(
    champion: ModelConfig, members: dict[str, MemberConfig], ensemble: EnsembleConfig | None
) -> list[MemberModel]:
    """The champion first, then every member after the members it reads."""
    order = check_members(members, ensemble)
    return [MemberModel(CHAMPION, champion, "champion")] + [
        MemberModel(k, members[k].as_model(champion), members[k].role, members[k].inputs)
        for k in order
    ]


def member_refs(inputs: tuple[str, ...] | None) -> list[str]:
    """The member keys an ``inputs`` list reads from (``<member>.<output>`` entries)."""
    return [ref.split(".", 1)[0] for ref in inputs or () if "." in ref]


def check_members(members: dict[str, MemberConfig], ensemble: EnsembleConfig | None) -> list[str]:
    """Member keys in scoring order (each after the members it reads); ValueError naming an
    invalid key, an unknown reference, a shadow feeding a served output, or a cycle."""
    known = {CHAMPION, *members}
    for key, member in members.items():
        if not MEMBER_KEY.fullmatch(key) or key in RESERVED:
            raise ValueError(
                f"members.{key}: a member key is an identifier other than {list(RESERVED)}"
            )
        for ref in member.inputs or ():
            source = ref.split(".", 1)[0]
            if "." in ref and source not in known:
                raise ValueError(
                    f"members.{key}.inputs: unknown reference {ref!r}; members: {sorted(known)}"
                )
            reads_shadow = source in members and members[source].role == "shadow"
            if "." in ref and reads_shadow and member.role != "shadow":
                raise ValueError(
                    f"members.{key}.inputs: {ref!r} reads shadow {source!r}; a shadow "
                    "must never feed a served output"
                )
    order = _scoring_order(members)
    if ensemble is not None:
        for key in ensemble.members:
            if key not in known:
                raise ValueError(
                    f"ensemble.members: unknown member {key!r}; members: {sorted(known)}"
                )
            if key in members and members[key].role == "shadow":
                raise ValueError(
                    f"ensemble.members: {key!r} is a shadow; shadows never change the served score"
                )
    return order


def _scoring_order(members: dict[str, MemberConfig]) -> list[str]:
    """Depth-first topological order; a cycle is named in full."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == "done" or key == CHAMPION:
            return
        if state.get(key) == "active":
            cycle = [*path[path.index(key) :], key]
            raise ValueError(f"members: cycle in inputs: {' -> '.join(cycle)}")
        state[key] = "active"
        for source in member_refs(members[key].inputs):
            if source == key:
                raise ValueError(f"members.{key}.inputs: a member cannot read its own output")
            visit(source, [*path, key])
        state[key] = "done"
        order.append(key)

    for key in members:
        visit(key, [])
    return order
