"""Labels matched point in time: the latest prediction at or before the event, then the
feature row that prediction was made from."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from batch_serving.errors import MissingColumnsError
from batch_serving.learning.labels import SCORE, attach_features, point_in_time_join
from batch_serving.learning.settings import LabelsConfig

CFG = LabelsConfig(path="unused")


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


PREDICTIONS = pd.DataFrame(
    {
        "customer_id": [1, 1, 1, 2],
        "score": [0.1, 0.2, 0.3, 0.9],
        "scored_at": [ts("2026-11-01 02:00"), ts("2026-11-02 02:00"), ts("2026-11-03 02:00"),
                      ts("2026-11-02 02:00")],
        "ds": [dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3),
               dt.date(2026, 11, 2)],
    }
)  # fmt: skip


def test_each_label_gets_the_latest_prediction_at_or_before_its_event() -> None:
    labels = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 3],
            "label": [1, 0, 1, 0],
            "event_time": [ts("2026-11-02 02:00"), ts("2026-11-02 23:59"),
                           ts("2026-11-01 12:00"), ts("2026-11-05")],
        }
    )  # fmt: skip
    matched, unmatched = point_in_time_join(labels, PREDICTIONS, "customer_id", CFG)
    by_event = matched.set_index("event_time")[SCORE].to_dict()
    # exactly at a prediction's time: that prediction; later the same day: still it (the
    # 2026-11-03 score did not exist yet); entity 2's only score is after its event
    assert by_event == {ts("2026-11-02 02:00"): 0.2, ts("2026-11-02 23:59"): 0.2}
    assert unmatched == 2  # entity 2 (scored after the event) and entity 3 (never scored)


def test_features_come_from_the_predictions_partition() -> None:
    labels = pd.DataFrame(
        {"customer_id": [1], "label": [1], "event_time": [ts("2026-11-02 12:00")]}
    )
    matched, _ = point_in_time_join(labels, PREDICTIONS, "customer_id", CFG)
    features = pd.DataFrame(
        {
            "customer_id": [1, 1, 1],
            "ds": [dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)],
            "tenure": [10.0, 11.0, 12.0],
        }
    )
    rows, without = attach_features(matched, features, "customer_id", ("tenure",))
    assert rows["tenure"].tolist() == [11.0] and without == 0
    rows, without = attach_features(matched, features.iloc[[0, 2]], "customer_id", ("tenure",))
    assert len(rows) == 0 and without == 1


def test_a_labels_table_without_its_event_time_is_refused_naming_it() -> None:
    labels = pd.DataFrame({"customer_id": [1], "label": [1], "when": [ts("2026-11-02")]})
    with pytest.raises(MissingColumnsError, match=r"missing columns \['event_time'\]"):
        point_in_time_join(labels, PREDICTIONS, "customer_id", CFG)
