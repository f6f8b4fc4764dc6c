"""The fast paths of a run's fixed work give the same answers as the plain ones: the duplicate
id scan (numpy) vs pandas' ``duplicated``, the score statistics vs numpy's exact quantiles, the
catalog's metastore lookup vs the public catalog API."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import RUN_DATE, customers, labelled

from batch_serving.quality.checks import duplicate_ids_arrow
from batch_serving.runs.after_commit import CATALOG_STEP, RECORD_STEP
from batch_serving.runs.job import run_score
from batch_serving.runs.mlflow_record import QUANTILES, score_stats
from batch_serving.spark.catalog import (
    _existing_table,
    _partition_registered,
    register_partition,
)
from batch_serving.tables.layout import TableLayout, predictions_layout
from batch_serving.tables.manifest import read_after_commit

cloudpickle.register_pickle_by_value(builders)


def pandas_oracle(frames: list[pd.DataFrame]) -> tuple[int, list[Any]]:
    """What the scan returned before it had a fast path: pandas over all the files' ids."""
    ids = pd.concat(frames, ignore_index=True)
    dup = ids.duplicated(keep="first")
    examples = ids[dup].drop_duplicates().head(5).to_numpy().tolist()
    return int(dup.sum()), [e[0] if len(e) == 1 else e for e in examples]


def write_files(tmp_path: Path, tables: list[pa.Table]) -> list[Path]:
    files = []
    for i, table in enumerate(tables):
        path = tmp_path / f"part-{i:05d}.parquet"
        pq.write_table(table, path)
        files.append(path)
    return files


rng = np.random.default_rng(7)
unsorted_unique = rng.permutation(30_000)
with_dups = rng.integers(0, 20_000, 30_000)  # ~ a third repeated, in no order


def ints(values: np.ndarray, dtype: pa.DataType | None = None) -> pa.Table:
    return pa.table({"id": pa.array(values, type=dtype or pa.int64())})


CASES = {
    "increasing ints": [ints(np.arange(0, 10_000)), ints(np.arange(10_000, 25_000))],
    "increasing per file, repeated across files": [
        ints(np.arange(0, 10_000)),
        ints(np.arange(9_990, 12_000)),
    ],
    "sorted with repeats": [ints(np.sort(with_dups[:5_000])), ints(np.arange(20_000, 20_100))],
    "unsorted unique ints": [ints(unsorted_unique[:12_000]), ints(unsorted_unique[12_000:])],
    "unsorted ints with duplicates": [ints(with_dups[:10_000]), ints(with_dups[10_000:])],
    "int32 duplicates": [ints(with_dups[:100], pa.int32()), ints(with_dups[:50], pa.int32())],
    "int32 and int64 files": [ints(np.arange(5), pa.int32()), ints(np.arange(3, 8))],
    "one row": [ints(np.array([4]))],
    "nulls repeated": [pa.table({"id": pa.array([1, None, 2, None, 3, 1], type=pa.int64())})],
    "strings": [
        pa.table({"id": [f"c{i % 700}" for i in range(1_000)]}),
        pa.table({"id": ["c1", "zz", None, None]}),
    ],
    "two columns": [
        pa.table({"a": with_dups[:5_000] % 50, "b": [f"x{v % 7}" for v in with_dups[:5_000]]}),
        pa.table({"a": np.arange(100), "b": ["x0"] * 100}),
    ],
}


@pytest.mark.parametrize("case", list(CASES))
def test_duplicate_scan_equals_pandas(tmp_path: Path, case: str) -> None:
    tables = CASES[case]
    files = write_files(tmp_path, tables)
    columns = tables[0].column_names

    got = duplicate_ids_arrow(files, columns)

    expected = pandas_oracle([pq.read_table(f).to_pandas() for f in files])
    assert repr(got) == repr(expected)  # repr: a null id is NaN on both sides
    if case.startswith(
        ("sorted with", "unsorted ints with", "increasing per file", "int32 dup", "nulls", "str")
    ):
        assert got[0] > 0 and got[1]  # the case has duplicates: the test can fail both ways


def test_score_stats_are_exact_quantiles_skipping_nulls(tmp_path: Path) -> None:
    values = rng.random(20_001)
    column = pa.array([*values.tolist(), None, None], type=pa.float64())
    pq.write_table(pa.table({"score": column.slice(0, 9_000)}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"score": column.slice(9_000)}), tmp_path / "b.parquet")

    stats = score_stats(tmp_path, "score")

    assert stats["score_mean"] == pytest.approx(values.mean(), abs=1e-12)
    for q in QUANTILES:
        assert stats[f"score_p{int(q * 100):02d}"] == pytest.approx(
            np.quantile(values, q), abs=1e-12
        )


def test_score_stats_quantiles_skip_nan(tmp_path: Path) -> None:
    pq.write_table(pa.table({"score": [0.1, float("nan"), 0.3, 0.2]}), tmp_path / "a.parquet")
    assert score_stats(tmp_path, "score")["score_p50"] == pytest.approx(0.2)
    pq.write_table(pa.table({"score": [float("nan")] * 3}), tmp_path / "a.parquet")
    assert not [k for k in score_stats(tmp_path, "score") if not k.endswith("_mean")]


class NoJvmSession:
    """A session whose JVM objects are out of reach (as under Spark Connect): a fault injected
    on purpose, so the metastore lookup takes its public-API path."""

    def __init__(self, spark: Any) -> None:
        self.catalog, self.sql = spark.catalog, spark.sql

    @property
    def _jsparkSession(self) -> Any:
        raise AttributeError("_jsparkSession")


def committed_partition(root: Path, model: str, ids: list[int]) -> TableLayout:
    layout = predictions_layout(str(root), model)
    partition = layout.committed_dir(RUN_DATE)
    assert partition.as_local() is not None
    partition.mkdir(parents=True)
    pq.write_table(pa.table({"id": ids, "score": [0.5] * len(ids)}), partition / "p.parquet")
    return layout


def test_metastore_lookup_and_a_moved_output_root(spark: Any, tmp_path: Path) -> None:
    """The table's location read from the metastore (and through the public API) drives the
    re-pointing of a table whose output root moved; rows then come from the new root."""
    first = committed_partition(tmp_path / "a", "moved_root", [1, 2])
    second = committed_partition(tmp_path / "b", "moved_root", [7, 8, 9])
    for session in (spark, NoJvmSession(spark)):
        assert _existing_table(session, "fixed_work_db", "moved_root") == (False, None)

    assert register_partition(spark, "fixed_work_db", first, RUN_DATE)
    for session in (spark, NoJvmSession(spark)):
        assert _existing_table(session, "fixed_work_db", "moved_root") == (
            True,
            str(first.table_dir.resolve()),
        )
        assert _existing_table(session, "fixed_work_db", "absent") == (False, None)
    assert spark.table("fixed_work_db.moved_root").count() == 2

    assert register_partition(spark, "fixed_work_db", second, RUN_DATE)
    assert _existing_table(spark, "fixed_work_db", "moved_root")[1] == str(
        second.table_dir.resolve()
    )
    ids = sorted(r.id for r in spark.table("fixed_work_db.moved_root").collect())
    assert ids == [7, 8, 9]


def test_a_rerun_skips_adding_a_registered_partition(spark: Any, tmp_path: Path) -> None:
    """Only an already registered date of a table without statistics skips ADD PARTITION; a
    rerun's new files are read after the refresh either way."""
    layout = committed_partition(tmp_path, "rerun_skip", [1, 2])
    other_day = RUN_DATE - dt.timedelta(days=1)
    assert not _partition_registered(spark, "fixed_work_db", "rerun_skip", RUN_DATE)
    register_partition(spark, "fixed_work_db", layout, RUN_DATE)
    assert _partition_registered(spark, "fixed_work_db", "rerun_skip", RUN_DATE)
    assert not _partition_registered(spark, "fixed_work_db", "rerun_skip", other_day)
    assert spark.table("fixed_work_db.rerun_skip").count() == 2

    partition = layout.committed_dir(RUN_DATE)
    assert partition.as_local() is not None
    pq.write_table(pa.table({"id": [5, 6, 7], "score": [0.1] * 3}), partition / "p.parquet")
    register_partition(spark, "fixed_work_db", layout, RUN_DATE)  # a rerun: files replaced
    assert sorted(r.id for r in spark.table("fixed_work_db.rerun_skip").collect()) == [5, 6, 7]

    spark.sql("ANALYZE TABLE fixed_work_db.rerun_skip COMPUTE STATISTICS NOSCAN")
    assert not _partition_registered(spark, "fixed_work_db", "rerun_skip", RUN_DATE)
    assert not _partition_registered(NoJvmSession(spark), "fixed_work_db", "rerun_skip", RUN_DATE)


@pytest.mark.slow
def test_post_commit_steps_are_timed_in_the_run_record(
    spark: Any, register: Any, warehouse: Any, job_config: Any
) -> None:
    """The SQL catalog and the MLflow record are timed in ``_after_commit.json`` (what the
    benchmark's step table and the run summary read), not in the committed manifest."""
    model, _ = builders.logreg_pipeline(labelled(300))
    rows = customers(120)
    name, _ = register(model, rows[builders.FEATURES])
    warehouse(rows)
    cfg = job_config(name, catalog={"enabled": True}, tracking={"log_runs": True})

    result = run_score(spark, cfg, RUN_DATE)

    after, manifest = result.after, result.manifest
    assert after.mlflow_run_id and after.tables == [f"predictions.{name}"]
    assert after.durations_s[CATALOG_STEP] > 0 and after.durations_s[RECORD_STEP] > 0
    assert list(after.durations_s)[: len(manifest.durations_s)] == list(manifest.durations_s)
    assert CATALOG_STEP not in manifest.durations_s
    records = Path(cfg.output.root) / "_runs" / "predictions" / name / manifest.run_id
    saved = read_after_commit(records)
    assert saved is not None and saved.durations_s == after.durations_s


def test_the_driver_loads_and_broadcasts_a_version_once_per_session(
    spark: Any, register: Any, tracking_uri: str
) -> None:
    """Later runs of a session (backfills, the benchmark) reuse the loaded model and its
    broadcast: a registered version never changes. A new version is loaded anew."""
    from batch_serving.config import LoadingConfig, ModelConfig
    from batch_serving.models.adapters import OutputRequest
    from batch_serving.models.loading import load_pinned
    from batch_serving.models.registry import resolve_model
    from batch_serving.spark.delivery import plan_delivery

    rows = customers(120)
    name, _ = register(builders.logreg_pipeline(labelled(300))[0], rows[builders.FEATURES])
    cfg = ModelConfig(name=name, alias="champion", tracking_uri=tracking_uri)
    ref = resolve_model(cfg)
    spec, loaded, size_mb = load_pinned(cfg, OutputRequest(), ref)
    again = load_pinned(cfg, OutputRequest(), ref)
    assert again[1] is loaded and again[0] == spec and again[2] == size_mb > 0
    first = plan_delivery(spark, ref, loaded.obj, size_mb, LoadingConfig())
    second = plan_delivery(spark, ref, loaded.obj, size_mb, LoadingConfig())
    assert first.strategy == "broadcast" and second.handle.payload is first.handle.payload
    assert second.handle.loads is not first.handle.loads  # counted per job

    register(builders.logreg_pipeline(labelled(300))[0], rows[builders.FEATURES], name=name)
    newer = resolve_model(cfg)
    assert newer.version == ref.version + 1
    assert load_pinned(cfg, OutputRequest(), newer)[1] is not loaded
    newer_delivery = plan_delivery(spark, newer, loaded.obj, size_mb, LoadingConfig())
    assert newer_delivery.handle.payload is not first.handle.payload
