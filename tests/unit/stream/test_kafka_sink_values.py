"""The Kafka sink's message keys and JSON values, built column-wise, are what a row's
``json.dumps(row, sort_keys=True)`` with ISO times would write (no broker, no JVM)."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa

from batch_serving.stream.kafka_sink import json_values, row_keys
from batch_serving.stream.source import CORRUPT

UTC = pa.timestamp("us", tz="UTC")
AT = dt.datetime(2026, 12, 7, 17, 10, 7, 123456, tzinfo=dt.UTC)
WHOLE = dt.datetime(2026, 12, 7, 17, 10, 7, tzinfo=dt.UTC)


def test_values_are_sorted_json_with_iso_times_and_the_batch_id() -> None:
    rows = pa.table(
        {
            "customer_id": pa.array([7, 8], pa.int64()),
            "score": [0.1234567890123456789, 0.5],
            "scored_at": pa.array([AT, WHOLE], UTC),
            "event_time": pa.array([None, AT], UTC),
            CORRUPT: pa.nulls(2, pa.string()),
        }
    )

    values = json_values(rows, 3)

    assert values == [
        '{"batch_id": 3, "customer_id": 7, "event_time": null, "score": 0.12345678901234568, '
        '"scored_at": "2026-12-07T17:10:07.123456+00:00"}',
        '{"batch_id": 3, "customer_id": 8, "event_time": "2026-12-07T17:10:07.123456+00:00", '
        '"score": 0.5, "scored_at": "2026-12-07T17:10:07+00:00"}',
    ]
    assert json.loads(values[1])["scored_at"] == WHOLE.isoformat()


def test_a_malformed_message_keeps_its_text_and_the_others_have_none() -> None:
    rows = pa.table({"customer_id": pa.array([None, 2], pa.int64()), CORRUPT: ["{oops", None]})

    values = [json.loads(v) for v in json_values(rows, 0)]

    assert values == [
        {"batch_id": 0, "customer_id": None, CORRUPT: "{oops"},
        {"batch_id": 0, "customer_id": 2},
    ]


def test_keys_are_the_entity_id_a_json_list_of_several_or_none() -> None:
    rows = pa.table({"a": pa.array([1, None, None], pa.int64()), "b": ["x", "y", None]})

    assert row_keys(rows, ["a"]) == ["1", None, None]
    assert row_keys(rows, ["a", "b"]) == ['[1, "x"]', '[null, "y"]', None]
