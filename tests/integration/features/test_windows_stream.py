"""Windowed features through a real Spark streaming query (transformWithStateInPandas on the
RocksDB state store): out-of-order events, late events dropped and counted, and every event's
features equal to a brute-force recomputation and to the offline training set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from windows_landing import COLUMNS, FLUSH_CARD, land
from windows_oracle import brute_force, spec

from batch_serving.errors import MissingColumnsError
from batch_serving.features.offline import feature_mismatches, training_set
from batch_serving.features.stream import (
    ROCKSDB,
    STATE_STORE,
    late_events,
    state_store_conf,
    windowed_frame,
)


def run(spark: SparkSession, landing: Path, checkpoint: Path) -> tuple[pd.DataFrame, int, int]:
    """(released rows, late events counted, micro-batches) of one availableNow run."""
    frames: list[pd.DataFrame] = []

    def collect(frame: DataFrame, batch_id: int) -> None:
        frames.append(frame.toPandas().assign(batch_id=batch_id))

    source = spark.readStream.format("json").schema(COLUMNS).option("maxFilesPerTrigger", 1)
    writer = (
        windowed_frame(source.load(str(landing)), spec())
        .writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
    )
    with state_store_conf(spark):
        query = writer.start()
    assert spark.conf.get(STATE_STORE, None) != ROCKSDB  # the session is as it was
    query.awaitTermination()
    progress = query.recentProgress
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return rows, late_events(progress), len(progress)


def test_stream_features_equal_brute_force_and_the_training_set(
    spark: SparkSession, tmp_path: Path
) -> None:
    landed = land(tmp_path / "landing")
    rows, late, batches = run(spark, tmp_path / "landing", tmp_path / "checkpoint")
    s = spec()
    assert batches >= 5  # one file per micro-batch
    assert late == len(landed.late) == 12  # dropped behind the watermark, and counted
    released = rows[rows["card_id"] != FLUSH_CARD]
    assert not set(released["event_id"]) & set(landed.late["event_id"])
    assert sorted(released["event_id"]) == sorted(landed.accepted["event_id"])  # each once
    expected = brute_force(landed.accepted, landed.accepted, s)
    assert feature_mismatches(released, expected, s, ["event_id"]).empty
    offline = training_set(landed.accepted, s)
    assert feature_mismatches(released, offline, s, ["event_id"]).empty
    assert released["amount_count_1h"].max() > 5
    # out-of-order arrivals (a range's last minutes land one file later) were waited for:
    # events are released per entity in event-time order
    for _, card in released.groupby("card_id"):
        assert card.sort_values(["batch_id"], kind="stable")["ts"].is_monotonic_increasing


def test_missing_window_column_is_named_before_the_query_starts(spark: SparkSession) -> None:
    frame = spark.readStream.format("rate").load().withColumnRenamed("timestamp", "ts")
    with pytest.raises(MissingColumnsError, match=r"missing columns \['card_id', 'amount'"):
        windowed_frame(frame, spec())
