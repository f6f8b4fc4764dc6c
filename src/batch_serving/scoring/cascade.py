"""Cascades (issue #28): each stage scores only the rows earlier stages left open.

A stage's rows are taken out of the Arrow batch, scored (with row isolation, as any served
member: a row the stage cannot score is quarantined once, naming the stage), its ``answer_if``
is evaluated on its own outputs with the rules evaluator, and its outputs are scattered back
to the batch's positions (null where the stage did not score), so rows keep their order. The
served columns are the answering stage's outputs plus ``answered_by`` (its member key).

``StageRows`` counts what each stage saw, answered and quarantined: the cost of the bigger
model is its ``seen`` count, which is what a cascade exists to cut. No pyspark here: both
engines, the stream and in-process callers share it through ``score_batch``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.config.cascade import ANSWERED_BY, CascadeConfig, Stage, check_cascade
from batch_serving.config.rules import Rule
from batch_serving.errors import ConfigError
from batch_serving.scoring.isolation import score_isolating
from batch_serving.scoring.rules import RuleSet

if TYPE_CHECKING:
    from batch_serving.config import JobConfig
    from batch_serving.scoring.plan import Member, ScoringPlan

ANSWERED_BY_FIELD = pa.field(ANSWERED_BY, pa.string())
_ANSWER, _OPEN = "answer", "open"


@dataclass(frozen=True)
class StageRows:
    """Rows one stage received, answered and quarantined (in one batch, or summed), and how
    many of its answers the last stage also scored for the check (``cascade.check_sample``)."""

    member: str
    seen: int = 0
    answered: int = 0
    quarantined: int = 0
    checked: int = 0

    def __add__(self, other: StageRows) -> StageRows:
        if other.member != self.member:
            raise ValueError(f"cannot add counts of stage {other.member!r} to {self.member!r}")
        return StageRows(
            self.member,
            self.seen + other.seen,
            self.answered + other.answered,
            self.quarantined + other.quarantined,
            self.checked + other.checked,
        )


def counted_stages(
    cascade: Cascade,
    answered_by: Iterable[pa.Array | pa.ChunkedArray],
    error_member: Iterable[pa.Array | pa.ChunkedArray] = (),
    checked: Mapping[str, int] | None = None,
) -> tuple[StageRows, ...]:
    """A run's rows per stage from its output alone: the ``answered_by`` column of the
    predictions and the ``error_member`` column of the quarantine (file by file, so a run
    reads two small columns, never the input again). A stage saw every row that no earlier
    stage answered or quarantined: its own answers and quarantines and those of later stages.
    The evidence for choosing the band: how many rows reach the expensive stage. ``checked``:
    answering stage -> its answers the last stage also scored (``cascade_check``)."""
    return stage_rows(cascade, value_counts(answered_by), value_counts(error_member), checked)


def stage_rows(
    cascade: Cascade,
    answered: Mapping[str, int],
    quarantined: Mapping[str, int],
    checked: Mapping[str, int] | None = None,
) -> tuple[StageRows, ...]:
    """``counted_stages`` from the counts by stage key (a stream sums them batch by batch)."""
    checks = checked or {}
    rows: list[StageRows] = []
    reaching = 0
    for key in reversed(cascade.members):
        reaching += answered.get(key, 0) + quarantined.get(key, 0)
        counts = (answered.get(key, 0), quarantined.get(key, 0), checks.get(key, 0))
        rows.append(StageRows(key, reaching, *counts))
    return tuple(reversed(rows))


def stage_shares(rows: Sequence[StageRows]) -> list[dict[str, Any]]:
    """Per stage, for the manifest and the run summary: rows seen, answered, quarantined, and
    the shares of the rows entering the cascade that the stage saw and answered."""
    entering = rows[0].seen if rows else 0
    return [
        {
            "member": r.member,
            "seen": r.seen,
            "answered": r.answered,
            "quarantined": r.quarantined,
            "share_seen": r.seen / entering if entering else 0.0,
            "share_answered": r.answered / entering if entering else 0.0,
        }
        for r in rows
    ]


def value_counts(arrays: Iterable[pa.Array | pa.ChunkedArray]) -> dict[str, int]:
    """Non-null string values -> how often they occur, over all ``arrays``."""
    counts: dict[str, int] = {}
    for array in arrays:
        for item in pc.value_counts(array).to_pylist():
            if item["values"] is not None:
                counts[item["values"]] = counts.get(item["values"], 0) + int(item["counts"])
    return counts


@dataclass(frozen=True)
class Cascade:
    """The checked stages in order; small, frozen and picklable (it travels in the plan).
    ``check_sample``: the share of earlier stages' answers the last stage scores too, picked
    by a hash of the ``check_by`` columns (the job's entity ids: not a stream's passthrough
    columns, which the stream's plan adds to its ids)."""

    stages: tuple[Stage, ...]
    check_sample: float = 0.0
    check_by: tuple[str, ...] = ()
    conditions: tuple[RuleSet | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.check_sample and not self.check_by:
            raise ValueError("a cascade check sample needs the entity columns to pick rows by")
        # each condition as a two-rule RuleSet: "answer" when it holds, else "open"; the rules
        # evaluator (null and NaN compare False, so a missing score stays open)
        conditions = tuple(
            None
            if stage.last
            else RuleSet(
                (Rule(_ANSWER, stage.any_of, stage.text), Rule(_OPEN, ())),
                f"{stage.where}.answer_if",
            )
            for stage in self.stages
        )
        object.__setattr__(self, "conditions", conditions)

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(stage.member for stage in self.stages)

    def describe(self) -> list[str]:
        """One line per stage, for logs, the run summary and the manifest."""
        return [
            f"cascade.stages[{i}]: {s.member} answers " + ("the rest" if s.last else f"if {s.text}")
            for i, s in enumerate(self.stages)
        ]

    def answers(self, index: int, outputs: Mapping[str, pa.Array]) -> np.ndarray:
        """Where stage ``index`` answers, given its outputs by name (the last: everywhere)."""
        condition = self.conditions[index]
        size = len(next(iter(outputs.values())))
        if condition is None:
            return np.ones(size, dtype=bool)
        key = self.stages[index].member
        names = {**outputs, **{f"{key}.{name}": array for name, array in outputs.items()}}
        decided = condition.evaluate(names, num_rows=size)
        return np.asarray(decided.to_numpy(zero_copy_only=False) == _ANSWER, dtype=bool)

    def answers_numbers(self, index: int, values: np.ndarray) -> np.ndarray:
        """``answers`` for a stage whose condition reads its one float output (every ref is
        that output), in numpy: the same semantics (a NaN compares False, ``!=`` too), a
        few microseconds for one row where Arrow compute costs ~100 (the embedded cascade)."""
        stage = self.stages[index]
        values = np.asarray(values, dtype=np.float64)
        if stage.last:
            return np.ones(len(values), dtype=bool)
        known = ~np.isnan(values)
        decided = np.zeros(len(values), dtype=bool)
        for term in stage.any_of:
            hit = known.copy()
            for c in term:
                hit &= _NUMPY_OPS[c.op](values, c.value)
            decided |= hit
        return decided

    def answers_number(self, index: int, value: float) -> bool:
        """``answers_numbers`` for one value, in plain Python: the same semantics (a NaN
        compares False, ``!=`` too; a literal compares as numpy compares it, as a float64)
        in under a microsecond, where numpy's per-call overhead is ~15 (one embedded row)."""
        stage = self.stages[index]
        if stage.last:
            return True
        if value != value:  # NaN
            return False
        return any(
            all(_PYTHON_OPS[c.op](value, float(c.value)) for c in term) for term in stage.any_of
        )


_PYTHON_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}

_NUMPY_OPS: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    ">=": np.greater_equal,
    ">": np.greater,
    "<=": np.less_equal,
    "<": np.less,
    "==": np.equal,
    "!=": np.not_equal,
}


def from_config(cfg: JobConfig) -> Cascade | None:
    """The job's ``cascade:`` as a ``Cascade`` (None without one)."""
    config: CascadeConfig | None = cfg.cascade
    if config is None:
        return None
    roles = {"champion": "champion"} | {k: m.role for k, m in cfg.members.items()}
    inputs = {k: m.inputs for k, m in cfg.members.items()}
    stages = check_cascade(
        config,
        roles,
        inputs,
        ensemble=cfg.ensemble is not None,
        score_column=cfg.output.score_column,
    )
    return Cascade(stages, config.check_sample, tuple(cfg.entity_columns))


def check_cascade_plan(plan: ScoringPlan, cascade: Cascade) -> None:
    """What config load cannot know: every stage outputs the same columns (the served ones),
    and each condition reads outputs its stage has, with the literal's kind. ConfigError
    naming the stage."""
    by_key = {m.key: m for m in plan.members}
    first = by_key[cascade.stages[0].member]
    served = first.spec.output_fields()
    for stage, condition in zip(cascade.stages, cascade.conditions, strict=True):
        member = by_key[stage.member]
        fields = member.spec.output_fields()
        if fields != served:
            raise ConfigError(
                f"{stage.where}: stage {stage.member!r} ({member.ref.uri}) outputs "
                f"{_shown(fields)}, but stage {first.key!r} outputs {_shown(served)}; every "
                "stage of a cascade must output the same columns (they are served)"
            )
        if condition is not None:
            types = {f.name: f.type for f in fields}
            types |= {f"{stage.member}.{name}": t for name, t in list(types.items())}
            condition.check_refs(types)


def _shown(fields: Sequence[pa.Field]) -> str:
    return "[" + ", ".join(f"{f.name}: {f.type}" for f in fields) + "]"


class RejectedRows(Protocol):
    """The part of ``scoring.members.Rejected`` a stage uses (quarantined rows, by stage)."""

    def add(
        self, rows: np.ndarray, classes: list[str], messages: list[Any], member: str | None
    ) -> None: ...


Inputs = Callable[["Member", pa.RecordBatch, dict[str, list[pa.Array]]], pa.RecordBatch]


@dataclass(frozen=True)
class Checked:
    """The last stage's outputs on the sampled rows earlier stages answered (positions in
    the batch after the stages): written into its struct once everything served is final."""

    rows: np.ndarray
    outputs: list[pa.Array]


@dataclass
class Cascaded:
    """The batch after the stages: rows still alive, the members' outputs on them, the
    served columns (answering stage's outputs, then ``answered_by``), each stage's rows and
    the check (None without ``check_sample`` or sampled rows)."""

    alive: np.ndarray
    view: pa.RecordBatch
    outputs: dict[str, list[pa.Array]]
    served: list[pa.Array]
    rows: tuple[StageRows, ...]
    checked: Checked | None = None


def score_stages(
    cascade: Cascade,
    members: Mapping[str, tuple[Member, Any]],
    alive: np.ndarray,
    view: pa.RecordBatch,
    outputs: dict[str, list[pa.Array]],
    rejected: RejectedRows,
    inputs: Inputs,
) -> Cascaded:
    """Score the stages in order, each on the rows still open; ``members``: key -> (member,
    loaded model); ``alive``/``view``/``outputs``: the batch after the other members."""
    answered_by = np.full(view.num_rows, -1, dtype=np.int64)
    counts = []
    for index, stage in enumerate(cascade.stages):
        member, model = members[stage.member]
        rows = np.flatnonzero(answered_by < 0)
        features = inputs(member, view, outputs)
        taken = pa.array(rows, pa.int64())
        iso = score_isolating(member.spec, model, features.take(taken))
        if len(iso.bad_rows):
            bad = rows[iso.bad_rows]
            rejected.add(alive[bad], iso.error_class, iso.error_message, member.key)
            keep_mask = np.ones(view.num_rows, dtype=bool)
            keep_mask[bad] = False
            keep = np.flatnonzero(keep_mask)
            position = np.cumsum(keep_mask) - 1  # old position -> new position of kept rows
            alive, view, answered_by = alive[keep], view.take(pa.array(keep)), answered_by[keep]
            outputs = {k: [a.take(pa.array(keep)) for a in arrays] for k, arrays in outputs.items()}
            rows = position[rows[iso.good_rows]]
        else:
            rows = rows[iso.good_rows]
        names = [f.name for f in member.spec.output_fields()]
        decided = cascade.answers(index, dict(zip(names, iso.outputs, strict=True)))
        answered_by[rows[decided]] = index
        outputs[member.key] = [_scatter(a, rows, view.num_rows) for a in iso.outputs]
        counts.append(StageRows(member.key, len(taken), int(decided.sum()), len(iso.bad_rows)))
    served = _served(cascade, outputs, answered_by)
    checked = _check(cascade, members, view, outputs, answered_by, inputs)
    if checked is not None:
        per_stage = np.bincount(answered_by[checked.rows], minlength=len(counts))
        counts = [replace(c, checked=int(n)) for c, n in zip(counts, per_stage, strict=True)]
    return Cascaded(alive, view, outputs, served, tuple(counts), checked)


def _check(
    cascade: Cascade,
    members: Mapping[str, tuple[Member, Any]],
    view: pa.RecordBatch,
    outputs: dict[str, list[pa.Array]],
    answered_by: np.ndarray,
    inputs: Inputs,
) -> Checked | None:
    """The last stage scores the sampled rows an earlier stage answered, like a shadow: a
    row it cannot score is left out of the check, never quarantined."""
    last = len(cascade.stages) - 1
    early = np.flatnonzero(answered_by < last)
    if not cascade.check_sample or not len(early):
        return None
    taken = pa.array(early, pa.int64())
    ids = [view.column(name).take(taken) for name in cascade.check_by]
    rows = early[in_check_sample(ids, cascade.check_sample)]
    if not len(rows):
        return None
    member, model = members[cascade.stages[last].member]
    features = inputs(member, view, outputs).take(pa.array(rows, pa.int64()))
    iso = score_isolating(member.spec, model, features)
    return Checked(rows[iso.good_rows], iso.outputs)


def in_check_sample(ids: Sequence[pa.Array | pa.ChunkedArray], fraction: float) -> np.ndarray:
    """Which rows (by their entity ids) fall in a ``fraction`` sample: a 64-bit hash of the
    ids (pandas' ``hash_pandas_object``: SipHash with a fixed key, the same in every process
    and run) below ``fraction`` of its range. Deterministic by row, so reruns and the other
    engine check the same rows."""
    size = len(ids[0]) if ids else 0
    if fraction <= 0 or not size:
        return np.zeros(size, dtype=bool)
    import pandas as pd  # only a run with a check sample pays for the import

    # integers as int64: an id read as int32 in one place and int64 in another hashes alike
    wide = [pc.cast(a, pa.int64()) if pa.types.is_integer(a.type) else a for a in ids]
    frame = pd.DataFrame({str(i): a.to_pandas() for i, a in enumerate(wide)})
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)
    return np.asarray((hashed >> np.uint64(11)) * 2.0**-53 < fraction, dtype=bool)


def with_checked(arrays: Sequence[pa.Array], checked: Checked) -> list[pa.Array]:
    """The last stage's output arrays with the check's outputs at the checked rows (null
    there before: the stage did not answer them)."""
    if not len(checked.rows):
        return list(arrays)
    size = len(arrays[0])
    index = np.arange(size, dtype=np.int64)
    index[checked.rows] = size + np.arange(len(checked.rows))
    taken = pa.array(index, pa.int64())
    return [
        pa.concat_arrays([a, b.cast(a.type)]).take(taken)
        for a, b in zip(arrays, checked.outputs, strict=False)
    ] + list(arrays[len(checked.outputs) :])


def _scatter(array: pa.Array, rows: np.ndarray, size: int) -> pa.Array:
    """``array`` (one value per ``rows``) at those positions of a ``size``-long array, null
    elsewhere: the stage's outputs in the batch's row order."""
    if len(rows) == size:
        return array
    index = np.full(size, -1, dtype=np.int64)
    index[rows] = np.arange(len(rows))
    return array.take(pa.array(index, mask=index < 0))


def _served(
    cascade: Cascade, outputs: Mapping[str, list[pa.Array]], answered_by: np.ndarray
) -> list[pa.Array]:
    """Each served column from the answering stage (a take over the stages' columns side by
    side, so any output type works), then ``answered_by``."""
    size = len(answered_by)
    if size and int(answered_by.min()) < 0:
        raise AssertionError("a cascade left rows unanswered: the last stage answers the rest")
    index = pa.array(answered_by * size + np.arange(size), pa.int64())
    width = len(outputs[cascade.stages[0].member])
    served = [
        pa.concat_arrays([outputs[key][j] for key in cascade.members]).take(index)
        for j in range(width)
    ]
    keys = pa.array(list(cascade.members), pa.string())
    return [*served, keys.take(pa.array(answered_by, pa.int64()))]
