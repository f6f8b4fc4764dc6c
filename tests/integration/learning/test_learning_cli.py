"""``batch-serving rollback`` after a promotion, and with nothing to roll back to (exit 3)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from test_learning_promote import FEATURES, TASK, YESTERDAY, learned, registered, rows

from batch_serving.cli import main
from batch_serving.learning.promote import Target, promote
from batch_serving.learning.settings import GatesConfig


@pytest.fixture(autouse=True)
def _quiet_mlflow_validation(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mlflow.models.evaluation.validation")


def config_files(tmp_path: Path, target: Target) -> list[str]:
    job = {
        "job": "online",
        "model": {"name": target.name, "alias": "champion", "tracking_uri": target.tracking_uri},
        "input": {"path": str(tmp_path / "features")},
        "entity_columns": ["customer_id"],
        "output": {"root": str(tmp_path / "out")},
    }
    learning = {
        "labels": {"path": str(tmp_path / "labels")},
        "learner": {"features": list(FEATURES)},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    (tmp_path / "learning.yaml").write_text(yaml.safe_dump(learning))
    return ["--config", str(tmp_path / "job.yaml"), "--learning", str(tmp_path / "learning.yaml")]


def test_rollback_command_returns_champion_then_refuses_with_exit_3(
    tracking_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = registered(
        tracking_uri, learned(rows(12, 4000, YESTERDAY)), learned(rows(13, 4000, TASK))
    )
    result = promote(
        target, rows(14, 2000, TASK), FEATURES, GatesConfig(), actor="t", data_range=("a", "b")
    )
    args = config_files(tmp_path, target)
    capsys.readouterr()

    assert main(["rollback", *args, "--actor", "oncall", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["rolled_back_from"], record["champion"]) == (
        result.challenger,
        result.champion_before,
    )
    champion = MlflowClient(tracking_uri).get_model_version_by_alias(target.name, "champion")
    assert int(champion.version) == result.champion_before
    assert champion.tags["bs.rolled_back_by"] == "oncall"

    assert main(["rollback", *args]) == 3
    assert "nothing to roll back to" in capsys.readouterr().err
    assert np.isfinite(result.report.challenger_metrics["roc_auc"])
