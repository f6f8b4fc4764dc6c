"""Snapshots, promotion and rollback against the real SQLite registry of tests/conftest.py;
the registered challenger scores through the normal scoring path like the learner itself."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from batch_serving.embedded import load
from batch_serving.errors import PromotionGateError, RegistryError
from batch_serving.learning.checkpoint import Checkpoint
from batch_serving.learning.learner import OnlineLearner
from batch_serving.learning.promote import EXPERIMENT, PREVIOUS, Target, promote, rollback
from batch_serving.learning.settings import GatesConfig
from batch_serving.learning.snapshots import register_snapshot
from batch_serving.notebook import score_frame

FEATURES = ("a", "b", "c")
TASK = np.array([1.5, -1.0, 0.5])
YESTERDAY = np.array([1.5, -1.0, 1.2])  # the champion learned a mildly different concept
_names = itertools.count()


@pytest.fixture(autouse=True)
def _quiet_mlflow_validation(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mlflow.models.evaluation.validation")


def rows(seed: int, n: int, weights: np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ weights)))).astype(np.int64)
    return pd.DataFrame(x, columns=list(FEATURES)).assign(label=y)


def learned(frame: pd.DataFrame, parent: int | None = None) -> Checkpoint:
    learner = OnlineLearner(FEATURES)
    learner.learn(frame[list(FEATURES)].to_numpy(), frame["label"].to_numpy())
    return Checkpoint(learner, parent_version=parent)


def registered(tracking_uri: str, champion: Checkpoint, challenger: Checkpoint) -> Target:
    name = f"online{next(_names)}"
    register_snapshot(champion, name, tracking_uri, alias="champion")
    register_snapshot(challenger, name, tracking_uri, alias="challenger")
    return Target(name, tracking_uri)


def aliases(tracking_uri: str, name: str) -> dict[str, int]:
    model = MlflowClient(tracking_uri).get_registered_model(name)
    return {alias: int(v) for alias, v in model.aliases.items()}


def test_the_challenger_scores_through_the_scoring_path_as_the_learner_predicts(
    tracking_uri: str,
) -> None:
    snapshot = learned(rows(0, 3000, TASK), parent=4)
    name = f"online{next(_names)}"
    registered_snapshot = register_snapshot(
        snapshot, name, tracking_uri, online_metrics={"prequential_auc": 0.87}
    )
    features = rows(1, 500, TASK)[list(FEATURES)]
    expected = snapshot.learner.predict_proba(features.to_numpy())

    scored = score_frame(features, f"models:/{name}@challenger", tracking_uri=tracking_uri)
    assert isinstance(scored, pd.DataFrame)
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert scored["error_class"].isna().all()
    embedded = load(f"models:/{name}@challenger", tracking_uri=tracking_uri)
    np.testing.assert_allclose(embedded.predict(features), expected, rtol=0, atol=1e-12)

    version = MlflowClient(tracking_uri).get_model_version(name, str(registered_snapshot.version))
    assert version.tags["bs.labels_learned"] == "3000"
    assert version.tags["bs.parent_version"] == "4"
    assert version.tags["bs.online_prequential_auc"] == "0.87"


def test_promote_moves_champion_and_records_evidence_then_rollback_returns(
    tracking_uri: str,
) -> None:
    target = registered(
        tracking_uri, learned(rows(2, 4000, YESTERDAY)), learned(rows(3, 4000, TASK))
    )
    before = aliases(tracking_uri, target.name)
    result = promote(
        target,
        rows(4, 2000, TASK),
        FEATURES,
        GatesConfig(),
        actor="h14-test",
        data_range=("2026-11-15", "2026-11-21"),
    )
    assert result.promoted and result.report.passed
    client = MlflowClient(tracking_uri)
    after = aliases(tracking_uri, target.name)
    assert after["champion"] == before["challenger"] == result.challenger
    assert result.champion_before == before["champion"]
    assert client.get_registered_model(target.name).tags[PREVIOUS] == str(before["champion"])
    tags = client.get_model_version(target.name, str(result.challenger)).tags
    assert tags["bs.promoted_by"] == "h14-test"
    assert tags["bs.promotion_run"] == result.run_id
    assert tags["bs.promotion_data"] == "2026-11-15..2026-11-21"
    run = client.get_run(result.run_id)
    assert run.data.tags["bs.outcome"] == "promoted"
    assert run.data.metrics["challenger_roc_auc"] > run.data.metrics["champion_roc_auc"]
    assert run.data.params["rows"] == "2000"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT

    back = rollback(target, actor="h14-test")
    assert (back.rolled_back_from, back.champion) == (result.challenger, before["champion"])
    assert aliases(tracking_uri, target.name)["champion"] == before["champion"]
    assert PREVIOUS not in client.get_registered_model(target.name).tags
    assert client.get_run(back.run_id).data.tags["bs.action"] == "rollback"
    with pytest.raises(RegistryError, match=f"nothing to roll back to: {target.name}"):
        rollback(target, actor="h14-test")


def test_a_degraded_challenger_is_refused_with_exit_11_and_champion_stays(
    tracking_uri: str,
) -> None:
    shuffled = rows(6, 4000, TASK)
    shuffled["label"] = np.random.default_rng(0).permutation(shuffled["label"].to_numpy())
    target = registered(tracking_uri, learned(rows(5, 4000, TASK)), learned(shuffled))
    before = aliases(tracking_uri, target.name)
    with pytest.raises(PromotionGateError, match=r"roc_auc FAILED: challenger 0\.\d+ vs") as err:
        promote(
            target,
            rows(7, 2000, TASK),
            FEATURES,
            GatesConfig(),
            actor="h14-test",
            data_range=("2026-11-15", "2026-11-21"),
        )
    assert err.value.exit_code == 11
    assert f"promotion of {target.name} version {before['challenger']}" in str(err.value)
    assert aliases(tracking_uri, target.name) == before
    client = MlflowClient(tracking_uri)
    refused_by = client.get_model_version(target.name, str(before["challenger"])).tags
    run = client.get_run(refused_by["bs.refused_by_run"])
    assert run.data.tags["bs.outcome"] == "refused"
    assert "roc_auc" in run.data.tags["bs.failed_gates"]
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(target, actor="h14-test")
