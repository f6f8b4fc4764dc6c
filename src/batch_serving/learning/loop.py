"""Learn from matched labels, one day per batch, checkpointing after every day.

Labels are learned in one total order, (event time, entity id), and the checkpoint's
watermark is the key of the last one learned. A label at or before it is a rerun or a late
arrival: the checkpoint also keeps the keys of the labels handled within ``late_days`` behind
the watermark, so a late label is learned once (at its arrival, before that call's newer
labels) and a rerun finds its keys. Older than the horizon, a label is counted as dropped.
So re-running the loop on the same (or a grown) matched table learns each label exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from batch_serving.errors import InputValidationError, MissingColumnsError
from batch_serving.learning.checkpoint import (
    Checkpoint,
    LabelKeys,
    Watermark,
    load_checkpoint,
    save_checkpoint,
)
from batch_serving.learning.learner import OnlineLearner
from batch_serving.learning.settings import LearnerConfig

_KEY = "__bs_entity_key__"


@dataclass(frozen=True)
class Columns:
    """Which columns of the matched table hold the entity, the label and the event time."""

    entity: str
    label: str = "label"
    event_time: str = "event_time"


@dataclass(frozen=True)
class LearnReport:
    """What one call learned: counts, the days, the watermark it left in the checkpoint."""

    learned: int  # this call
    skipped: int  # this call: null features or label
    already_learned: int  # learned before (keys at or before the watermark): not again
    days: tuple[str, ...]
    total_learned: int  # over the checkpoint's life
    watermark: Watermark | None
    checkpoint: Path
    late: int = 0  # this call: behind the watermark, within the horizon, not seen: learned
    # this call: behind the watermark and older than the horizon: not learned (the checkpoint
    # no longer holds their keys: dropped if they were not learned before)
    dropped_late: int = 0


def learn_labels(
    matched: pd.DataFrame,
    checkpoint_path: Path,
    learner_cfg: LearnerConfig,
    columns: Columns,
    after_learning: Callable[[str], None] | None = None,
    *,
    late_days: int = 7,
) -> LearnReport:
    """Learn every label of ``matched`` not learned before: first the late ones (behind the
    checkpoint's watermark, within ``late_days`` of it, keys not seen) as one batch, then
    those newer than the watermark, day by day; a checkpoint after each batch.

    ``after_learning(day)`` runs after a batch (``"late"`` or the day) is learned and before
    its checkpoint is written (tests inject a crash there)."""
    _check_columns(matched, learner_cfg, columns)
    state = load_checkpoint(checkpoint_path) or Checkpoint(OnlineLearner.from_config(learner_cfg))
    rows = _ordered(matched, columns)
    new = _after(rows, state.watermark, columns)
    late, dropped = _late(rows.drop(index=new.index), state, late_days, columns)
    batches = [("late", late)] if len(late) else []
    batches += [(str(d), b) for d, b in new.groupby(new[columns.event_time].dt.date, sort=True)]
    learned = skipped = 0
    for name, batch in batches:
        usable = batch[[*learner_cfg.features, columns.label]].notna().all(axis=1)
        x = batch.loc[usable, list(learner_cfg.features)].to_numpy(dtype=np.float64)
        y = _labels(batch.loc[usable, columns.label], columns.label)
        state.learner.learn(x, y)
        if after_learning is not None:
            after_learning(name)
        _advance(state, batch, columns, skipped=int((~usable).sum()), late_days=late_days)
        state.late_learned += len(y) if name == "late" else 0
        save_checkpoint(state, checkpoint_path)
        learned += len(y)
        skipped += int((~usable).sum())
    return LearnReport(
        learned=learned,
        skipped=skipped,
        already_learned=len(rows) - len(new) - len(late) - dropped,
        days=tuple(name for name, _ in batches if name != "late"),
        total_learned=state.learned,
        watermark=state.watermark,
        checkpoint=checkpoint_path,
        late=len(late),
        dropped_late=dropped,
    )


def _check_columns(matched: pd.DataFrame, cfg: LearnerConfig, columns: Columns) -> None:
    needed = [columns.entity, columns.label, columns.event_time, *cfg.features]
    missing = [c for c in needed if c not in matched.columns]
    if missing:
        raise MissingColumnsError(missing, list(matched.columns), "the matched labels")


def _ordered(matched: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """Labels in the loop's total order; a label delivered twice (same entity and event time)
    is one label."""
    rows = matched.assign(**{_KEY: matched[columns.entity].astype(str)})
    rows[columns.event_time] = pd.to_datetime(rows[columns.event_time], utc=True)
    rows = rows.drop_duplicates([columns.event_time, _KEY], keep="first")
    return rows.sort_values([columns.event_time, _KEY], kind="stable").reset_index(drop=True)


def _after(rows: pd.DataFrame, watermark: Watermark | None, columns: Columns) -> pd.DataFrame:
    if watermark is None:
        return rows
    time, key = pd.Timestamp(watermark[0]), watermark[1]
    times = rows[columns.event_time]
    return rows[(times > time) | ((times == time) & (rows[_KEY] > key))]


def _late(
    behind: pd.DataFrame, state: Checkpoint, late_days: int, columns: Columns
) -> tuple[pd.DataFrame, int]:
    """Of the labels at or before the watermark: those to learn now (within the horizon and
    not handled before), and how many are older than the horizon."""
    if state.watermark is None or not len(behind):
        return behind, 0
    times = behind[columns.event_time]
    within = times >= pd.Timestamp(state.watermark[0]) - pd.Timedelta(days=late_days)
    if state.keys_from is not None:
        within &= times > pd.Timestamp(state.keys_from)
    seen = pd.DataFrame({"t": state.seen_keys.times, "e": state.seen_keys.entities, "seen": 1})
    found = _keys(behind, columns).merge(seen, on=["t", "e"], how="left")["seen"].notna()
    return behind[within & ~found.to_numpy()], int((~within).sum())


def _keys(rows: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """Each label's identity: t (event time in ns), e (entity id as text)."""
    ns = rows[columns.event_time].dt.as_unit("ns").astype("int64").to_numpy()
    return pd.DataFrame({"t": ns, "e": rows[_KEY].to_numpy(dtype=object)})


def _labels(values: pd.Series, column: str) -> np.ndarray:
    y = values.astype(np.int64).to_numpy() if len(values) else np.empty(0, np.int64)
    bad = sorted(set(np.unique(y).tolist()) - {0, 1})
    if bad:
        raise InputValidationError(f"label column {column!r} holds {bad[:5]}; expected 0/1")
    return y


def _advance(
    state: Checkpoint, batch: pd.DataFrame, columns: Columns, skipped: int, late_days: int
) -> None:
    """The watermark moves forward only (a late batch leaves it); the batch's keys join
    those kept, and keys older than the horizon behind the watermark are forgotten."""
    times = batch[columns.event_time]
    last: Watermark = (times.iloc[-1].to_pydatetime(), str(batch[_KEY].iloc[-1]))
    state.watermark = last if state.watermark is None else max(state.watermark, last)
    state.skipped += skipped
    first = times.iloc[0].to_pydatetime()
    state.first_event = min(state.first_event or first, first)
    state.last_event = max(state.last_event or last[0], last[0])
    floor = pd.Timestamp(state.watermark[0]) - pd.Timedelta(days=late_days)
    old = pd.DataFrame({"t": state.seen_keys.times, "e": state.seen_keys.entities})
    # disjoint: a batch holds labels after the watermark, or late ones whose keys were not kept
    keys = pd.concat([old, _keys(batch, columns)], ignore_index=True)
    keys = keys[keys["t"] >= floor.as_unit("ns").value]
    state.seen_keys = LabelKeys(keys["t"].to_numpy(np.int64), keys["e"].to_numpy(dtype=object))
