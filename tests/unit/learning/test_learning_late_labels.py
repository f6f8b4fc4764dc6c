"""Late labels: a label that arrives behind labels already learned (an old day's partition
written late) is learned exactly once within the lateness horizon, dropped and counted beyond
it; reruns learn nothing twice."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_serving.learning.checkpoint import load_checkpoint
from batch_serving.learning.learner import OnlineLearner
from batch_serving.learning.loop import Columns, learn_labels
from batch_serving.learning.settings import LearnerConfig

CFG = LearnerConfig(features=("a", "b"))
COLUMNS = Columns(entity="customer_id")
PER_DAY = 50
START = pd.Timestamp("2026-11-01", tz="UTC")


def day_labels(day: int, seed: int) -> pd.DataFrame:
    """PER_DAY labels with event times on day ``day`` (0 = START), entities unique per seed."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(PER_DAY, 2))
    seconds = np.sort(rng.integers(0, 86_400, PER_DAY))
    return pd.DataFrame(
        {
            "customer_id": seed * 1000 + np.arange(PER_DAY),
            "label": (x @ [1.5, -1.0] + rng.logistic(size=PER_DAY) > 0).astype(int),
            "event_time": START + pd.Timedelta(days=day) + pd.to_timedelta(seconds, unit="s"),
            "a": x[:, 0],
            "b": x[:, 1],
        }
    )


def learned(path: Path) -> int:
    saved = load_checkpoint(path)
    assert saved is not None
    return saved.learned


def test_an_old_partition_arriving_after_later_ones_is_learned_once(tmp_path: Path) -> None:
    path = tmp_path / "learner.pkl"
    for day in (2, 3, 4):  # the partitions of days 2..4 arrive and are learned
        learn_labels(day_labels(day, seed=day), path, CFG, COLUMNS)
    late = day_labels(1, seed=1)  # day 1's labels, written after day 4's
    report = learn_labels(late, path, CFG, COLUMNS, late_days=7)
    assert (report.learned, report.late, report.dropped_late) == (PER_DAY, PER_DAY, 0)
    assert report.already_learned == 0 and report.days == ()
    assert report.total_learned == learned(path) == 4 * PER_DAY
    saved = load_checkpoint(path)
    assert saved is not None and saved.late_learned == PER_DAY
    assert saved.watermark is not None and saved.watermark[0].day == 5  # not moved back

    again = learn_labels(late, path, CFG, COLUMNS, late_days=7)  # the same day rerun
    assert (again.learned, again.late, again.already_learned) == (0, 0, PER_DAY)
    everything = pd.concat([day_labels(d, seed=d) for d in (1, 2, 3, 4)])
    rerun = learn_labels(everything, path, CFG, COLUMNS, late_days=7)
    assert (rerun.learned, rerun.already_learned, rerun.dropped_late) == (0, 4 * PER_DAY, 0)
    assert learned(path) == 4 * PER_DAY


def test_late_labels_are_learned_before_the_newer_labels_of_the_same_call(
    tmp_path: Path,
) -> None:
    path = tmp_path / "learner.pkl"
    learn_labels(day_labels(3, seed=3), path, CFG, COLUMNS)
    late, new = day_labels(2, seed=2), day_labels(4, seed=4)
    learn_labels(pd.concat([new, late]), path, CFG, COLUMNS)

    expected = OnlineLearner(CFG.features, learning_rate=CFG.learning_rate, alpha=CFG.alpha)
    for batch in (day_labels(3, seed=3), late, new):  # arrival order: late ones first
        expected.learn(batch[["a", "b"]].to_numpy(np.float64), batch["label"].to_numpy())
    saved = load_checkpoint(path)
    assert saved is not None
    np.testing.assert_allclose(saved.learner.model.coef_, expected.model.coef_, atol=1e-12)


def test_labels_older_than_the_horizon_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "learner.pkl"
    learn_labels(day_labels(5, seed=5), path, CFG, COLUMNS, late_days=2)
    mixed = pd.concat([day_labels(4, seed=4), day_labels(1, seed=1)])  # 1 day late, 4 days late
    report = learn_labels(mixed, path, CFG, COLUMNS, late_days=2)
    assert (report.learned, report.late, report.dropped_late) == (PER_DAY, PER_DAY, PER_DAY)
    assert learned(path) == 2 * PER_DAY
    saved = load_checkpoint(path)
    assert saved is not None
    assert len(saved.seen_keys) == 2 * PER_DAY  # days 4 and 5; older keys forgotten
    assert saved.seen_keys.times.min() >= (START + pd.Timedelta(days=3)).value


def test_a_crash_while_learning_late_labels_then_a_restart_learns_them_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "learner.pkl"
    learn_labels(day_labels(3, seed=3), path, CFG, COLUMNS)

    def crash(batch: str) -> None:
        if batch == "late":
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        learn_labels(day_labels(2, seed=2), path, CFG, COLUMNS, after_learning=crash)
    assert learned(path) == PER_DAY  # the crashed batch was never checkpointed
    report = learn_labels(day_labels(2, seed=2), path, CFG, COLUMNS)
    assert (report.late, report.total_learned) == (PER_DAY, 2 * PER_DAY)


def test_a_checkpoint_written_before_keys_were_kept_relearns_nothing_behind_its_watermark(
    tmp_path: Path,
) -> None:
    path = tmp_path / "learner.pkl"
    old = pd.concat([day_labels(1, seed=1), day_labels(2, seed=2)])
    learn_labels(old, path, CFG, COLUMNS)
    saved = load_checkpoint(path)
    assert saved is not None
    for name in ("seen_keys", "keys_from", "late_learned", "snapshot_at"):
        del saved.__dict__[name]  # as the earlier format pickled it
    path.write_bytes(pickle.dumps(saved))
    report = learn_labels(old, path, CFG, COLUMNS)  # it cannot tell learned from never seen
    assert (report.learned, report.late, report.dropped_late) == (0, 0, 2 * PER_DAY)
    newer = learn_labels(day_labels(3, seed=3), path, CFG, COLUMNS)
    late = learn_labels(day_labels(1, seed=22), path, CFG, COLUMNS)  # after the upgrade
    assert (newer.learned, late.late, learned(path)) == (PER_DAY, 0, 3 * PER_DAY)
    assert late.dropped_late == PER_DAY  # at or before the old watermark: no keys kept then
