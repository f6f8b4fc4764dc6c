"""The ``cascade:`` section (issue #28): a cheap model answers the rows it is sure of, a bigger
one only the rest. Checked at config load; the scoring is ``scoring.cascade``.

    model: {name: churn_small, alias: champion}
    members:
      big: {name: churn_big, alias: champion}
    cascade:
      stages:
        - {member: champion, answer_if: "score <= 0.2 or score >= 0.8"}
        - {member: big}                 # the last stage answers every row left open

Each stage is a member (the champion included) with an ``answer_if`` condition on its OWN
outputs, written in the rules grammar (``config.rules``): ``score``, ``prediction``,
``predicted_label`` or ``<member>.<output>`` of the stage itself. A stage scores only the rows
every earlier stage left open, so its outputs exist on part of the rows: only a later stage may
read them (``inputs``). Every problem is a ConfigError naming the stage (exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field

from batch_serving.config.rules import OUTPUT_KINDS, Comparison, Terms, _kind_of, _literal, _Parser
from batch_serving.config.sections import Frozen
from batch_serving.errors import ConfigError

ANSWERED_BY = "answered_by"


class StageConfig(Frozen):
    """One stage of a cascade: a member and when its answer is final."""

    member: str
    """Key of the member that scores this stage (`champion` for `model:`)."""
    answer_if: str | None = None
    """Condition on the stage's own outputs (rules grammar, e.g. `score <= 0.2 or score >= 0.8`)
    under which its answer is final; required on every stage but the last, which answers
    every row still open."""


class CascadeConfig(Frozen):
    """Stages in order: each scores only the rows earlier stages left open."""

    stages: tuple[StageConfig, ...]
    """At least 2 stages; a member appears in at most one."""
    check_sample: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share (0 to 1) of the rows an earlier stage answered that the last stage scores too,
    so the run can report how often the answer would have differed (0: no check). Picked by
    a hash of the entity ids, so reruns check the same rows; never changes what is served."""


@dataclass(frozen=True)
class Stage:
    """A checked stage: its member, its condition (an OR of ANDs; empty for the last) and
    the condition's text (for messages and manifests)."""

    member: str
    any_of: Terms
    text: str
    where: str

    @property
    def last(self) -> bool:
        return not self.any_of


def check_cascade(
    cascade: CascadeConfig,
    roles: Mapping[str, str],
    inputs: Mapping[str, tuple[str, ...] | None],
    *,
    ensemble: bool,
    score_column: str = "score",
) -> tuple[Stage, ...]:
    """The stages checked against what the job file declares. ``roles``: member key (champion
    included) -> champion/member/shadow; ``inputs``: member key -> its ``inputs``.
    ConfigError naming ``cascade.stages[i]`` and the member."""
    if ensemble:
        raise ConfigError(
            "cascade: a job serves a cascade or an ensemble, not both (both decide the served "
            "score); drop one of `cascade:` and `ensemble:`"
        )
    stages = cascade.stages
    if len(stages) < 2:
        raise ConfigError(f"cascade.stages: a cascade needs at least 2 stages, got {len(stages)}")
    checked: list[Stage] = []
    seen: dict[str, int] = {}
    for i, stage in enumerate(stages):
        where = f"cascade.stages[{i}]"
        _check_member(stage.member, where, roles, seen)
        seen[stage.member] = i
        checked.append(_stage(stage, where, i == len(stages) - 1, score_column))
    _check_readers([s.member for s in checked], inputs)
    return tuple(checked)


def _check_member(key: str, where: str, roles: Mapping[str, str], seen: Mapping[str, int]) -> None:
    if key not in roles:
        raise ConfigError(f"{where}.member: unknown member {key!r}; members: {sorted(roles)}")
    if roles[key] == "shadow":
        raise ConfigError(
            f"{where}.member: {key!r} is a shadow; a shadow is scored and compared, never "
            "served, so it cannot answer in a cascade"
        )
    if key in seen:
        raise ConfigError(
            f"{where}.member: {key!r} is already cascade.stages[{seen[key]}]; a member "
            "answers in one place"
        )


def _stage(stage: StageConfig, where: str, last: bool, score_column: str) -> Stage:
    """The stage's condition parsed and its names checked against every output a model
    kind can have (which one this member has is known once it is resolved)."""
    if last:
        if stage.answer_if is not None:
            raise ConfigError(
                f"{where}.answer_if: the last stage ({stage.member!r}) answers every row still "
                "open; remove its answer_if"
            )
        return Stage(stage.member, (), "", where)
    return checked_stage(stage, where, {**OUTPUT_KINDS, score_column: "number"})


def checked_stage(stage: StageConfig, where: str, outputs: Mapping[str, str | None]) -> Stage:
    """A stage that is not the last: its ``answer_if`` parsed (rules grammar) and every name
    checked against ``outputs`` (output name -> literal kind); ConfigError naming ``where``."""
    text = stage.answer_if
    if text is None or not text.strip():
        raise ConfigError(
            f"{where}.answer_if: stage {stage.member!r} is not the last, so it needs a "
            "condition saying which of its answers are final (e.g. 'score <= 0.2 or "
            "score >= 0.8')"
        )
    any_of = _Parser(text, f"{where}.answer_if").parse()
    for term in any_of:
        for c in term:
            _check_comparison(c, stage.member, outputs, f"{where}.answer_if", text)
    return Stage(stage.member, any_of, text, where)


def _check_comparison(
    c: Comparison, member: str, outputs: Mapping[str, str | None], where: str, text: str
) -> None:
    at = f' at position {c.at} in "{text}"'
    key, _, name = c.ref.rpartition(".")
    if key and key != member:
        raise ConfigError(
            f"{where}: {c.ref!r} is not an output of stage {member!r}{at}; a stage's "
            f"condition reads its own outputs ({sorted(outputs)})"
        )
    if name not in outputs:
        raise ConfigError(
            f"{where}: unknown output {name!r} of stage {member!r}{at}; a model outputs one "
            f"of {sorted(outputs)} by its kind"
        )
    kind = outputs[name]
    if kind is None:
        raise ConfigError(
            f"{where}: {c.ref!r} is a map of class probabilities, not comparable{at}; "
            "compare predicted_label or a binary score"
        )
    if kind != _kind_of(c.value):
        given = f"{_kind_of(c.value)} {_literal(c.value)}"
        raise ConfigError(f"{where}: {c.ref!r} is a {kind}, compared with {given}{at}")


def _check_readers(order: list[str], inputs: Mapping[str, tuple[str, ...] | None]) -> None:
    """A stage's outputs exist only on the rows it saw: only a later stage may read them."""
    position = {key: i for i, key in enumerate(order)}
    for reader, sources in inputs.items():
        for ref in sources or ():
            source = ref.split(".", 1)[0]
            if "." not in ref or source not in position:
                continue
            if reader not in position or position[reader] <= position[source]:
                raise ConfigError(
                    f"members.{reader}.inputs: {ref!r} reads cascade stage {source!r}, which "
                    "scores only the rows earlier stages left open; only a later stage may "
                    "read it"
                )
