"""Learn from matched labels, one day per batch, checkpointing after every day.

Labels are learned in one total order, (event time, entity id), and the checkpoint's
watermark is the key of the last one learned; a restart skips every label at or before it.
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
    already_learned: int  # at or before the checkpoint's watermark: not learned again
    days: tuple[str, ...]
    total_learned: int  # over the checkpoint's life
    watermark: Watermark | None
    checkpoint: Path


def learn_labels(
    matched: pd.DataFrame,
    checkpoint_path: Path,
    learner_cfg: LearnerConfig,
    columns: Columns,
    after_learning: Callable[[str], None] | None = None,
) -> LearnReport:
    """Learn every label of ``matched`` newer than the checkpoint's watermark, day by day.

    ``after_learning(day)`` runs after a day is learned and before its checkpoint is written
    (tests inject a crash there)."""
    _check_columns(matched, learner_cfg, columns)
    state = load_checkpoint(checkpoint_path) or Checkpoint(OnlineLearner.from_config(learner_cfg))
    rows = _ordered(matched, columns)
    new = _after(rows, state.watermark, columns)
    learned = skipped = 0
    days: list[str] = []
    for day, batch in new.groupby(new[columns.event_time].dt.date, sort=True):
        usable = batch[[*learner_cfg.features, columns.label]].notna().all(axis=1)
        x = batch.loc[usable, list(learner_cfg.features)].to_numpy(dtype=np.float64)
        y = _labels(batch.loc[usable, columns.label], columns.label)
        state.learner.learn(x, y)
        if after_learning is not None:
            after_learning(str(day))
        _advance(state, batch, columns, skipped=int((~usable).sum()))
        save_checkpoint(state, checkpoint_path)
        learned += len(y)
        skipped += int((~usable).sum())
        days.append(str(day))
    return LearnReport(
        learned=learned,
        skipped=skipped,
        already_learned=len(rows) - len(new),
        days=tuple(days),
        total_learned=state.learned,
        watermark=state.watermark,
        checkpoint=checkpoint_path,
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


def _labels(values: pd.Series, column: str) -> np.ndarray:
    y = values.astype(np.int64).to_numpy() if len(values) else np.empty(0, np.int64)
    bad = sorted(set(np.unique(y).tolist()) - {0, 1})
    if bad:
        raise InputValidationError(f"label column {column!r} holds {bad[:5]}; expected 0/1")
    return y


def _advance(state: Checkpoint, batch: pd.DataFrame, columns: Columns, skipped: int) -> None:
    last = batch.iloc[-1]
    time = last[columns.event_time].to_pydatetime()
    state.watermark = (time, str(last[_KEY]))
    state.skipped += skipped
    first = batch[columns.event_time].iloc[0].to_pydatetime()
    state.first_event = state.first_event or first
    state.last_event = time
