"""Inputs as warehouses hold them: a metastore table, ``dt=yyyyMMdd``, a region partition.

The same rows, laid out five ways, score the same on both engines: each run's scores equal the
model called in-process on those rows (1e-12), rows of other regions are not read, and the
manifest records the files of the one directory the run read. A table the metastore does not
have, or cannot be read as date-partitioned Parquet, fails naming it, without JVM text.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import builders
import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, RUN_DATE, customers, labelled, register_model

from batch_serving.errors import ConfigError, InputNotFoundError
from batch_serving.runs.job import run_score

cloudpickle.register_pickle_by_value(builders)

COMPACT = RUN_DATE.strftime("%Y%m%d")  # dt=20261122
DB = "inputs_db"


@dataclass(frozen=True)
class Lake:
    """One registered model and its rows, written under ``root`` in every layout."""

    name: str
    root: Path
    rows: pd.DataFrame
    expected: dict[int, float]  # customer_id -> the in-process model's score


def write_files(directory: Path, frame: pd.DataFrame, files: int = 2) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    step = -(-table.num_rows // files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step), directory / f"part-{i:05d}.parquet")
    (directory / "_SUCCESS").touch()


def columns_ddl(spark: Any, directory: Path) -> str:
    schema = spark.read.parquet(str(directory)).schema
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in schema)


@pytest.fixture(scope="module")
def lake(spark, tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    model, oracle = builders.logreg_pipeline(labelled(600))
    rows = customers(400, seed=21)
    others = customers(150, seed=22)  # another region's rows: never read
    name, _ = register_model(tracking_uri, model, rows[builders.FEATURES])
    root = tmp_path_factory.mktemp("lake")
    day = RUN_DATE.isoformat()
    write_files(root / "plain" / f"ds={day}", rows)
    write_files(root / "compact" / f"dt={COMPACT}", rows)
    write_files(root / "nested" / f"ds={day}" / "region=eu", rows)
    write_files(root / "nested" / f"ds={day}" / "region=us", others)
    write_files(root / "regional" / "region=eu" / f"ds={day}", rows)
    write_files(root / "regional" / "region=us" / f"ds={day}", others)
    write_files(root / "hive" / f"dt={COMPACT}", rows)
    columns = columns_ddl(spark, root / "plain" / f"ds={day}")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
    spark.sql(
        f"CREATE TABLE {DB}.regional ({columns}, region STRING, ds DATE) USING parquet "
        f"PARTITIONED BY (region, ds) LOCATION '{root / 'regional'}'"
    )
    spark.sql(  # a Hive-format table, as Hive itself would create it
        f"CREATE TABLE {DB}.compact_hive ({columns}) PARTITIONED BY (dt STRING) "
        f"STORED AS PARQUET LOCATION '{root / 'hive'}'"
    )
    spark.sql(
        f"CREATE TABLE {DB}.as_csv ({columns}, ds STRING) USING csv PARTITIONED BY (ds) "
        f"LOCATION '{root / 'csv'}'"
    )
    spark.sql(
        f"CREATE TABLE {DB}.by_month ({columns}, month STRING) USING parquet "
        f"PARTITIONED BY (month) LOCATION '{root / 'by_month'}'"
    )
    scores = oracle(rows)["score"].tolist()
    return Lake(name, root, rows, dict(zip(rows["customer_id"].tolist(), scores, strict=True)))


# case -> (the input section, the directory the run must read, below the lake's root)
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "path": ({"path": "{root}/plain"}, f"plain/ds={RUN_DATE}"),
    "path_yyyyMMdd": (
        {"path": "{root}/compact", "partition_column": "dt", "partition_format": "yyyyMMdd"},
        f"compact/dt={COMPACT}",
    ),
    "path_region_under_date": (
        {"path": "{root}/nested", "partition_filter": {"region": "eu"}},
        f"nested/ds={RUN_DATE}/region=eu",
    ),
    "table_region_above_date": (
        {"table": f"{DB}.regional", "partition_filter": {"region": "eu"}},
        f"regional/region=eu/ds={RUN_DATE}",
    ),
    "hive_table_yyyyMMdd": (
        {"table": f"{DB}.compact_hive", "partition_column": "dt", "partition_format": "yyyyMMdd"},
        f"hive/dt={COMPACT}",
    ),
}


def input_section(lake: Lake, case: str) -> dict[str, Any]:
    section, _ = CASES[case]
    out = {k: v.format(root=lake.root) if isinstance(v, str) else v for k, v in section.items()}
    return {"path": None, **out}  # replaces the fixture's default path


@pytest.mark.parametrize("engine", ["arrow_direct", "dataframe"])
@pytest.mark.parametrize("case", list(CASES))
def test_every_layout_scores_the_same_rows_as_the_model(
    spark, job_config, lake: Lake, case: str, engine: str
) -> None:
    catalog = {"enabled": "table" in CASES[case][0]}
    cfg = job_config(lake.name, input=input_section(lake, case), engine=engine, catalog=catalog)
    result = run_score(spark, cfg, RUN_DATE)

    got = pq.read_table(result.committed.path).to_pandas().set_index("customer_id")["score"]
    assert result.manifest.scoring.engine == engine
    assert sorted(got.index) == sorted(lake.expected)  # no row of region=us, none lost
    expected = pd.Series(lake.expected).loc[got.index]
    assert np.max(np.abs(got.to_numpy() - expected.to_numpy())) <= 1e-12
    read = result.manifest.input
    assert read.path == str(lake.root / CASES[case][1])
    assert read.rows == len(lake.rows)
    assert read.files is not None
    assert sorted(f.name for f in read.files) == ["part-00000.parquet", "part-00001.parquet"]


@pytest.mark.parametrize(
    ("table", "error", "message"),
    [
        (f"{DB}.nope", InputNotFoundError, rf"input\.table {DB}\.nope does not exist"),
        ("nodb.features", InputNotFoundError, r"nodb\.features does not exist .*no database"),
        (f"{DB}.as_csv", ConfigError, rf"{DB}\.as_csv is not a Parquet table \(provider csv"),
        (f"{DB}.by_month", ConfigError, rf"{DB}\.by_month is not partitioned by ds .*'month'"),
    ],
)
def test_a_table_that_cannot_be_read_is_named(
    spark, job_config, lake: Lake, table: str, error: type[Exception], message: str
) -> None:
    cfg = job_config(lake.name, input={"path": None, "table": table}, catalog={"enabled": True})
    with pytest.raises(error, match=message) as caught:
        run_score(spark, cfg, RUN_DATE)
    assert "org.apache" not in str(caught.value) and "\n" not in str(caught.value)


def test_missing_date_of_a_table_names_table_and_dates(spark, job_config, lake: Lake) -> None:
    section = {"path": None, "table": f"{DB}.regional", "partition_filter": {"region": "eu"}}
    cfg = job_config(lake.name, input=section, catalog={"enabled": True})
    with pytest.raises(InputNotFoundError) as caught:
        run_score(spark, cfg, RUN_DATE + dt.timedelta(days=1))
    assert f"region=eu/ds={RUN_DATE + dt.timedelta(days=1)} of table {DB}.regional" in str(
        caught.value
    )
    assert f"latest dates present: ['{RUN_DATE}']" in str(caught.value)


def test_check_input_exits_4_naming_a_missing_table(tmp_path: Path, tracking_uri: str) -> None:
    """The command a DAG runs, in its own process (its own JVM and Derby metastore)."""
    job = {
        "job": "tables",
        "model": {"name": "absent", "alias": "champion", "tracking_uri": tracking_uri},
        "input": {"table": "warehouse.features"},
        "entity_columns": ["customer_id"],
        "output": {"root": str(tmp_path / "out")},
        "catalog": {"enabled": True, "metastore_dir": str(tmp_path / "metastore")},
        "spark": {"master": "local[1]"},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    command = ["check-input", "--config", str(path), "--run-date", str(RUN_DATE)]
    done = subprocess.run(
        [sys.executable, "-m", "batch_serving.cli", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 4, done.stderr
    assert "input.table warehouse.features does not exist in the catalog" in done.stderr
    for jvm_text in ("Traceback", "org.apache", "py4j", "AnalysisException"):
        assert jvm_text not in done.stderr
