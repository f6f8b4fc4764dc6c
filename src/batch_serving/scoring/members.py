"""Several members in one pass: pipelines, shadows, the ensemble and the rules.

Members are scored in plan order on the rows still alive. A served member that fails on a row
quarantines that row once, naming the member; later members never see it. A shadow that fails
on a row only leaves its own struct null there: shadows never change what is served. Each
shadow also gets the action the rules would give with it in the champion's place, so the
run can compare champion and challenger decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from batch_serving.errors import ConfigError
from batch_serving.models.adapters.base import PREDICTED_LABEL, PREDICTION
from batch_serving.scoring.cascade import (
    Checked,
    StageRows,
    check_cascade_plan,
    score_stages,
    with_checked,
)
from batch_serving.scoring.casts import CAST_ERROR_COLUMN
from batch_serving.scoring.isolation import CAST_ERROR_CLASS, Isolated, score_isolating
from batch_serving.scoring.plan import ACTION, Member, ScoringPlan

_NUMERIC_TYPES = ("double", "float", "long", "integer", "boolean")


@dataclass
class Rejected:
    """Rows (positions in the input batch) that could not be scored, and why."""

    rows: list[np.ndarray] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    messages: list[str | None] = field(default_factory=list)
    members: list[str | None] = field(default_factory=list)

    def add(
        self, rows: np.ndarray, classes: list[str], messages: list[Any], member: str | None
    ) -> None:
        self.rows.append(rows.astype(np.int64))
        self.classes += classes
        self.messages += messages
        self.members += [member] * len(rows)

    def positions(self) -> np.ndarray:
        return np.concatenate(self.rows) if self.rows else np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class MembersScored:
    alive: np.ndarray  # input positions of the scored rows
    served: list[pa.Array]  # the served columns, aligned with ``alive``
    structs: list[list[pa.Array]]  # per member: its struct's fields before lineage
    rejected: Rejected
    stages: tuple[StageRows, ...] = ()  # a cascade's rows per stage (seen, answered, ...)


def score_field(member: Member) -> str | None:
    """The member's numeric score: binary score, or regression/pyfunc prediction."""
    if member.spec.kind == "binary":
        return member.spec.score_column
    return None if member.spec.kind == "multiclass" else PREDICTION


def label_field(member: Member) -> str | None:
    return PREDICTED_LABEL if member.spec.kind == "multiclass" else score_field(member)


def namespace_types(plan: ScoringPlan) -> dict[str, pa.DataType]:
    """Every name a rule may use: ``<member>.<output>``, ``ensemble.score``, served columns."""
    names = {f"{m.key}.{f.name}": f.type for m in plan.members for f in m.spec.output_fields()}
    if plan.ensemble is not None:
        names["ensemble.score"] = pa.float64()
    names |= {f.name: f.type for f in plan.served_fields if f.name != ACTION.name}
    return names


def check_plan(plan: ScoringPlan) -> None:
    """What config load cannot know: member outputs and their types (ConfigError, exit 2)."""
    by_key = {m.key: m for m in plan.members}
    taken = {*plan.entity_columns, *(f.name for f in plan.served_fields)}
    for member in plan.members:
        if member.key in taken:
            raise ConfigError(f"member key {member.key!r} collides with an output column")
        types = dict(member.spec.input_types)
        for feature, source in member.sources_by_feature():
            if "." not in source:
                continue
            key, name = source.split(".", 1)
            outputs = {f.name: f.type for f in by_key[key].spec.output_fields()}
            if name not in outputs:
                raise ConfigError(
                    f"members.{member.key}.inputs: unknown reference {source!r}; "
                    f"member {key!r} outputs {sorted(outputs)}"
                )
            expected = types.get(feature) or ("double" if member.spec.feed == "numpy" else None)
            numeric = pa.types.is_floating(outputs[name]) or pa.types.is_integer(outputs[name])
            if expected in _NUMERIC_TYPES and not numeric:
                raise ConfigError(
                    f"members.{member.key}.inputs: {source!r} is {outputs[name]}, but feature "
                    f"{feature!r} of {member.ref.uri} expects {expected}"
                )
    if plan.ensemble is not None:
        for key in plan.ensemble.members:
            if score_field(by_key[key]) is None:
                raise ConfigError(
                    f"ensemble.members: {key!r} is a multi-class model; an ensemble combines "
                    "binary scores or regression predictions"
                )
    if plan.cascade is not None:
        check_cascade_plan(plan, plan.cascade)
    if plan.rules is not None:
        plan.rules.check_refs(namespace_types(plan))
        champion = plan.served.spec.output_fields()
        for shadow in (m for m in plan.members if m.shadow):
            if shadow.spec.output_fields() != champion:
                raise ConfigError(
                    f"members.{shadow.key}: a shadow must output what the champion does "
                    f"({[f.name for f in champion]}) so the rules can compare their actions"
                )


def score_members(plan: ScoringPlan, models: Sequence[Any], batch: pa.RecordBatch) -> MembersScored:
    n = batch.num_rows
    rejected = Rejected()
    cast_index = batch.schema.get_field_index(CAST_ERROR_COLUMN)
    alive = np.arange(n)
    if cast_index >= 0:
        errors = batch.column(cast_index)
        flagged = errors.is_valid().to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(flagged)
        if len(bad):
            messages = errors.take(pa.array(bad)).to_pylist()
            rejected.add(bad, [CAST_ERROR_CLASS] * len(bad), messages, None)
            alive = np.flatnonzero(~flagged)
    view = batch if len(alive) == n else batch.take(pa.array(alive))
    outputs: dict[str, list[pa.Array]] = {}
    stages = plan.cascade.members if plan.cascade is not None else ()
    for member, model in zip(plan.members, models, strict=True):
        if member.key in stages:
            continue  # scored after the others, each stage on the rows still open
        iso = score_isolating(member.spec, model, _inputs(plan, member, view, outputs))
        if member.shadow:
            outputs[member.key] = _with_nulls(iso, view.num_rows)
            continue
        if len(iso.bad_rows):
            rows = alive[iso.bad_rows]
            rejected.add(rows, iso.error_class, iso.error_message, member.key)
            keep = pa.array(iso.good_rows)
            alive, view = alive[iso.good_rows], view.take(keep)
            outputs = {k: [a.take(keep) for a in arrays] for k, arrays in outputs.items()}
        outputs[member.key] = iso.outputs
    counts: tuple[StageRows, ...] = ()
    cascaded: list[pa.Array] | None = None
    checked: Checked | None = None
    if plan.cascade is not None:
        pairs = {m.key: (m, model) for m, model in zip(plan.members, models, strict=True)}

        def inputs(m: Member, v: pa.RecordBatch, o: dict[str, list[pa.Array]]) -> pa.RecordBatch:
            return _inputs(plan, m, v, o)

        done = score_stages(plan.cascade, pairs, alive, view, outputs, rejected, inputs)
        alive, outputs, cascaded, counts = done.alive, done.outputs, done.served, done.rows
        checked = done.checked
    served, namespace = _served(plan, outputs, cascaded=cascaded)
    structs = [_struct_outputs(plan, m, outputs, namespace) for m in plan.members]
    if checked is not None and plan.cascade is not None:
        # the check lands in the last stage's struct only after every served column, rule
        # and shadow action is final: the sample never changes what is served
        last = [m.key for m in plan.members].index(plan.cascade.members[-1])
        structs[last] = with_checked(structs[last], checked)
    return MembersScored(alive, served, structs, rejected, counts)


def _output_names(plan: ScoringPlan) -> dict[str, list[str]]:
    return {m.key: [f.name for f in m.spec.output_fields()] for m in plan.members}


def _inputs(
    plan: ScoringPlan, member: Member, view: pa.RecordBatch, outputs: dict[str, list[pa.Array]]
) -> pa.RecordBatch:
    """The member's features by name: input columns, or earlier members' outputs."""
    if member.sources is None:
        return view
    names = _output_names(plan)
    arrays = []
    for _, source in member.sources_by_feature():
        if "." in source:
            key, name = source.split(".", 1)
            arrays.append(outputs[key][names[key].index(name)])
        else:
            arrays.append(view.column(source))
    return pa.RecordBatch.from_arrays(arrays, names=list(member.spec.features))


def _with_nulls(iso: Isolated, size: int) -> list[pa.Array]:
    """A shadow's outputs at full length: null where the shadow failed."""
    if len(iso.bad_rows) == 0:
        return iso.outputs
    index = np.full(size, -1, dtype=np.int64)
    index[iso.good_rows] = np.arange(len(iso.good_rows))
    positions = pa.array(index, mask=index < 0)
    return [a.take(positions) for a in iso.outputs]


def _served(
    plan: ScoringPlan,
    outputs: dict[str, list[pa.Array]],
    champion: str | None = None,
    cascaded: list[pa.Array] | None = None,
) -> tuple[list[pa.Array], dict[str, pa.Array]]:
    """Served columns and the rule namespace; ``champion`` puts a shadow in its place (in
    place of the whole cascade, which it then answers alone); ``cascaded``: the cascade's
    served columns."""
    names = _output_names(plan)
    stand_in = champion or plan.served.key
    namespace = {
        f"{key}.{name}": array
        for key, arrays in outputs.items()
        for name, array in zip(names[key], arrays, strict=True)
    }
    if stand_in != plan.served.key:
        champion_names = names[plan.served.key]
        for name, array in zip(champion_names, outputs[stand_in], strict=True):
            namespace[f"{plan.served.key}.{name}"] = array
    if plan.ensemble is not None:
        by_key = {m.key: m for m in plan.members}
        scores = [namespace[f"{key}.{score_field(by_key[key])}"] for key in plan.ensemble.members]
        served = [plan.ensemble.combine(scores)]
        namespace["ensemble.score"] = served[0]
    elif plan.cascade is not None and cascaded is not None and champion is None:
        served = list(cascaded)
    elif plan.cascade is not None:
        size = len(outputs[stand_in][0])
        served = [*outputs[stand_in], pa.array([stand_in] * size, pa.string())]
    else:
        served = list(outputs[stand_in])
    fields = [f for f in plan.served_fields if f.name != ACTION.name]
    namespace |= {f.name: array for f, array in zip(fields, served, strict=True)}
    if plan.rules is not None:
        served.append(plan.rules.evaluate(namespace, num_rows=len(served[0])))
    return served, namespace


def _struct_outputs(
    plan: ScoringPlan,
    member: Member,
    outputs: dict[str, list[pa.Array]],
    namespace: dict[str, pa.Array],
) -> list[pa.Array]:
    """A member's struct fields before lineage: outputs, and a shadow's would-be action."""
    arrays = list(outputs[member.key])
    if member.shadow and plan.rules is not None:
        arrays.append(_served(plan, outputs, champion=member.key)[0][-1])
    return arrays
