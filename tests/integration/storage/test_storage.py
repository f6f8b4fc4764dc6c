"""Predictions files written with dictionary-encoded lineage (``scoring.storage``) read back,
with pyarrow and with Spark, exactly as the plain predictions the scoring core returned."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression

from batch_serving.models.adapters import LoadedModel, ModelInputSpec, OutputRequest, describe
from batch_serving.models.registry import ModelRef
from batch_serving.scoring.batch import BatchScorer
from batch_serving.scoring.plan import Member, ScoringPlan, ScoringSettings, build_plan
from batch_serving.scoring.storage import StoredPredictions
from batch_serving.spark.engines.arrow_direct import _AtomicWriter

FEATURES = ("a", "b")
RUN_ID = "0123456789abcdef0123456789abcdef"


def ref(name: str, version: int, run_id: str | None) -> ModelRef:
    return ModelRef(name, version, "champion", run_id, "file:/x", "sqlite://", "sqlite://")


def member(key: str, model: Any, model_ref: ModelRef, role: str = "member") -> Member:
    inputs = ModelInputSpec(tuple((f, "double") for f in FEATURES))
    spec = describe(LoadedModel("sklearn", model, inputs), OutputRequest(), key)
    return Member(key, model_ref, spec, role)


def models(labels: list[Any], seeds: int) -> list[LogisticRegression]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    return [
        LogisticRegression(C=0.1 * (s + 1)).fit(x, [labels[i % len(labels)] for i in range(60)])
        for s in range(seeds)
    ]


def input_batch(n: int, offset: int = 0) -> pa.RecordBatch:
    rng = np.random.default_rng(offset)
    features = [pa.array(rng.normal(size=n)) for _ in FEATURES]
    return pa.RecordBatch.from_arrays(
        [pa.array(np.arange(offset, offset + n)), *features], names=["id", *FEATURES]
    )


def plan_of(members: list[Member], multi: bool) -> ScoringPlan:
    schema = input_batch(1).schema
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return build_plan(members, ["id"], schema, RUN_ID, at, "test", ScoringSettings(multi=multi))


def write(plan: ScoringPlan, fitted: list[Any], path: Path) -> pa.Table:
    """Scores 3 batches, writes them as arrow_direct does; returns the plain predictions."""
    scorer, stored = BatchScorer(plan, fitted), StoredPredictions(plan)
    plain = []
    path.mkdir()
    with _AtomicWriter(
        path, 0, stored.schema, statistics=stored.statistics, arrow_schema=False
    ) as writer:
        for i, n in enumerate((500, 1000, 7)):
            predictions = scorer.score(input_batch(n, 10_000 * i)).predictions
            writer.write(stored.encode(predictions))
            plain.append(predictions)
    return pa.Table.from_batches(plain)


def test_multi_model_file_reads_back_as_the_plain_predictions(tmp_path: Path) -> None:
    three = models([0, 1], 2) + models(["a", "b", "c"], 1)  # two binary + one multi-class
    members = [
        member("champion", three[0], ref("churn", 3, RUN_ID), "champion"),
        member("challenger", three[1], ref("churn", 4, None), "shadow"),
        member("segment", three[2], ref("segments", 1, "f" * 32)),
    ]
    plan = plan_of(members, multi=True)
    plain = write(plan, three, tmp_path / "out")
    read = pq.read_table(tmp_path / "out")
    assert read.schema.equals(plan.output_schema)
    assert read.equals(plain)
    assert read.column("challenger").combine_chunks().field("model_run_id").null_count == 1507
    assert set(read.column("segment").combine_chunks().field("model_name").to_pylist()) == {
        "segments"
    }
    # the file holds dictionary pages for lineage, and statistics only for the other leaves
    meta = pq.ParquetFile(tmp_path / "out" / "part-00000.parquet").metadata
    columns = {meta.row_group(0).column(i).path_in_schema: i for i in range(meta.num_columns)}
    group = meta.row_group(0)
    for path in ("model_name", "champion.model_version", "segment.model_run_id"):
        assert group.column(columns[path]).statistics is None, path
        assert "RLE_DICTIONARY" in group.column(columns[path]).encodings, path
    for path in ("id", "score", "champion.score", "challenger.score"):
        assert group.column(columns[path]).statistics is not None, path


def test_single_model_file_and_spark_read_it(spark: Any, tmp_path: Path) -> None:
    (model,) = models([0, 1], 1)
    plan = plan_of([member("champion", model, ref("churn", 7, RUN_ID), "champion")], False)
    plain = write(plan, [model], tmp_path / "out")
    assert pq.read_table(tmp_path / "out").equals(plain)
    frame = spark.read.parquet(str(tmp_path / "out"))
    assert dict(frame.dtypes)["model_name"] == "string"
    assert dict(frame.dtypes)["model_version"] == "int"
    rows = frame.groupBy("model_name", "model_version", "model_run_id").count().collect()
    assert [tuple(r) for r in rows] == [("churn", 7, RUN_ID, 1507)]
    got = frame.orderBy("id").toPandas()
    np.testing.assert_array_equal(got["score"].to_numpy(), plain.sort_by("id")["score"].to_numpy())
