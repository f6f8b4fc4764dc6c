"""The online learner: standardise with statistics frozen at the start, then logistic
regression trained by plain SGD, one update per labelled event.

Why scikit-learn's ``SGDClassifier.partial_fit`` (``shuffle=False``, constant step) and not
river: measured on one core (bench/learning_bench.py) it learns ~5x faster than river's
``StandardScaler | LogisticRegression`` ``learn_one`` loop, and ``partial_fit`` on a batch IS
the loop of per-event updates in order (coefficients equal to 1e-14), unlike river's
``learn_many`` (one mini-batch step). So how labels are cut into batches (per day, per crash)
does not change the model. The scaler is frozen after the first batch for the same reason:
a running scaler would make the model depend on the batch boundaries.

The learner exports a plain scikit-learn ``Pipeline(StandardScaler, SGDClassifier)``: it is
registered with the sklearn flavor and scored by the existing sklearn adapter, so serving
needs no new runtime.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from batch_serving.learning.settings import LearnerConfig

CLASSES = np.array([0, 1])


@dataclass
class OnlineLearner:
    """Scaler + SGD logistic regression; ``learned`` counts every update ever made."""

    features: tuple[str, ...]
    learning_rate: float = 0.01
    alpha: float = 1e-5
    scaler: StandardScaler | None = None
    model: SGDClassifier = field(init=False)
    learned: int = 0

    def __post_init__(self) -> None:
        self.model = SGDClassifier(
            loss="log_loss",
            learning_rate="constant",
            eta0=self.learning_rate,
            alpha=self.alpha,
            shuffle=False,
            random_state=0,
        )

    @classmethod
    def from_config(cls, cfg: LearnerConfig) -> OnlineLearner:
        return cls(cfg.features, cfg.learning_rate, cfg.alpha)

    @property
    def fitted(self) -> bool:
        return self.learned > 0

    def learn(self, x: np.ndarray, y: np.ndarray) -> None:
        """One SGD update per row, in row order; the first batch also fixes the scaler."""
        if len(y) == 0:
            return
        if self.scaler is None:
            self.scaler = StandardScaler().fit(x)
        self.model.partial_fit(self.scaler.transform(x), np.asarray(y, dtype=np.int64), CLASSES)
        self.learned += len(y)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """The positive class's probability per row (0.5 before anything was learned)."""
        if not self.fitted or self.scaler is None:
            return np.full(len(x), 0.5)
        return np.asarray(self.model.predict_proba(self.scaler.transform(x))[:, 1])

    def pipeline(self) -> Pipeline:
        """A frozen copy as a plain sklearn Pipeline: what is registered and served."""
        if self.scaler is None:
            raise ValueError("the learner has learned nothing yet: no model to export")
        return Pipeline([("scale", copy.deepcopy(self.scaler)), ("sgd", copy.deepcopy(self.model))])


def prequential(
    learner: OnlineLearner | None, frozen: Any, x: np.ndarray, y: np.ndarray, chunk: int = 100
) -> np.ndarray:
    """Test-then-train scores: each chunk is scored by the model as it was before learning it
    (``learner``), or by a ``frozen`` model with ``predict_proba`` that never learns."""
    scores = np.empty(len(y))
    for start in range(0, len(y), chunk):
        part = slice(start, start + chunk)
        if learner is not None:
            scores[part] = learner.predict_proba(x[part])
            learner.learn(x[part], y[part])
        else:
            scores[part] = frozen.predict_proba(x[part])[:, 1]
    return scores
