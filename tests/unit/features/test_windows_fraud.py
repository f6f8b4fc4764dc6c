"""The fraud example: the windowed features are what separates fraud from normal purchases."""

from __future__ import annotations

from batch_serving.features.fraud_example import evaluate, fraud_spec, transactions
from batch_serving.features.offline import training_set


def test_windowed_features_reveal_the_bursts_the_transaction_alone_does_not() -> None:
    frame = transactions(cards=120, days=2.0, seed=1)
    report = evaluate(frame)
    assert report.test_rows > 1000 and 0.01 < report.fraud_share < 0.1
    assert report.auc_plain < 0.65  # an amount alone says nothing
    assert report.auc_windowed > 0.85
    assert report.auc_windowed - report.auc_plain > 0.25


def test_burst_transactions_see_their_burst_in_the_10m_window() -> None:
    rows = training_set(transactions(cards=60, days=1.0, seed=2), fraud_spec())
    fraud, normal = rows[rows["is_fraud"] == 1], rows[rows["is_fraud"] == 0]
    assert fraud["amount_count_10m"].median() >= 3
    assert normal["amount_count_10m"].quantile(0.99) <= 2
