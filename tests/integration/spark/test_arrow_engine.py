"""The arrow_direct engine writes the same rows, columns and types as the DataFrame engine."""

from __future__ import annotations

from pathlib import Path

import builders
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_approx_df_equality
from conftest import RUN_DATE, customers, labelled
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch_serving.runs.job import run_score
from batch_serving.spark.engines.arrow_direct import plan_units
from batch_serving.storage.files import inspect_input

CASES = {
    "binary": (builders.logreg_pipeline, None, builders.FEATURES),
    "multiclass": (builders.multiclass, None, builders.NUMERIC),
    "regression": (builders.forest_regressor, builders.TREE_TRUSTED, builders.NUMERIC),
}


def write_awkward_partition(root: Path, rows) -> Path:  # type: ignore[no-untyped-def]
    """One file with several row groups, one ordinary file, and one file with zero rows."""
    part = root / f"ds={RUN_DATE}"
    part.mkdir(parents=True)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    pq.write_table(table.slice(0, 700), part / "a.parquet", row_group_size=90)
    pq.write_table(table.slice(700), part / "b.parquet")
    pq.write_table(table.slice(0, 0), part / "empty.parquet")
    return part


@pytest.mark.parametrize("case", list(CASES))
def test_engines_write_identical_rows(spark, tmp_path, register, job_config, case: str) -> None:
    build, trusted, inputs = CASES[case]
    model, _ = build(labelled(600))
    rows = customers(1000)
    name, _ = register(model, rows[inputs], trusted=trusted)
    write_awkward_partition(tmp_path / "warehouse" / "features", rows)

    outputs = {}
    for engine in ("dataframe", "arrow_direct"):
        cfg = job_config(name, engine=engine, output={"root": str(tmp_path / engine)})
        result = run_score(spark, cfg, RUN_DATE)
        assert result.manifest.scoring.engine == engine
        assert result.committed.rows == 1000
        outputs[engine] = spark.read.parquet(str(result.committed.path)).drop("scored_at")

    assert (
        outputs["dataframe"].schema.simpleString() == outputs["arrow_direct"].schema.simpleString()
    )
    # Same rows; floats within 1e-12 because BLAS-based models (LogisticRegression) may differ
    # in the last ulp when the same row is scored inside a differently sized batch.
    assert_approx_df_equality(
        comparable(outputs["dataframe"]),
        comparable(outputs["arrow_direct"]),
        precision=1e-12,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def comparable(df: DataFrame) -> DataFrame:
    """Maps cannot be sorted by Spark: expand class probabilities into one column per class."""
    if "probabilities" not in df.columns:
        return df
    classes = sorted(
        r[0] for r in df.select(F.explode(F.map_keys("probabilities"))).distinct().collect()
    )
    expanded = [F.col("probabilities")[c].alias(f"p_{c}") for c in classes]
    return df.select(*[c for c in df.columns if c != "probabilities"], *expanded)


def test_units_follow_row_groups_and_cover_every_row(tmp_path) -> None:
    part = write_awkward_partition(tmp_path, customers(1000))
    arrow_input = inspect_input(part)
    units = plan_units(arrow_input, target_units=4)
    assert arrow_input.rows == 1000
    assert sum(u.rows for u in units) == 1000
    assert [u.index for u in units] == list(range(len(units)))
    assert max(u.rows for u in units) <= 250 + 90  # balanced to ~rows/4, one row group of slack
    pieces = [p for u in units for p in u.pieces]
    assert not [p for p in pieces if p.path.endswith("empty.parquet")]  # nothing to read there
    covered = sorted((p.path, g) for p in pieces for g in p.row_groups)
    assert len(covered) == len(set(covered))  # no row group twice
    assert [u.rows for u in units] == [180, 180, 180, 160, 300]  # closed before passing 250


def test_small_files_share_units_and_an_empty_input_makes_one_empty_unit() -> None:
    from batch_serving.storage.files import ParquetInput

    schema = pa.schema([("id", pa.int64())])
    files = tuple(Path(f"/in/part-{i:02d}.parquet") for i in range(80))
    many = ParquetInput(files, schema, 80 * 1000, tuple((1000,) for _ in files))
    units = plan_units(many, target_units=4)
    assert [u.rows for u in units] == [20_000] * 4  # 4 tasks, not 80
    assert [len(u.pieces) for u in units] == [20] * 4
    assert [p.path for u in units for p in u.pieces] == [str(f) for f in files]
    empty = ParquetInput(files[:2], schema, 0, ((), ()))
    assert [(u.index, u.pieces) for u in plan_units(empty, target_units=4)] == [(0, ())]


def test_auto_engine_choice(job_config) -> None:
    from batch_serving.spark.engines import choose_engine

    assert choose_engine(job_config("m")) == "arrow_direct"
    # object stores: pyarrow's own clients, no Hadoop jars (issue #12); HDFS: Spark reads it
    remote = job_config("m", input={"path": "s3a://bucket/features"})
    assert choose_engine(remote) == "arrow_direct"
    assert choose_engine(job_config("m", input={"path": "hdfs://nn/features"})) == "dataframe"
    assert choose_engine(job_config("m", engine="dataframe")) == "dataframe"
