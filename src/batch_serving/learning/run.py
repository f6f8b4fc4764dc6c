"""The loop's steps as the command line runs them, from a job config and ``learning.yaml``:
``learn_days`` (match, learn), ``snapshot_if_due`` (register @challenger on the cadence),
``promote_recent`` and ``rollback_champion``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batch_serving.config import JobConfig
from batch_serving.learning.cadence import SnapshotDue, snapshot_due
from batch_serving.learning.checkpoint import load_checkpoint, save_checkpoint
from batch_serving.learning.labels import matched_labels
from batch_serving.learning.loop import Columns, LearnReport, learn_labels
from batch_serving.learning.promote import (
    PromotionResult,
    RollbackResult,
    Target,
    promote,
    rollback,
)
from batch_serving.learning.settings import LearningConfig
from batch_serving.learning.snapshots import Snapshot, register_snapshot


def target_of(job: JobConfig, learning: LearningConfig) -> Target:
    return Target(
        job.model.name,
        job.model.tracking_uri,
        job.model.registry_uri,
        learning.champion_alias,
        learning.challenger_alias,
    )


@dataclass(frozen=True)
class Learned:
    """One ``learn``: how the day's labels matched (read, matched to no prediction, without
    their feature row) and what the loop learned from the matched ones."""

    labels: int
    unmatched: int
    without_features: int
    report: LearnReport


def learn_days(job: JobConfig, learning: LearningConfig, start: dt.date, end: dt.date) -> Learned:
    """Learn the labels of start..end, matched point in time to the job's predictions and
    inputs, from the checkpoint on (labels at or before its watermark are not learned again)."""
    matched = matched_labels(job, learning.labels, learning.learner.features, start, end)
    columns = Columns(
        job.entity_columns[0], learning.labels.label_column, learning.labels.event_time_column
    )
    report = learn_labels(
        matched.rows,
        Path(learning.checkpoint),
        learning.learner,
        columns,
        late_days=learning.labels.late_days,
    )
    return Learned(matched.labels, matched.unmatched, matched.without_features, report)


def snapshot_when_due(
    job: JobConfig, learning: LearningConfig, now: Callable[[], dt.datetime] | None = None
) -> Snapshot | None:
    """The snapshot registered by ``snapshot_if_due`` (None when not due)."""
    return snapshot_if_due(job, learning, now)[0]


def snapshot_if_due(
    job: JobConfig, learning: LearningConfig, now: Callable[[], dt.datetime] | None = None
) -> tuple[Snapshot | None, SnapshotDue]:
    """Register the checkpoint's learner as ``@challenger`` if the cadence says it is due
    (``now``: the wall clock, UTC), then record the snapshot (labels, version, time) in the
    checkpoint. A crash between the two registers the same learner again on the next call:
    a duplicate version, never a lost one."""
    path = Path(learning.checkpoint)
    checkpoint = load_checkpoint(path)
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    due = snapshot_due(checkpoint, learning.snapshot, clock())
    if checkpoint is None or not due.due:
        return None, due
    snapshot = register_snapshot(
        checkpoint,
        job.model.name,
        job.model.tracking_uri,
        alias=learning.challenger_alias,
        registry_uri=job.model.registry_uri,
    )
    checkpoint.snapshot_learned, checkpoint.snapshot_version = checkpoint.learned, snapshot.version
    checkpoint.snapshot_at = clock()
    save_checkpoint(checkpoint, path)
    return snapshot, due


def promote_recent(
    job: JobConfig, learning: LearningConfig, end: dt.date, actor: str
) -> PromotionResult:
    """Champion vs challenger on the labels of the last ``evaluation_days`` days up to end,
    each label with its whole input row: the champion may read columns the learner does not."""
    start = end - dt.timedelta(days=learning.evaluation_days - 1)
    matched = matched_labels(job, learning.labels, None, start, end)
    return promote(
        target_of(job, learning),
        matched.rows,
        matched.columns,
        learning.gates,
        label_column=learning.labels.label_column,
        actor=actor,
        data_range=(start.isoformat(), end.isoformat()),
    )


def rollback_champion(job: JobConfig, learning: LearningConfig, actor: str) -> RollbackResult:
    return rollback(target_of(job, learning), actor=actor)
