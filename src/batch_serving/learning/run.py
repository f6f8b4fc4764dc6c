"""The loop's steps as the command line runs them, from a job config and ``learning.yaml``:
``learn_days`` (match, learn, snapshot), ``promote_recent`` and ``rollback_champion``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from batch_serving.config import JobConfig
from batch_serving.learning.checkpoint import load_checkpoint
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


def learn_days(
    job: JobConfig, learning: LearningConfig, start: dt.date, end: dt.date
) -> tuple[LearnReport, Snapshot | None]:
    """Learn the matched labels of start..end from the checkpoint, then register a snapshot
    as the challenger when anything new was learned."""
    matched = matched_labels(job, learning.labels, learning.learner.features, start, end)
    columns = Columns(
        job.entity_columns[0], learning.labels.label_column, learning.labels.event_time_column
    )
    path = Path(learning.checkpoint)
    report = learn_labels(matched.rows, path, learning.learner, columns)
    checkpoint = load_checkpoint(path)
    if report.learned == 0 or checkpoint is None:
        return report, None
    snapshot = register_snapshot(
        checkpoint,
        job.model.name,
        job.model.tracking_uri,
        alias=learning.challenger_alias,
        registry_uri=job.model.registry_uri,
    )
    return report, snapshot


def promote_recent(
    job: JobConfig, learning: LearningConfig, end: dt.date, actor: str
) -> PromotionResult:
    """Champion vs challenger on the labels of the last ``evaluation_days`` days up to end."""
    start = end - dt.timedelta(days=learning.evaluation_days - 1)
    features = learning.learner.features
    matched = matched_labels(job, learning.labels, features, start, end)
    return promote(
        target_of(job, learning),
        matched.rows,
        features,
        learning.gates,
        label_column=learning.labels.label_column,
        actor=actor,
        data_range=(start.isoformat(), end.isoformat()),
    )


def rollback_champion(job: JobConfig, learning: LearningConfig, actor: str) -> RollbackResult:
    return rollback(target_of(job, learning), actor=actor)
