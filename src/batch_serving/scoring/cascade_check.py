"""The evidence for a cascade's band, from its predictions (a few columns, no re-scoring).

Per stage: the rows it saw, answered and quarantined, as counts and as shares of the rows
entering the cascade (``cascade.counted_stages``). With ``cascade.check_sample``, the last stage
also scored a hash-picked sample of the rows earlier stages answered (its struct holds those
outputs; ``answered_by`` still names the answering stage), and each answering stage gets its
agreement with the last one on that sample: mean |score difference|, and how many rows would
get another action (with rules: the rules evaluated with the last stage answering) or label
(without rules: ``positive``/``negative`` at 0.5 of a binary score, the predicted label of a
multi-class model; none for a regression). Computed file by file into mergeable partials.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.config.cascade import ANSWERED_BY
from batch_serving.models.adapters.base import PREDICTED_LABEL
from batch_serving.scoring.cascade import (
    Cascade,
    StageRows,
    counted_stages,
    stage_rows,
    value_counts,
)
from batch_serving.scoring.comparison import labels_from_scores
from batch_serving.scoring.ensemble import float_values
from batch_serving.scoring.members import score_field
from batch_serving.scoring.plan import ACTION, ERROR_MEMBER, Member, ScoringPlan


@dataclass(frozen=True)
class CheckPartial:
    """One answering stage's checked rows (in some files): ``scored`` rows have both scores
    finite, ``decided`` rows both decisions; ``flips`` of those differ."""

    rows: int = 0
    scored: int = 0
    sum_abs_diff: float = 0.0
    decided: int = 0
    flips: int = 0

    def merge(self, other: CheckPartial) -> CheckPartial:
        return CheckPartial(
            self.rows + other.rows,
            self.scored + other.scored,
            self.sum_abs_diff + other.sum_abs_diff,
            self.decided + other.decided,
            self.flips + other.flips,
        )


@dataclass(frozen=True)
class StageEvidence:
    """What a run reports for one stage; shares are of the rows entering the cascade. The
    check fields describe this stage's answers against the last stage (None: not checked)."""

    member: str
    answer_if: str | None
    seen: int
    answered: int
    quarantined: int
    share_seen: float
    share_answered: float
    share_quarantined: float
    checked: int = 0
    mean_abs_diff: float | None = None
    flips: int | None = None
    flip_share: float | None = None
    decision: str | None = None  # what a flip compares: "action", "label" or None

    @property
    def band(self) -> int:
        """Rows this stage saw but left open (in its band): passed on to the next stage."""
        return self.seen - self.answered - self.quarantined

    @property
    def agreement(self) -> float | None:
        """The share of checked decisions the last stage would have made alike."""
        return None if self.flip_share is None else 1.0 - self.flip_share

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_columns(plan: ScoringPlan) -> list[str]:
    """The predictions columns the evidence reads: ``answered_by``; with a check sample, the
    served outputs, the action, the last stage's struct and the structs the rules read."""
    cascade = _cascade(plan)
    if not cascade.check_sample:
        return [ANSWERED_BY]
    served = [f.name for f in plan.served_fields if f.name != ANSWERED_BY]
    structs = [cascade.members[-1], *_rule_members(plan)]
    return list(dict.fromkeys([ANSWERED_BY, *served, *structs]))


def check_partials(plan: ScoringPlan, table: pa.Table) -> dict[str, CheckPartial]:
    """Per answering stage (not the last), its checked rows in ``table`` (``check_columns``):
    rows it answered where the last stage's outputs are present."""
    cascade = _cascade(plan)
    if not cascade.check_sample or not table.num_rows:
        return {}
    by_key = {m.key: m for m in plan.members}
    last = by_key[cascade.members[-1]]
    first_output = last.spec.output_fields()[0].name
    present = pc.is_valid(pc.struct_field(table.column(last.key).combine_chunks(), first_output))
    answered = table.column(ANSWERED_BY).combine_chunks()
    checked = table.filter(pc.and_(present, pc.not_equal(answered, last.key)))
    partials: dict[str, CheckPartial] = {}
    for key in cascade.members[:-1]:
        rows = checked.filter(pc.equal(checked.column(ANSWERED_BY), key))
        if rows.num_rows:
            partials[key] = _partial(plan, last, rows)
    return partials


def merge_partials(parts: Iterable[Mapping[str, CheckPartial]]) -> dict[str, CheckPartial]:
    merged: dict[str, CheckPartial] = {}
    for part in parts:
        for key, partial in part.items():
            merged[key] = merged[key].merge(partial) if key in merged else partial
    return merged


def stage_evidence(
    plan: ScoringPlan,
    answered_by: Iterable[pa.Array | pa.ChunkedArray],
    error_member: Iterable[pa.Array | pa.ChunkedArray],
    partials: Mapping[str, CheckPartial],
) -> list[StageEvidence]:
    """Each stage's counts, shares and check, from the columns read file by file."""
    cascade = _cascade(plan)
    checked = {key: p.rows for key, p in partials.items()}
    rows = counted_stages(cascade, answered_by, error_member, checked)
    return _stages_evidence(plan, rows, partials)


@dataclass(frozen=True)
class EvidenceCounts:
    """A cascade's evidence before shares, mergeable: rows each stage answered and
    quarantined, and each answering stage's check partial. A stream adds one per
    micro-batch and reports each batch's evidence and the sum since it started."""

    answered: Mapping[str, int] = field(default_factory=dict)
    quarantined: Mapping[str, int] = field(default_factory=dict)
    checks: Mapping[str, CheckPartial] = field(default_factory=dict)

    def merge(self, other: EvidenceCounts) -> EvidenceCounts:
        return EvidenceCounts(
            _add(self.answered, other.answered),
            _add(self.quarantined, other.quarantined),
            merge_partials([self.checks, other.checks]),
        )


def batch_counts(plan: ScoringPlan, predictions: pa.Table, quarantine: pa.Table) -> EvidenceCounts:
    """The evidence of one batch's scored rows (``check_columns`` at least) and quarantined
    rows (``error_member``; a row quarantined before scoring names no stage, so it never
    entered the cascade)."""
    errors = [quarantine.column(ERROR_MEMBER)] if ERROR_MEMBER in quarantine.column_names else []
    return EvidenceCounts(
        value_counts([predictions.column(ANSWERED_BY)]),
        value_counts(errors),
        check_partials(plan, predictions),
    )


def evidence_of(plan: ScoringPlan, counts: EvidenceCounts) -> list[StageEvidence]:
    """Each stage's counts, shares and check from ``counts`` (as ``stage_evidence``)."""
    checked = {key: p.rows for key, p in counts.checks.items()}
    rows = stage_rows(_cascade(plan), counts.answered, counts.quarantined, checked)
    return _stages_evidence(plan, rows, counts.checks)


def _stages_evidence(
    plan: ScoringPlan, rows: Sequence[StageRows], partials: Mapping[str, CheckPartial]
) -> list[StageEvidence]:
    cascade = _cascade(plan)
    entering = rows[0].seen if rows else 0
    decision = _decision_kind(plan)
    return [
        _evidence(stage.text or None, r, entering, partials.get(r.member), decision)
        for stage, r in zip(cascade.stages, rows, strict=True)
    ]


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {key: a.get(key, 0) + b.get(key, 0) for key in dict.fromkeys([*a, *b])}


def _evidence(
    condition: str | None,
    rows: StageRows,
    entering: int,
    partial: CheckPartial | None,
    decision: str | None,
) -> StageEvidence:
    def share(n: int) -> float:
        return n / entering if entering else 0.0

    counts = StageEvidence(
        rows.member,
        condition,
        rows.seen,
        rows.answered,
        rows.quarantined,
        share(rows.seen),
        share(rows.answered),
        share(rows.quarantined),
    )
    if partial is None or not partial.rows:
        return counts
    decided = decision is not None and partial.decided > 0
    return replace(
        counts,
        checked=partial.rows,
        mean_abs_diff=partial.sum_abs_diff / partial.scored if partial.scored else None,
        flips=partial.flips if decided else None,
        flip_share=partial.flips / partial.decided if decided else None,
        decision=decision,
    )


def _partial(plan: ScoringPlan, last: Member, rows: pa.Table) -> CheckPartial:
    """Served (the answering stage's) against the last stage's outputs on ``rows``."""
    outputs = {
        f.name: pc.struct_field(rows.column(last.key).combine_chunks(), f.name)
        for f in last.spec.output_fields()
    }
    score = score_field(last)
    scored, sum_abs = 0, 0.0
    if score is not None:
        x = float_values(rows.column(score).combine_chunks())
        y = float_values(outputs[score])
        both = np.isfinite(x) & np.isfinite(y)
        scored, sum_abs = int(both.sum()), float(np.abs(x[both] - y[both]).sum())
    served, would_be = _decisions(plan, last, rows, outputs)
    if served is None or would_be is None:
        return CheckPartial(rows.num_rows, scored, sum_abs)
    both_present = pc.and_(pc.is_valid(served), pc.is_valid(would_be))
    differ = pc.and_(both_present, pc.not_equal(served, would_be))
    decided = int(pc.sum(both_present.cast(pa.int64())).as_py() or 0)
    flips = int(pc.sum(differ.cast(pa.int64())).as_py() or 0)
    return CheckPartial(rows.num_rows, scored, sum_abs, decided, flips)


def _decisions(
    plan: ScoringPlan, last: Member, rows: pa.Table, outputs: Mapping[str, pa.Array]
) -> tuple[pa.Array | None, pa.Array | None]:
    """The served decision and the one the last stage's outputs would give."""
    if plan.rules is not None:
        namespace: dict[str, pa.Array] = {
            f"{key}.{f.name}": pc.struct_field(rows.column(key).combine_chunks(), f.name)
            for key in dict.fromkeys([last.key, *_rule_members(plan)])
            for f in _member(plan, key).spec.output_fields()
        }
        namespace |= dict(outputs)
        namespace[ANSWERED_BY] = pa.array([last.key] * rows.num_rows, pa.string())
        would_be = plan.rules.evaluate(namespace, num_rows=rows.num_rows)
        return rows.column(ACTION.name).combine_chunks(), would_be
    kind = last.spec.kind
    if kind == "multiclass":
        return rows.column(PREDICTED_LABEL).combine_chunks(), outputs[PREDICTED_LABEL]
    score = score_field(last)
    if kind == "regression" or score is None:
        return None, None
    return labels_from_scores(rows.column(score).combine_chunks()), labels_from_scores(
        outputs[score]
    )


def _decision_kind(plan: ScoringPlan) -> str | None:
    if plan.rules is not None:
        return "action"
    last = _member(plan, _cascade(plan).members[-1])
    return None if last.spec.kind == "regression" else "label"


def _rule_members(plan: ScoringPlan) -> list[str]:
    """Members whose outputs the rules read (``<member>.<output>``)."""
    if plan.rules is None:
        return []
    keys = {m.key for m in plan.members}
    return [k for k in dict.fromkeys(ref.split(".", 1)[0] for ref in plan.rules.refs) if k in keys]


def _member(plan: ScoringPlan, key: str) -> Member:
    return next(m for m in plan.members if m.key == key)


def _cascade(plan: ScoringPlan) -> Cascade:
    if plan.cascade is None:
        raise ValueError("the plan has no cascade")
    return plan.cascade
