"""Champion vs each shadow, and a cascade's stages, from the staged predictions (a few
columns, no input re-read)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.config.cascade import ANSWERED_BY
from batch_serving.scoring.cascade_check import (
    StageEvidence,
    check_columns,
    check_partials,
    merge_partials,
    stage_evidence,
)
from batch_serving.scoring.comparison import (
    ComparisonPartial,
    ComparisonSummary,
    labels_from_scores,
    summarize,
)
from batch_serving.scoring.members import label_field, score_field
from batch_serving.scoring.plan import ACTION, ERROR_MEMBER, Member, ScoringPlan
from batch_serving.storage import AnyPath, as_location
from batch_serving.storage.files import data_files, read_table


def compare_shadows(plan: ScoringPlan, staged: AnyPath) -> dict[str, ComparisonSummary]:
    """Agreement of actions (or labels), score correlation, mean abs difference, flip matrix."""
    shadows = [m for m in plan.members if m.shadow]
    if not shadows:
        return {}
    champion = plan.served
    columns = [champion.key, *(s.key for s in shadows)]
    if plan.rules is not None:
        columns.append(ACTION.name)
    partials: dict[str, ComparisonPartial] = {}
    for f in data_files(staged):
        table = read_table(f, columns=columns)
        for shadow in shadows:
            part = ComparisonPartial.of(
                _scores(table, champion),
                _scores(table, shadow),
                _decisions(table, plan, champion),
                _decisions(table, plan, shadow),
            )
            seen = partials.get(shadow.key)
            partials[shadow.key] = part if seen is None else seen.merge(part)
    return {key: summarize(part) for key, part in partials.items()}


def cascade_stages(
    plan: ScoringPlan, predictions: AnyPath, quarantine: AnyPath
) -> list[StageEvidence]:
    """Per stage: rows seen, answered, quarantined (and their shares) and, with a check
    sample, its agreement with the last stage; [] without a cascade. Reads ``answered_by``
    (and, with a check sample, the served and checked columns) file by file, and the
    quarantine's ``error_member``."""
    if plan.cascade is None:
        return []
    columns = check_columns(plan)
    answered, partials = [], []
    for f in data_files(predictions):
        table = read_table(f, columns=columns)
        answered.append(table.column(ANSWERED_BY))
        partials.append(check_partials(plan, table))
    where = as_location(quarantine)
    errors = [
        read_table(f, columns=[ERROR_MEMBER]).column(ERROR_MEMBER)
        for f in (data_files(where) if where.is_dir() else [])
    ]
    return stage_evidence(plan, answered, errors, merge_partials(partials))


def _field(table: pa.Table, member: Member, name: str) -> pa.Array:
    return pc.struct_field(table.column(member.key).combine_chunks(), name)


def _scores(table: pa.Table, member: Member) -> pa.Array:
    name = score_field(member)
    if name is None:  # multi-class: no single score to correlate
        return pa.nulls(table.num_rows, pa.float64())
    return _field(table, member, name)


def _decisions(table: pa.Table, plan: ScoringPlan, member: Member) -> pa.Array:
    """The action the member's scores lead to (the served one for the champion), or, without
    rules, its label."""
    if plan.rules is not None:
        if member is plan.served:
            return table.column(ACTION.name).combine_chunks()
        return _field(table, member, ACTION.name)
    name = label_field(member)
    assert name is not None
    values = _field(table, member, name)
    return values if member.spec.kind == "multiclass" else labels_from_scores(values)
