"""Junk files in an input partition (issue #12.5): Spark's convention in BOTH engines.

Names starting with ``_`` or ``.`` (``_SUCCESS``, ``.crc`` checksums, ``.DS_Store``, a
``_temporary`` directory) are not data and are skipped; any other non-Parquet file fails both
engines the same way (StorageError, exit 7, the message names the file) and leaves the committed
partition as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import RUN_DATE
from test_bad_input import ENGINES, Setup

from batch_serving.errors import StorageError
from batch_serving.runs.job import run_score
from batch_serving.spark import errors

# (relative path, bytes): each one is added on top of the previous ones
JUNK: list[tuple[str, bytes]] = [
    ("_SUCCESS", b""),
    ("_committed_8841", b'{"added": ["part-0.parquet"]}'),
    (".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(range(256))),
    # a Hadoop checksum file that does NOT match its data file: still not data
    (".{first}.crc", b"crc\x00 not the checksum of that file"),
    ("_temporary/0/part-00009.parquet", b"half-written by a dead writer"),
    (".hidden/part-00009.parquet", b"PAR1 an editor's backup PAR1"),
]


@pytest.fixture
def setup(spark, tmp_path, register, warehouse, job_config):  # type: ignore[no-untyped-def]
    return Setup(spark, tmp_path, register, warehouse, job_config)


def partition_dir(setup: Setup) -> Path:
    return Path(setup.job_config(setup.name).input.path) / f"ds={RUN_DATE}"


@pytest.mark.parametrize("engine", ENGINES)
def test_junk_files_are_skipped_and_scores_equal_the_oracle(setup: Setup, engine: str) -> None:
    part = partition_dir(setup)
    first = sorted(part.glob("*.parquet"))[0].name
    expected = setup.oracle(setup.rows)["score"]
    cfg = setup.job_config(setup.name, engine=engine)
    for relative, content in JUNK:
        junk = part / relative.format(first=first)
        junk.parent.mkdir(parents=True, exist_ok=True)
        junk.write_bytes(content)
        result = run_score(setup.spark, cfg, RUN_DATE)
        assert result.manifest.scoring.engine == engine
        assert result.manifest.input.rows == 400, relative
        table = pq.read_table(result.committed.path).to_pandas().sort_values("customer_id")
        assert table["customer_id"].tolist() == setup.rows["customer_id"].tolist(), relative
        np.testing.assert_allclose(table["score"].to_numpy(), expected, atol=1e-12)


def test_non_parquet_file_fails_both_engines_the_same_way(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    part = partition_dir(setup)
    (part / "_SUCCESS").write_bytes(b"")
    readme = part / "README.txt"
    readme.write_text("features for 2026-11-22, exported by the nightly ETL\n")
    lines = {}
    for engine in ENGINES:
        code, out = setup.cli(None, capsys, engine=engine)
        assert code == 7, out
        [line] = [x for x in out.splitlines() if "README.txt" in x]
        assert str(readme) in line and "error occurred while calling" not in out
        lines[engine] = line.split("error:", 1)[-1].strip()
        assert setup.unchanged()
    assert lines["dataframe"] == lines["arrow_direct"], lines


def test_spark_read_error_names_the_file_not_the_py4j_call(setup: Setup) -> None:
    """Inputs Spark must list itself (not on a local path): the JVM error is turned into a
    message naming the file, never 'An error occurred while calling oNN.parquet'."""
    readme = partition_dir(setup) / "notes.txt"
    readme.write_text("not parquet")
    where = str(partition_dir(setup))
    with pytest.raises(StorageError) as info:
        errors.reading(lambda: setup.spark.read.parquet(where).count(), where)
    message = str(info.value)
    assert "notes.txt" in message and "error occurred while calling" not in message, message
    assert info.value.exit_code == 7
