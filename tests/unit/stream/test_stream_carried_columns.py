"""The columns the stream query hands to each micro-batch: the stream's event-time column is
among them (a Kafka batch checks each message's time in it), with windowed features too."""

from __future__ import annotations

from pathlib import Path

from batch_serving.config.stream import StreamConfig
from batch_serving.config.windows import WindowsConfig
from batch_serving.features.spec import WindowSpec
from batch_serving.stream.source import source_for
from batch_serving.stream.windowed import WindowedSource, carried

COLUMNS = "event_id BIGINT, card_id BIGINT, ts TIMESTAMP, amount DOUBLE"


def kafka(event_time: str | None) -> StreamConfig:
    return StreamConfig.model_validate(
        {
            "source": "kafka",
            "columns": COLUMNS,
            "event_time_column": event_time,
            "kafka": {"bootstrap_servers": "localhost:9092", "topics": ["events"]},
        }
    )


def test_the_event_time_column_is_carried_to_the_batch(tmp_path: Path) -> None:
    source = source_for(kafka("ts"), tmp_path)
    assert carried(source, ["event_id", "amount"], "ts") == ["event_id", "amount", "ts"]


def test_without_an_event_time_column_only_the_selected_ones(tmp_path: Path) -> None:
    source = source_for(kafka(None), tmp_path)
    assert carried(source, ["event_id", "amount"], None) == ["event_id", "amount"]


def test_windowed_kafka_source_carries_its_event_time_once(tmp_path: Path) -> None:
    windows = WindowsConfig.model_validate(
        {
            "entity": "card_id",
            "event_time": "ts",
            "aggregates": [{"column": "amount", "functions": ["count"], "windows": ["10m"]}],
        }
    )
    source = WindowedSource(source_for(kafka("ts"), tmp_path), WindowSpec.from_config(windows))
    selected = ["event_id", "amount_count_10m", "ts"]
    assert carried(source, selected, "ts") == selected
