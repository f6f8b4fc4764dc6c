"""When a learner snapshot is due: the cadence of ``learning.yaml`` (``snapshot:``) read
against what the checkpoint recorded at the last registration (labels learned by then, the
wall clock of the registration). Pure: the clock is an argument, so tests choose the time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from batch_serving.learning.checkpoint import Checkpoint
from batch_serving.learning.settings import SnapshotConfig


@dataclass(frozen=True)
class SnapshotDue:
    """Whether to register now, and why (said by ``learn`` and ``snapshot``)."""

    due: bool
    reason: str  # e.g. "not due: 1,200 of 5,000 labels, 12 of 60 minutes"
    since_labels: int  # labels learned since the last snapshot


def snapshot_due(
    checkpoint: Checkpoint | None, cadence: SnapshotConfig, now: dt.datetime
) -> SnapshotDue:
    """Due when something was learned since the last snapshot and, if a cadence is set,
    either of its limits is reached. The first snapshot is due as soon as anything is learned:
    no challenger exists yet to wait with."""
    if checkpoint is None:
        return SnapshotDue(False, "not due: no checkpoint yet, nothing learned", 0)
    since = checkpoint.learned - checkpoint.snapshot_learned
    if since <= 0:
        return SnapshotDue(False, "not due: nothing learned since the last snapshot", 0)
    if checkpoint.snapshot_version is None:
        return SnapshotDue(True, f"due: first snapshot, {since:,} labels learned", since)
    if cadence.every_labels is None and cadence.every_minutes is None:
        return SnapshotDue(True, f"due: {since:,} labels learned since the last snapshot", since)
    reached, progress = False, []
    if cadence.every_labels is not None:
        reached |= since >= cadence.every_labels
        progress.append(f"{since:,} of {cadence.every_labels:,} labels")
    if cadence.every_minutes is not None:
        minutes = _minutes_since(checkpoint.snapshot_at, now)
        reached |= minutes >= cadence.every_minutes
        shown = "unknown" if minutes == float("inf") else f"{minutes:,.0f}"
        progress.append(f"{shown} of {cadence.every_minutes:,g} minutes")
    return SnapshotDue(reached, f"{'due' if reached else 'not due'}: {', '.join(progress)}", since)


def _minutes_since(registered: dt.datetime | None, now: dt.datetime) -> float:
    """Minutes since the last registration; a checkpoint that did not record its time (written
    before the cadence existed) counts as long ago."""
    if registered is None:
        return float("inf")
    return (now - registered).total_seconds() / 60
