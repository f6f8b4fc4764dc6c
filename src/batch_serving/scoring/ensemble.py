"""Ensembles: one score per row from several members' scores (issue #11).

A job scores every member in one pass; the ensemble then combines the members' score columns,
vectorized with numpy, into one float64 column. Config such as
``ensemble: {members: [champion, tenure_adj], method: weighted_mean, weights: [0.7, 0.3]}``
is checked once by ``make_ensemble`` on the driver, so a typo fails the run before any scoring
with a ``ConfigError`` naming the key; ``Ensemble`` itself is small, frozen and picklable.

Missing scores: a row whose score is null or NaN in ANY member gets a null ensemble score,
whatever the method. A partial combination would silently change the meaning of the score
(a mean of one member is not the ensemble), so the row is reported as unscored instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch_serving.config.ensemble import Method, checked_ensemble
from batch_serving.config.members import EnsembleConfig


def float_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric Arrow array as float64 numpy, nulls as NaN (one mask convention for numpy)."""
    values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class Ensemble:
    """Members' keys in score order, how they combine, and the method's parameters.

    ``weights`` (weighted_mean only) are kept as configured and normalized by their sum when
    combining, so ``[7, 3]`` and ``[0.7, 0.3]`` mean the same. ``threshold`` (vote only): a member
    votes positive when its score >= threshold; the ensemble score is the fraction voting positive.
    """

    members: tuple[str, ...]
    method: Method
    weights: tuple[float, ...] | None = None
    threshold: float = 0.5

    def combine(self, scores: Sequence[pa.Array]) -> pa.Array:
        """The ensemble score (float64) of each row from the members' scores, in member order.

        Null where any member's score is null or NaN (see the module docstring), and where the
        arithmetic itself gives NaN (e.g. +inf and -inf averaged).
        """
        if len(scores) != len(self.members):
            raise ValueError(
                f"{self.describe()} needs {len(self.members)} score arrays "
                f"({', '.join(self.members)}), got {len(scores)}"
            )
        lengths = {key: len(s) for key, s in zip(self.members, scores, strict=True)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"member score arrays differ in length: {lengths}")
        matrix = np.vstack([float_values(s) for s in scores])  # one row per member
        missing = np.isnan(matrix).any(axis=0)
        with np.errstate(invalid="ignore"):
            combined = self._reduce(matrix)
        return pa.array(combined, type=pa.float64(), mask=missing | np.isnan(combined))

    def _reduce(self, matrix: np.ndarray) -> np.ndarray:
        if self.method == "mean":
            return np.asarray(matrix.mean(axis=0))
        if self.method == "weighted_mean":
            weights = np.asarray(self.weights, dtype=np.float64)
            return np.asarray((weights / weights.sum()) @ matrix)
        if self.method == "vote":
            return np.asarray((matrix >= self.threshold).mean(axis=0))
        return np.asarray(matrix.max(axis=0))

    def describe(self) -> str:
        """One line for logs and the run summary, e.g. ``weighted_mean of a (0.7), b (0.3)``."""
        if self.method == "weighted_mean" and self.weights is not None:
            parts = [f"{m} ({w:g})" for m, w in zip(self.members, self.weights, strict=True)]
            return f"weighted_mean of {', '.join(parts)}"
        text = f"{self.method} of {', '.join(self.members)}"
        if self.method == "vote":
            text += f" (votes positive when score >= {self.threshold:g})"
        return text


def make_ensemble(
    members: Sequence[str],
    method: str,
    weights: Sequence[float] | None = None,
    threshold: float = 0.5,
    where: str = "ensemble",
) -> Ensemble:
    """A validated ``Ensemble``; every problem is a ``ConfigError`` naming ``<where>.<key>``
    (the checks live in the config layer, which runs them at config load)."""
    keys, checked_method, checked, limit = checked_ensemble(
        members, method, weights, threshold, where
    )
    return Ensemble(keys, cast(Method, checked_method), checked, limit)


def from_config(config: EnsembleConfig | None) -> Ensemble | None:
    """The job's ``ensemble:`` section as an ``Ensemble`` (None when there is none)."""
    if config is None:
        return None
    return make_ensemble(config.members, config.method, config.weights, config.threshold)
