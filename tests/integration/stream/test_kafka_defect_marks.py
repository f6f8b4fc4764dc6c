"""A Kafka micro-batch's per-message verdicts (clean, malformed, mistyped or missing columns)
from the typed parse alone for messages whose wanted columns all parsed, equal to the verdicts
of parsing every message three times (typed, as text, for its keys) over tricky messages."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from batch_serving.config import StreamConfig
from batch_serving.stream.kafka_source import (
    _FAILED,
    _KEYS,
    _KIND,
    _MALFORMED,
    _MISSING,
    _TEXT,
    KafkaSource,
    _defect_marks,
    _mark_defects,
)
from batch_serving.stream.source import CORRUPT

COLUMNS = "id BIGINT, amount DOUBLE, name STRING, flag BOOLEAN, ts TIMESTAMP, note STRING"
ALL = '"amount": 1.5, "name": "a", "flag": true, "ts": "2024-01-01T00:00:00Z"'
TRICKY: list[str | None] = [
    '{"id": 1, ' + ALL + "}",
    '{"id": 1, "name": "a", "flag": true, "ts": "2024-01-01T00:00:00Z"}',  # amount absent
    '{"id": 1, "amount": null, "name": "a", "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": null, "amount": null, "name": null, "flag": null, "ts": null}',
    '{"id": 1, "amount": "abc", "name": "a", "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1, "amount": "12.5", "name": "a", "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1.5, ' + ALL + "}",
    '{"id": "12", ' + ALL + "}",
    '{"id": 1e2, ' + ALL + "}",
    '{"id": -0, ' + ALL + "}",
    '{"id": 99999999999999999999999, ' + ALL + "}",
    '{"id": 1, "amount": 1e400, "name": "a", "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": true, "amount": false, "name": "a", "flag": 1, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1, "amount": NaN, "name": "a", "flag": "true", "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1, "amount": "Infinity", "name": 12, "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1, "amount": NaN, "name": "a", "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1, "amount": -Infinity, "name": "a", "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1, ' + ALL + ', "extra": +INF}',
    '{"id": 1, ' + ALL + ', "extra": Infinity}',
    '{"id": 1, ' + ALL + ', "extra": "NaN and Infinity as text"}',
    '{"id": 1, ' + ALL + ', "extra": ' + "1" * 1001 + "}",
    '{"id": 1, ' + ALL + ', "extra": ' + "[" * 1001 + "]" * 1001 + "}",
    '{"id": 1, ' + ALL + ', "extra": "control \x01 char"}',
    '{"id": 1, "amount": 2, "name": "tab\there", "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1, ' + ALL + ', "extra": "' + "x" * 1_000_001 + '"}',
    '{"id": 1, "amount": 2, "name": {"x": 1}, "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1, "amount": 2, "name": [1, 2], "flag": true, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": {"id": 1}, ' + ALL + "}",
    '{"id": 1, "id": 2, ' + ALL + "}",
    '{"id": "x", "id": 2, ' + ALL + "}",
    '{"id": 2, "id": "x", ' + ALL + "}",
    '{"id": 2, "id": null, ' + ALL + "}",
    '{"ID": 1, ' + ALL + "}",
    '{"id": 1, ' + ALL + ', "extra": [1, {"y": null}]}',
    '{"id": 1, ' + ALL + "} trailing",
    '{"id": 1, ' + ALL + '}{"id": 2}',
    '{"id": 1, ' + ALL + ', "z": }',
    '{"id": 1, ' + ALL + ", ",
    '   {"id": 1, ' + ALL + "}   ",
    "{'id': 1, 'amount': 1.5, 'name': 'a', 'flag': true, 'ts': '2024-01-01T00:00:00Z'}",
    '{id: 1, "amount": 1.5}',
    '{"id": 007, ' + ALL + "}",
    '/* c */ {"id": 1, ' + ALL + "}",
    '{"id": 1, "amount": 1, "name": "\\u00e9\\u2713\\ud83d\\ude00\\u0000", "flag": false,'
    ' "ts": "2024-01-01 00:00:00"}',
    '{"id": 1, "amount": 1, "name": "é✓😀", "flag": false, "ts": "2024-01-01"}',
    '{"id": 1, "amount": 1, "name": "a", "flag": false, "ts": "01/02/2024"}',
    '{"id": 1, "amount": 1, "name": "a", "flag": false, "ts": 1700000000}',
    '{"id": 1, "amount": 1, "name": "a", "flag": false, "ts": "2024-01-01T00:00:00.123+02:00"}',
    '{"id": 1, "amount": 1, "name": "a", "flag": false, "ts": "garbage"}',
    '{"id": 1, "amount": 1, "name": "a", "flag": false, "ts": ""}',
    '{"id": 1, "amount": 1, "name": "", "flag": false, "ts": "2024-01-01T00:00:00Z"}',
    '{"id": 1, "amount": 1, "name": "a", "flag": false, "ts": "2024-01-01T00:00:00Z", '
    '"note": "not wanted"}',
    "{}",
    '{"":1}',
    '[{"id": 1, ' + ALL + "}]",
    "[1, 2]",
    "[]",
    '"a string"',
    "12",
    "true",
    "null",
    "",
    "   ",
    "not json {",
    None,
]


def oracle_marks(frame: DataFrame, wanted: list[str]) -> DataFrame:
    """Every message parsed as text and for its keys too: the rules the fast path must keep."""
    text_schema = StructType([StructField(c, StringType()) for c in wanted])
    raw = F.col(CORRUPT)
    keys = frame.withColumns({_KEYS: F.json_object_keys(raw), _TEXT: F.from_json(raw, text_schema)})
    failed = [F.when(F.col(c).isNull() & F.col(_TEXT)[c].isNotNull(), F.lit(c)) for c in wanted]
    missing = [F.when(~F.array_contains(F.col(_KEYS), c), F.lit(c)) for c in wanted]
    return keys.withColumns(
        {
            _MALFORMED: F.col(_KEYS).isNull(),
            _FAILED: F.array_join(F.array_compact(F.array(*failed)), ","),
            _MISSING: F.array_join(F.array_compact(F.array(*missing)), ","),
        }
    )


def records(spark: SparkSession, values: list[str | None]) -> DataFrame:
    """Kafka-shaped records (binary value, topic, partition, offset, timestamp)."""
    schema = StructType(
        [
            StructField("value", BinaryType()),
            StructField("topic", StringType()),
            StructField("partition", IntegerType()),
            StructField("offset", LongType()),
            StructField("timestamp", TimestampType()),
        ]
    )
    at = dt.datetime(2026, 1, 1)
    rows = [(None if v is None else v.encode(), "events", 0, i, at) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, schema)


def verdicts(marked: DataFrame, frame: DataFrame) -> list[dict[str, Any]]:
    """Each message's columns and verdict, plus its text values where a part reads them."""
    defective = F.col(_MALFORMED) | (F.col(_FAILED) != "") | (F.col(_MISSING) != "")
    text: Column = F.when(defective, F.to_json(F.col(_TEXT))).alias("_text")
    rows = marked.select(*frame.columns, *_KIND, text).orderBy("kafka_offset").collect()
    return [{k: repr(v) for k, v in row.asDict().items()} for row in rows]


@pytest.mark.parametrize(
    ("wanted", "event"),
    [
        (["id", "amount", "name", "flag", "ts"], None),
        (["amount", "ts"], "ts"),
        ([], None),
    ],
)
def test_typed_parse_verdicts_equal_the_three_parse_verdicts(
    spark: SparkSession, wanted: list[str], event: str | None
) -> None:
    cfg = StreamConfig(
        source="kafka",
        columns=COLUMNS,
        event_time_column=event,
        kafka={"bootstrap_servers": "127.0.0.1:9", "topics": ["events"]},
    )
    frame = KafkaSource(cfg).parse(records(spark, TRICKY))

    expected = verdicts(oracle_marks(frame, wanted), frame)
    got = verdicts(_mark_defects(frame, _defect_marks(wanted)), frame)

    assert len(got) == len(TRICKY)
    for value, want, have in zip(TRICKY, expected, got, strict=True):
        assert have == want, None if value is None else value[:200]
    kinds = {(v[_MALFORMED], v[_FAILED] != "''", v[_MISSING] != "''") for v in expected}
    if wanted:  # the table reaches every kind of verdict: clean, malformed, mistyped, missing
        assert {("False", False, False), ("True", False, False)} <= kinds
        assert any(failed for _, failed, _ in kinds) and any(m for _, _, m in kinds)
