"""A fraud example where only windowed features reveal the fraud.

Card transactions: each card buys at its own few merchants about once an hour; a
compromised card has one *burst*, 6-12 purchases within 8 minutes at merchants it never uses.
A burst's amounts are drawn like any other, so a transaction on its own (its amount) says
nothing; the card's recent history (how many purchases in the last 10 minutes, at how many
distinct merchants) says everything. The model is trained on a point-in-time-correct training
set (``offline.training_set``: the same features the stream would score with) over the first
70% of the time, and evaluated on the last 30%, with and without the windowed features.

    python -m batch_serving.features.fraud_example   # prints both AUCs
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from batch_serving.config.windows import WindowsConfig
from batch_serving.features.offline import training_set
from batch_serving.features.spec import WindowSpec

START = pd.Timestamp("2026-11-20 00:00:00")
WINDOWS = {
    "entity": "card_id",
    "event_time": "ts",
    "watermark": "2m",
    "ttl": "2d",
    "aggregates": [
        {
            "column": "amount",
            "functions": ["count", "sum", "mean"],
            "windows": ["10m", "1h", "24h"],
        },
        {"column": "merchant", "functions": ["distinct_count"], "windows": ["10m", "24h"]},
    ],
}
PLAIN = ["amount"]  # what a transaction says on its own


@dataclass(frozen=True)
class FraudReport:
    """Held-out AUCs of the same model kind trained with and without the windowed features."""

    auc_plain: float
    auc_windowed: float
    train_rows: int
    test_rows: int
    fraud_share: float


def fraud_spec() -> WindowSpec:
    return WindowSpec.from_config(WindowsConfig.model_validate(WINDOWS))


def transactions(cards: int = 200, days: float = 3.0, seed: int = 0) -> pd.DataFrame:
    """``txn_id, card_id, ts, amount, merchant, is_fraud`` sorted by time."""
    rng = np.random.default_rng(seed)
    span_s = int(days * 86_400)
    parts = []
    for card in range(cards):
        usual = rng.choice(200, 5, replace=False)
        n = rng.poisson(days * 24)
        parts.append(
            _rows(card, rng.integers(0, span_s, n), rng.choice(usual, n), rng, fraud=False)
        )
        if rng.random() < 0.2:
            start = rng.integers(0, span_s - 600)
            k = rng.integers(6, 13)
            others = np.setdiff1d(np.arange(200), usual)
            parts.append(
                _rows(card, start + rng.integers(0, 480, k), rng.choice(others, k), rng, True)
            )
    frame = pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable")
    return frame.reset_index(drop=True).assign(txn_id=lambda f: np.arange(len(f)))


def with_burst(
    frame: pd.DataFrame,
    card: str,
    end: pd.Timestamp,
    size: int = 8,
    span_s: float = 360,
    seed: int = 0,
) -> pd.DataFrame:
    """``frame`` plus a burst of ``card``: ``size`` purchases (``is_fraud`` 1) within the
    ``span_s`` seconds before ``end``, at merchants the card has not used in ``frame``;
    re-sorted by time with fresh ``txn_id``s."""
    rng = np.random.default_rng(seed)
    used = set(frame.loc[frame["card_id"] == card, "merchant"])
    others = [m for m in (f"m{i:03d}" for i in range(200)) if m not in used]
    offsets = np.sort(rng.integers(0, int(span_s * 1000), size))[::-1]  # ms before ``end``
    burst = pd.DataFrame(
        {
            "card_id": card,
            "ts": end - pd.to_timedelta(offsets, unit="ms"),
            "amount": np.round(rng.lognormal(3.0, 1.0, size), 2),
            "merchant": rng.choice(others, size),
            "is_fraud": np.ones(size, dtype=int),
        }
    )
    joined = pd.concat([frame.drop(columns="txn_id"), burst], ignore_index=True)
    joined = joined.sort_values("ts", kind="stable").reset_index(drop=True)
    return joined.assign(txn_id=np.arange(len(joined)))


def evaluate(frame: pd.DataFrame, spec: WindowSpec | None = None, seed: int = 0) -> FraudReport:
    """Train on the first 70% of the time, report held-out AUCs with and without the
    windowed features (gradient-boosted trees both times)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    spec = spec or fraud_spec()
    rows = training_set(frame, spec)
    cut = rows["ts"].quantile(0.7)
    train, test = rows[rows["ts"] <= cut], rows[rows["ts"] > cut]
    aucs = []
    for columns in (PLAIN, [*PLAIN, *spec.names]):
        model = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
        model.fit(train[columns], train["is_fraud"])
        aucs.append(
            float(roc_auc_score(test["is_fraud"], model.predict_proba(test[columns])[:, 1]))
        )
    return FraudReport(aucs[0], aucs[1], len(train), len(test), float(rows["is_fraud"].mean()))


def _rows(
    card: int, seconds: np.ndarray, merchants: np.ndarray, rng: np.random.Generator, fraud: bool
) -> pd.DataFrame:
    n = len(seconds)
    return pd.DataFrame(
        {
            "card_id": f"card{card:04d}",
            "ts": START + pd.to_timedelta(seconds, unit="s"),
            "amount": np.round(rng.lognormal(3.0, 1.0, n), 2),
            "merchant": [f"m{m:03d}" for m in merchants],
            "is_fraud": np.full(n, int(fraud)),
        }
    )


def main() -> None:
    report = evaluate(transactions())
    print(
        f"{report.train_rows} training / {report.test_rows} held-out transactions "
        f"({report.fraud_share:.1%} fraud)\n"
        f"AUC, the transaction alone:          {report.auc_plain:.3f}\n"
        f"AUC, with its card's windowed features: {report.auc_windowed:.3f}"
    )


if __name__ == "__main__":
    main()
