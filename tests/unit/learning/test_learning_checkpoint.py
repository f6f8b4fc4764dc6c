"""Learning by day from a checkpoint: a crash loses nothing learned and learns nothing twice."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_serving.errors import InputValidationError, StorageError
from batch_serving.learning import checkpoint as checkpoint_module
from batch_serving.learning.checkpoint import load_checkpoint
from batch_serving.learning.loop import Columns, learn_labels
from batch_serving.learning.settings import LearnerConfig

CFG = LearnerConfig(features=("a", "b", "c"))
COLUMNS = Columns(entity="customer_id")
DAYS = 5
PER_DAY = 400


def matched(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = DAYS * PER_DAY
    x = rng.normal(size=(n, 3))
    start = pd.Timestamp("2026-11-01", tz="UTC")
    seconds = np.sort(rng.integers(0, DAYS * 86_400, n))
    return pd.DataFrame(
        {
            "customer_id": rng.permutation(n),
            "label": (x @ [1.5, -1.0, 0.5] + rng.logistic(size=n) > 0).astype(int),
            "event_time": start + pd.to_timedelta(seconds, unit="s"),
            "a": x[:, 0],
            "b": x[:, 1],
            "c": x[:, 2],
        }
    )


class Crash(RuntimeError):
    pass


def crash_on(day: str):  # type: ignore[no-untyped-def]
    def hook(learned_day: str) -> None:
        if learned_day == day:
            raise Crash(day)

    return hook


def test_a_crash_mid_learning_then_a_restart_learns_every_label_exactly_once(
    tmp_path: Path,
) -> None:
    rows = matched()
    days = sorted({str(t.date()) for t in rows["event_time"]})
    path = tmp_path / "ckpt" / "learner.pkl"
    with pytest.raises(Crash):
        learn_labels(rows, path, CFG, COLUMNS, after_learning=crash_on(days[2]))
    saved = load_checkpoint(path)
    assert saved is not None
    before_crash = int((rows["event_time"].dt.date.astype(str) < days[2]).sum())
    assert saved.learned == before_crash  # the crashed day was never checkpointed

    report = learn_labels(rows, path, CFG, COLUMNS)
    assert report.already_learned == before_crash
    assert report.learned == len(rows) - before_crash
    assert report.total_learned == len(rows)  # none twice, none lost
    assert report.days == tuple(days[2:])

    uninterrupted = learn_labels(rows, tmp_path / "other.pkl", CFG, COLUMNS)
    assert uninterrupted.total_learned == len(rows)
    resumed, straight = load_checkpoint(path), load_checkpoint(tmp_path / "other.pkl")
    assert resumed is not None and straight is not None
    np.testing.assert_allclose(
        resumed.learner.model.coef_, straight.learner.model.coef_, rtol=0, atol=1e-12
    )

    again = learn_labels(rows, path, CFG, COLUMNS)  # same labels delivered again
    assert (again.learned, again.already_learned, again.total_learned) == (0, len(rows), len(rows))


def test_new_labels_after_the_watermark_are_learned_and_duplicates_once(tmp_path: Path) -> None:
    rows = matched()
    path = tmp_path / "learner.pkl"
    first, later = rows.iloc[: 3 * PER_DAY], rows.iloc[3 * PER_DAY :]
    learn_labels(first, path, CFG, COLUMNS)
    report = learn_labels(pd.concat([rows, later]), path, CFG, COLUMNS)  # later sent twice
    assert report.learned == len(later)
    assert report.total_learned == len(rows)


def test_rows_with_a_null_feature_are_counted_as_skipped_not_learned(tmp_path: Path) -> None:
    rows = matched()
    rows.loc[[5, 17, 900], "b"] = np.nan
    report = learn_labels(rows, tmp_path / "learner.pkl", CFG, COLUMNS)
    assert (report.learned, report.skipped) == (len(rows) - 3, 3)
    saved = load_checkpoint(tmp_path / "learner.pkl")
    assert saved is not None and saved.skipped == 3


def test_a_torn_checkpoint_write_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = matched()
    path = tmp_path / "learner.pkl"
    learn_labels(rows.iloc[:PER_DAY], path, CFG, COLUMNS)
    before = path.read_bytes()

    def torn(obj: object, out: object, protocol: int) -> None:
        out.write(b"\x80\x05partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.pickle, "dump", torn)
    with pytest.raises(OSError, match="disk full"):
        learn_labels(rows, path, CFG, COLUMNS)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["learner.pkl"]  # no temp file left


def test_a_label_that_is_not_0_or_1_is_refused_naming_the_column(tmp_path: Path) -> None:
    rows = matched()
    rows.loc[3, "label"] = 7
    with pytest.raises(InputValidationError, match=r"'label' holds \[7\]"):
        learn_labels(rows, tmp_path / "learner.pkl", CFG, COLUMNS)


def test_a_file_that_is_not_a_checkpoint_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "learner.pkl"
    path.write_bytes(pickle.dumps({"not": "a checkpoint"}))
    with pytest.raises(StorageError, match="not a learner checkpoint"):
        learn_labels(matched(), path, CFG, COLUMNS)
