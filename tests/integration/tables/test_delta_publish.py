"""#23.2: ``publish`` of a Delta run serves exactly the rows of the version that run committed
(a rerun's, not the replaced run's, never a mix); the manifest names that version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import builders
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from conftest import RUN_DATE, customers, labelled
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from batch_serving.runs.job import run_score
from batch_serving.serving.format import KEY
from batch_serving.serving.publish import publish
from batch_serving.tables.manifest import read_manifest


def served(path: Path) -> dict[int, float]:
    with pa.memory_map(str(path / "predictions.arrow")) as source:
        table = ipc.open_file(source).read_all()
    return dict(zip(table.column(KEY).to_pylist(), table.column("score").to_pylist(), strict=True))


def test_publish_serves_the_rows_of_the_version_the_run_committed(
    spark: SparkSession,
    job_config: Callable[..., Any],
    register: Callable[..., tuple[str, int]],
    warehouse: Callable[..., Path],
    tmp_path: Path,
) -> None:
    fitted, _ = builders.logreg_pipeline(labelled(300))
    first_rows = customers(80, seed=21)
    name, _ = register(fitted, first_rows[builders.FEATURES])
    root = tmp_path / "out"
    cfg = job_config(
        name,
        output={"root": str(root), "format": "delta"},
        publish={"root": str(tmp_path / "serving")},
    )
    warehouse(first_rows)
    run_score(spark, cfg, RUN_DATE)
    second_rows = customers(60, seed=22)  # other customers, other scores
    warehouse(second_rows)
    second = run_score(spark, cfg, RUN_DATE)
    named = read_manifest(second.committed.path)
    assert second.committed.version == 1 and named is not None
    assert named.output.table_version == 1

    done = publish(cfg, RUN_DATE)

    table = DeltaTable(str(root / "predictions" / name))
    current = table.to_pyarrow_table().to_pydict()
    expected = dict(zip(current["customer_id"], current["score"], strict=True))
    assert served(done.path) == pytest.approx(expected, abs=0) and len(expected) == 60
    assert set(expected) == set(second_rows["customer_id"])
    older = DeltaTable(str(root / "predictions" / name), version=0).to_pyarrow_table()
    assert set(older["customer_id"].to_pylist()) == set(first_rows["customer_id"])
    assert done.snapshot_id.endswith(second.manifest.run_id)
