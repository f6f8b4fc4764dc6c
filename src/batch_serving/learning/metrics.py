"""The numbers the gates and the learner's own report are made of, on plain numpy arrays.

Scores are positive-class probabilities in [0, 1]; labels are 0/1.
"""

from __future__ import annotations

import numpy as np

from batch_serving.monitoring.drift import psi

_EPS = 1e-15
_BINS = 10


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (rank formulation, ties averaged); NaN with one class only."""
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=bool)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean binary cross-entropy, scores clipped away from 0 and 1."""
    p = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean((np.asarray(scores, dtype=np.float64) - labels) ** 2))


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray) -> float:
    """ECE over 10 equal-width score bins: the row-weighted gap between mean score and the
    observed positive rate of each bin."""
    p = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    bins = np.minimum((p * _BINS).astype(np.int64), _BINS - 1)
    score_sums = np.bincount(bins, weights=p, minlength=_BINS)
    label_sums = np.bincount(bins, weights=y, minlength=_BINS)
    return float(np.abs(score_sums - label_sums).sum() / max(p.size, 1))


def score_psi(current: np.ndarray, reference: np.ndarray) -> float:
    """PSI of two score samples over 10 equal-width bins of [0, 1] (``monitoring.drift.psi``)."""
    edges = np.linspace(0.0, 1.0, _BINS + 1)
    a, _ = np.histogram(np.clip(current, 0, 1), bins=edges)
    b, _ = np.histogram(np.clip(reference, 0, 1), bins=edges)
    return psi(a, b)


def flip_rate(current: np.ndarray, reference: np.ndarray, threshold: float) -> float:
    """Share of rows whose action (score >= threshold) differs between the two models."""
    if current.size == 0:
        return 0.0
    return float(np.mean((current >= threshold) != (reference >= threshold)))
