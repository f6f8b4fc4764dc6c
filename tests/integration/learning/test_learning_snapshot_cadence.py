"""The snapshot cadence against a real registry: ``snapshot`` registers @challenger only when
the count or the time since the recorded registration is reached, says why, and a bad cadence
exits 2 naming the key."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from batch_serving.cli import main
from batch_serving.config import load_config
from batch_serving.learning.checkpoint import load_checkpoint
from batch_serving.learning.loop import Columns, learn_labels
from batch_serving.learning.run import snapshot_if_due
from batch_serving.learning.settings import load_learning_config

FEATURES = ("a", "b")
_batches = itertools.count()


def labels(n: int) -> pd.DataFrame:
    """``n`` new labels, later than every earlier batch's."""
    batch = next(_batches)
    rng = np.random.default_rng(batch)
    x = rng.normal(size=(n, 2))
    start = pd.Timestamp("2026-11-01", tz="UTC") + pd.Timedelta(days=batch)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "label": (x @ [1.0, -1.0] > 0).astype(int),
            "event_time": start + pd.to_timedelta(np.arange(n), unit="s"),
            "a": x[:, 0],
            "b": x[:, 1],
        }
    )


def files(tmp_path: Path, tracking_uri: str, snapshot: dict[str, object]) -> list[str]:
    job = {
        "job": "cadence",
        "model": {
            "name": f"cadence_{tmp_path.name}",
            "alias": "champion",
            "tracking_uri": tracking_uri,
        },
        "input": {"path": str(tmp_path / "features")},
        "entity_columns": ["customer_id"],
        "output": {"root": str(tmp_path / "out")},
    }
    learning = {
        "labels": {"path": str(tmp_path / "labels")},
        "learner": {"features": list(FEATURES)},
        "checkpoint": str(tmp_path / "learner.pkl"),
        "snapshot": snapshot,
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    (tmp_path / "learning.yaml").write_text(yaml.safe_dump(learning))
    return ["--config", str(tmp_path / "job.yaml"), "--learning", str(tmp_path / "learning.yaml")]


def test_snapshots_follow_the_count_or_time_cadence_and_say_why(
    tracking_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = files(tmp_path, tracking_uri, {"every_labels": 100, "every_minutes": 60})
    job, learning = load_config(args[1]), load_learning_config(args[3])
    ckpt, columns = Path(learning.checkpoint), Columns("customer_id")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=120)

    def at(minutes: float):  # type: ignore[no-untyped-def]
        return lambda: start + dt.timedelta(minutes=minutes)

    learn_labels(labels(60), ckpt, learning.learner, columns)
    first, due = snapshot_if_due(job, learning, now=at(0))
    assert first is not None and due.reason == "due: first snapshot, 60 labels learned"
    learn_labels(labels(60), ckpt, learning.learner, columns)
    none, due = snapshot_if_due(job, learning, now=at(10))
    assert none is None and due.reason == "not due: 60 of 100 labels, 10 of 60 minutes"
    second, due = snapshot_if_due(job, learning, now=at(90))
    assert second is not None and due.reason == "due: 60 of 100 labels, 90 of 60 minutes"
    saved = load_checkpoint(ckpt)
    assert saved is not None
    assert (saved.snapshot_version, saved.snapshot_learned) == (second.version, 120)
    assert saved.snapshot_at == start + dt.timedelta(minutes=90)  # the registration's clock
    model = MlflowClient(tracking_uri).get_registered_model(job.model.name)
    assert model.aliases == {"challenger": second.version}
    assert second.version == first.version + 1

    learn_labels(labels(10), ckpt, learning.learner, columns)
    capsys.readouterr()
    assert main(["snapshot", *args, "--json"]) == 0  # wall clock: ~30 minutes after
    record = json.loads(capsys.readouterr().out)
    assert record["snapshot"] is None
    assert record["snapshot_reason"].startswith("not due: 10 of 100 labels, 3")
    assert main(["snapshot", *args]) == 0
    assert "no snapshot of cadence_" in capsys.readouterr().out


def test_a_bad_cadence_exits_2_naming_the_key(
    tracking_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = files(tmp_path, tracking_uri, {"every_labels": 0})
    capsys.readouterr()
    assert main(["snapshot", *args]) == 2
    assert "snapshot.every_labels" in capsys.readouterr().err
