"""Snapshot cadence: a snapshot is due when labels were learned since the last one and the
configured count or time (either) is reached; each answer says why."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import yaml

from batch_serving.errors import ConfigError
from batch_serving.learning.cadence import snapshot_due
from batch_serving.learning.checkpoint import Checkpoint
from batch_serving.learning.learner import OnlineLearner
from batch_serving.learning.settings import SnapshotConfig, load_learning_config

REGISTERED = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)


def checkpoint(learned: int, at_last_snapshot: int, version: int | None = 3) -> Checkpoint:
    """A checkpoint that learned ``learned`` labels, ``at_last_snapshot`` of them when the
    last snapshot (``version``, registered at REGISTERED) was taken."""
    state = Checkpoint(OnlineLearner(("a",)))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(learned, 1))
    state.learner.learn(x, (x[:, 0] > 0).astype(np.int64))
    state.snapshot_learned, state.snapshot_version = at_last_snapshot, version
    state.snapshot_at = None if version is None else REGISTERED
    return state


def minutes(n: float) -> dt.datetime:
    return REGISTERED + dt.timedelta(minutes=n)


def test_by_count_due_once_enough_labels_were_learned_since_the_last_snapshot() -> None:
    cadence = SnapshotConfig(every_labels=5000)
    short = snapshot_due(checkpoint(7200, 6000), cadence, minutes(600))
    assert (short.due, short.reason) == (False, "not due: 1,200 of 5,000 labels")
    enough = snapshot_due(checkpoint(11_000, 6000), cadence, minutes(1))
    assert (enough.due, enough.reason, enough.since_labels) == (
        True,
        "due: 5,000 of 5,000 labels",
        5000,
    )


def test_by_time_due_once_the_minutes_since_the_registration_passed() -> None:
    cadence = SnapshotConfig(every_minutes=60)
    early = snapshot_due(checkpoint(7200, 6000), cadence, minutes(12))
    assert (early.due, early.reason) == (False, "not due: 12 of 60 minutes")
    late = snapshot_due(checkpoint(7200, 6000), cadence, minutes(61))
    assert (late.due, late.reason) == (True, "due: 61 of 60 minutes")
    nothing = snapshot_due(checkpoint(6000, 6000), cadence, minutes(600))  # nothing new
    assert (nothing.due, nothing.reason) == (
        False,
        "not due: nothing learned since the last snapshot",
    )


def test_with_both_either_limit_makes_it_due_and_the_reason_names_both() -> None:
    cadence = SnapshotConfig(every_labels=5000, every_minutes=60)
    neither = snapshot_due(checkpoint(7200, 6000), cadence, minutes(12))
    assert (neither.due, neither.reason) == (
        False,
        "not due: 1,200 of 5,000 labels, 12 of 60 minutes",
    )
    by_time = snapshot_due(checkpoint(7200, 6000), cadence, minutes(90))
    assert (by_time.due, by_time.reason) == (True, "due: 1,200 of 5,000 labels, 90 of 60 minutes")
    by_count = snapshot_due(checkpoint(12_000, 6000), cadence, minutes(5))
    assert (by_count.due, by_count.reason) == (True, "due: 6,000 of 5,000 labels, 5 of 60 minutes")


def test_the_default_and_the_first_snapshot_are_due_when_anything_was_learned() -> None:
    default = snapshot_due(checkpoint(7, 6), SnapshotConfig(), minutes(0))
    assert (default.due, default.reason) == (True, "due: 1 labels learned since the last snapshot")
    first = snapshot_due(
        checkpoint(10, 0, version=None), SnapshotConfig(every_labels=5000), REGISTERED
    )
    assert (first.due, first.reason) == (True, "due: first snapshot, 10 labels learned")
    none = snapshot_due(None, SnapshotConfig(every_labels=1), REGISTERED)
    assert not none.due and "no checkpoint" in none.reason


def test_a_checkpoint_without_a_registration_time_is_due_by_time() -> None:
    state = checkpoint(7200, 6000)
    state.snapshot_at = None  # registered before the time was recorded
    due = snapshot_due(state, SnapshotConfig(every_minutes=60), REGISTERED)
    assert (due.due, due.reason) == (True, "due: unknown of 60 minutes")


@pytest.mark.parametrize(
    ("snapshot", "key"),
    [
        ({"every_labels": 0}, "snapshot.every_labels"),
        ({"every_minutes": -5}, "snapshot.every_minutes"),
        ({"every_hours": 1}, "snapshot.every_hours"),
    ],
)
def test_a_bad_cadence_is_a_config_error_naming_the_key(
    tmp_path: Path, snapshot: dict[str, int], key: str
) -> None:
    path = tmp_path / "learning.yaml"
    learning = {"labels": {"path": "labels"}, "learner": {"features": ["a"]}, "snapshot": snapshot}
    path.write_text(yaml.safe_dump(learning))
    with pytest.raises(ConfigError, match=rf"learning.yaml: {key}:"):
        load_learning_config(path)


def test_a_negative_lateness_horizon_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "learning.yaml"
    labels = {"path": "labels", "late_days": -1}
    path.write_text(yaml.safe_dump({"labels": labels, "learner": {"features": ["a"]}}))
    with pytest.raises(ConfigError, match=r"labels.late_days:"):
        load_learning_config(path)
