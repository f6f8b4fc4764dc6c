"""The promotion gates on the cheap path (scores in, verdict out; no registry): a degraded
challenger is never promoted, across 200 seeds; a better one is."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest

from batch_serving.learning.gates import evaluate_gates
from batch_serving.learning.learner import OnlineLearner
from batch_serving.learning.settings import GatesConfig

FEATURES = ("a", "b", "c", "d")
TASK = np.array([1.5, -1.0, 0.8, 0.4])
OTHER_TASK = np.array([-0.4, 0.3, 1.5, -1.2])
MILDLY_DRIFTED = np.array([1.5, -1.0, 0.4, 0.8])
SEEDS = 200
TRAIN = 4_000
EVALUATE = 2_000


def labelled(rng: np.random.Generator, n: int, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    x = rng.normal(size=(n, len(FEATURES)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ weights)))).astype(np.int64)
    return x, y


def trained(x: np.ndarray, y: np.ndarray) -> OnlineLearner:
    learner = OnlineLearner(FEATURES)
    learner.learn(x, y)
    return learner


def noisy_labels(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> OnlineLearner:
    flip = rng.random(len(y)) < 0.3
    return trained(x, np.where(flip, 1 - y, y))


def shuffled_labels(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> OnlineLearner:
    return trained(x, rng.permutation(y))


def another_task(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> OnlineLearner:
    return trained(*labelled(rng, len(y), OTHER_TASK))


Degrade = Callable[[np.random.Generator, np.ndarray, np.ndarray], OnlineLearner]


@pytest.fixture(autouse=True)
def _quiet_mlflow_validation(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mlflow.models.evaluation.validation")


@pytest.mark.parametrize("degrade", [noisy_labels, shuffled_labels, another_task])
def test_a_degraded_challenger_is_never_promoted_across_200_seeds(degrade: Degrade) -> None:
    promoted, failed_gates = 0, set()
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        x, y = labelled(rng, TRAIN, TASK)
        champion = trained(x, y)
        challenger = degrade(rng, x, y)
        x_eval, y_eval = labelled(rng, EVALUATE, TASK)
        report = evaluate_gates(
            y_eval, champion.predict_proba(x_eval), challenger.predict_proba(x_eval), GatesConfig()
        )
        promoted += report.passed
        failed_gates |= {g.name for g in report.failed}
    assert promoted == 0
    assert failed_gates  # and the refusals name their gates


def test_a_better_challenger_passes_every_gate() -> None:
    passed = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        champion = trained(*labelled(rng, TRAIN, MILDLY_DRIFTED))  # yesterday's concept
        challenger = trained(*labelled(rng, TRAIN, TASK))
        x_eval, y_eval = labelled(rng, EVALUATE, TASK)
        report = evaluate_gates(
            y_eval, champion.predict_proba(x_eval), challenger.predict_proba(x_eval), GatesConfig()
        )
        passed += report.passed
    assert passed == 20


def test_each_gate_reports_its_numbers_and_threshold() -> None:
    rng = np.random.default_rng(1)
    x, y = labelled(rng, TRAIN, TASK)
    x_eval, y_eval = labelled(rng, 300, TASK)
    champion = trained(x, y).predict_proba(x_eval)
    report = evaluate_gates(y_eval, champion, 1 - champion, GatesConfig())
    failed = {g.name: g for g in report.failed}
    assert set(failed) >= {"min_rows", "roc_auc", "flip_rate"}
    assert failed["min_rows"].challenger == 300 and failed["min_rows"].threshold == 500
    auc = failed["roc_auc"]
    assert auc.champion is not None and auc.challenger == pytest.approx(1 - auc.champion)
    assert "roc_auc FAILED: challenger" in auc.describe() and "(threshold 0.001)" in auc.describe()


def test_a_switched_off_gate_is_not_checked() -> None:
    rng = np.random.default_rng(2)
    x, y = labelled(rng, TRAIN, TASK)
    scores = trained(x, y).predict_proba(x[:1000])
    cfg = GatesConfig(max_ece=None, max_score_psi=None, max_flip_rate=None)
    names = [g.name for g in evaluate_gates(y[:1000], scores, scores, cfg).gates]
    assert names == ["min_rows", "roc_auc"]
